"""Atomic writes: every output goes to a temp file in the same folder, then is renamed into place."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def give_usual_mode(path: str | Path, folder: bool = False) -> None:
    """The permissions the user's umask gives a new file (0666 &~umask) or folder (0777 &~umask).

    mkstemp/mkdtemp make 0600/0700, and writers such as safetensors' save_file recreate the file, so the
    mode is set after the writer is done, just before the rename.
    """
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        give_usual_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, writer: Callable[[BinaryIO], None]) -> None:
    """Write a file through `writer(fileobj)` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        writer(f)
        f.flush()
        os.fsync(f.fileno())


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def read_json_object(path: str | Path, damage: str = "") -> dict:
    """A JSON object written by `write_json`, read back; one line naming the file (and `damage`, what its loss
    means) when it is not JSON or not an object: a truncated or overwritten record, not a traceback."""
    from anchor_embed.errors import AnchorEmbedError

    more = f"; {damage}" if damage else ""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise AnchorEmbedError(f"{path}: not JSON ({exc}){more}") from None
    if not isinstance(obj, dict):
        raise AnchorEmbedError(f"{path}: not a JSON object{more}")
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_lines(path: str | Path, lines: Iterable[str]) -> None:
    write_text(path, "".join(f"{line}\n" for line in lines))


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    write_lines(path, (json.dumps(r, ensure_ascii=False) for r in rows))


def write_npy(path: str | Path, array: np.ndarray) -> None:
    write_bytes(path, lambda f: np.save(f, array))


def write_npy_as(path: str | Path, array: np.ndarray, dtype: Any, chunk: int = 1 << 18) -> None:
    """`array` (often a memory map) saved as `dtype` atomically, converted a chunk of rows at a time so no
    full-size copy is made in memory."""
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=array.shape)
        for start in range(0, len(array), chunk):
            out[start:start + chunk] = array[start:start + chunk]
        out.flush()
        del out
