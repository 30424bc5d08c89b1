"""Random access to an index folder's keys and labels, so one lookup never reads a million of them.

keys.npy              fixed-width UTF-8 keys in row order (memory-mapped: row -> key)
keys_sorted.npy       the same keys sorted, and keys_sorted_rows.npy their rows (binary search: key -> row)
labels.jsonl          one label object per row, in row order; labels_offsets.npy the byte offset of each line
(and one past the last); a missing, damaged or mismatched table is one line naming it.
Folders built before these files existed are read the old way (keys.txt and labels.jsonl in memory).
"""

from __future__ import annotations

import difflib
import json
import os
import weakref
from pathlib import Path

import numpy as np

from anchor_embed import atomic
from anchor_embed.data.key_file import read_keys
from anchor_embed.data.npy_file import load_npy
from anchor_embed.errors import AnchorEmbedError

TABLES = ("keys.npy", "keys_sorted.npy", "keys_sorted_rows.npy", "labels_offsets.npy")
REBUILD = "rebuild the index with `anchor-embed index build`"


def write_key_table(folder: Path, keys: list[str], labels_file: Path | None) -> None:
    """Write the key and label tables of `keys` (labels matched by anchor_id; a streamer without one gets {})."""
    enc = np.array([k.encode("utf-8") for k in keys], dtype=bytes)
    order = np.argsort(enc, kind="stable")
    atomic.write_npy(folder / "keys.npy", enc)
    atomic.write_npy(folder / "keys_sorted.npy", enc[order])
    atomic.write_npy(folder / "keys_sorted_rows.npy", order.astype(np.int64))
    by_key: dict[str, str] = {}
    if labels_file is not None and labels_file.is_file():
        for line in labels_file.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                by_key[json.loads(line)["anchor_id"]] = line
    lines = [(by_key.get(k) or json.dumps({"anchor_id": k})).encode("utf-8") + b"\n" for k in keys]
    offsets = np.zeros(len(lines) + 1, np.int64)
    np.cumsum([len(x) for x in lines], out=offsets[1:])
    with atomic.atomic_path(folder / "labels.jsonl") as tmp:
        tmp.write_bytes(b"".join(lines))
    atomic.write_npy(folder / "labels_offsets.npy", offsets)


class KeyTable:
    """key <-> row and row -> label of an index folder, memory-mapped."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        if (folder / "keys_sorted.npy").is_file():
            self._keys, self._sorted, self._sorted_rows, self._offsets = (
                load_npy(folder / name, REBUILD, mmap=True) for name in TABLES)
            counts = (len(self._keys), len(self._sorted), len(self._sorted_rows), len(self._offsets) - 1)
            if len(set(counts)) > 1:            # files of two builds: a lookup would read past one of them
                said = ", ".join(f"{n} in {name}" for name, n in zip(TABLES, counts, strict=True))
                raise AnchorEmbedError(f"{folder}: its key table files are of different builds ({said}); {REBUILD}")
            self._legacy = None
            # labels.jsonl held open from here, as the memory maps hold their files: a build replacing the folder's
            # files (atomic renames) leaves this table reading the build it opened, not the new file at the old
            # offsets (a server answered HTTP 500 while a new index landed in its folder)
            self._labels_fd = os.open(folder / "labels.jsonl", os.O_RDONLY) if (folder / "labels.jsonl").is_file() \
                else None
            if self._labels_fd is not None:
                weakref.finalize(self, os.close, self._labels_fd)
        else:  # an older folder: keys.txt and labels.jsonl read whole
            keys = read_keys(folder / "keys.txt")
            labels = {}
            if (folder / "labels.jsonl").is_file():
                for line in (folder / "labels.jsonl").read_text(encoding="utf-8").split("\n"):
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    labels[row["anchor_id"]] = row
            self._legacy = (keys, {k: i for i, k in enumerate(keys)}, labels)

    def __len__(self) -> int:
        return len(self._legacy[0]) if self._legacy else len(self._keys)

    def key(self, row: int) -> str:
        return self._legacy[0][row] if self._legacy else bytes(self._keys[row]).decode("utf-8")

    def row(self, key: str) -> int | None:
        if self._legacy:
            return self._legacy[1].get(key)
        b = key.encode("utf-8")
        i = int(np.searchsorted(self._sorted, b))
        return int(self._sorted_rows[i]) if i < len(self._sorted) and bytes(self._sorted[i]) == b else None

    def label(self, key: str) -> dict:
        if self._legacy:
            return self._legacy[2].get(key, {})
        row = self.row(key)
        if row is None or self._labels_fd is None:
            return {}
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        return json.loads(os.pread(self._labels_fd, end - start, start))     # no shared file position: thread-safe

    def labels(self) -> list[dict]:
        """Every row's label, in row order, read in one pass (a label at a time by key took 9 s at 300,000 rows)."""
        if self._legacy:
            return [self._legacy[2].get(k, {}) for k in self._legacy[0]]
        if self._labels_fd is None:
            return [{} for _ in range(len(self))]
        size, data = int(self._offsets[-1]), bytearray()
        while len(data) < size:                             # one read returns at most about 2 GiB on Linux
            part = os.pread(self._labels_fd, min(size - len(data), 1 << 30), len(data))
            if not part:
                break
            data += part
        return json.loads(b"[" + b",".join(data.split(b"\n")[:len(self)]) + b"]")     # one parse: half the time

    def close_to(self, key: str, n: int = 3) -> list[str]:
        """Keys like `key`, case-insensitively: difflib over the sorted neighbourhoods of its case variants
        (the whole table when it is small)."""
        if self._legacy:
            pool = self._legacy[0]
        elif len(self) <= 5000:
            pool = [bytes(x).decode("utf-8") for x in self._sorted]
        else:
            pool = []
            for variant in {key, key.lower(), key.upper(), key.capitalize()}:
                i = int(np.searchsorted(self._sorted, variant.encode("utf-8")))
                pool += [bytes(x).decode("utf-8") for x in self._sorted[max(0, i - 200):i + 200]]
        by_lower: dict[str, str] = {}
        for k in pool:
            by_lower.setdefault(k.lower(), k)
        close = difflib.get_close_matches(key.lower(), list(by_lower), n=n, cutoff=0.5)
        return [by_lower[c] for c in close]
