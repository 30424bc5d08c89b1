"""What made an output: content digests of its inputs (streamed, one pass) and the settings that matter.

Every output folder records its fingerprint; a rerun into the same folder with another fingerprint is
refused (or, with --overwrite, replaces it), and --resume continues only identical work.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

CHUNK = 1 << 20


def file_digest(path: str | Path) -> str:
    """blake2b of a file's bytes, read in 1 MiB chunks (memory stays flat for any size)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def input_digest(path: str | Path) -> str:
    """A file's digest; for a folder or glob of files (Parquet parts), the digest of their names and digests."""
    from anchor_embed.data.records import is_parquet, parquet_files

    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if is_parquet(path):
        h = hashlib.blake2b(digest_size=16)
        for f in parquet_files(path):
            h.update(f"{f.name}:{file_digest(f)}\n".encode())
        return h.hexdigest()
    return "missing"


def adapter_digest(adapter: str | Path) -> str:
    """An `adapt` run's identity as vectors record it: the digests of its weight files."""
    return "+".join(file_digest(f) for f in sorted(Path(adapter).glob("*.safetensors")))


def fingerprint(**parts) -> str:
    """A short digest of the given parts (JSON-able), independent of their order."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_digest(cache: str | Path) -> str:
    """A feature cache's identity: its meta and each streamer's atom lists (what a training run reads)."""
    cache = Path(cache)
    h = hashlib.blake2b(digest_size=16)
    for name in ("meta.json", "streamers/keys.txt", "streamers/text_idx.npy", "streamers/frame_idx.npy",
                 "streamers/tag_idx.npy"):
        f = cache / name
        h.update(f"{name}:{file_digest(f) if f.is_file() else '-'}\n".encode())
    return h.hexdigest()


@lru_cache(maxsize=1)
def code_digest() -> str:
    """The installed package's identity: a digest of every anchor_embed source file (path and bytes), so a
    run records which code trained it, not only which settings (a version string does not change per commit)."""
    root = Path(__file__).resolve().parent
    h = hashlib.blake2b(digest_size=8)
    for f in sorted(root.rglob("*.py")):
        h.update(f"{f.relative_to(root).as_posix()}:{file_digest(f)}\n".encode())
    return h.hexdigest()


def refuse_other_origin(out: Path, have: dict, made: dict) -> None:
    """One line naming what differs when vectors in `out` were made from other inputs than `made`."""
    if have.get("fingerprint") != made["fingerprint"]:
        from anchor_embed.errors import AnchorEmbedError

        diff = ", ".join(k for k in made if k != "fingerprint" and have.get(k) != made[k])
        raise AnchorEmbedError(f"{out}: holds vectors made from other inputs ({diff} differ); pass --overwrite "
                               "to replace them, or choose another --out")
