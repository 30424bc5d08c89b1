""".npy and .npz files read safely: never unpickled, and a file that is no array file, a damaged one or an object
array is one line naming the file (numpy's own errors name none, and advise loading pickles unsafely)."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from anchor_embed.errors import AnchorEmbedError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")      # a zip with members; an empty zip


def _first_line(exc: BaseException) -> str:
    """An exception's message on one line (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _header_dtype(f: BinaryIO) -> np.dtype:
    """The dtype in a .npy stream's header (read before the data, so an object array is named, not unpickled)."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)[2]


def _absent(path: Path, exc: OSError, remedy: str) -> AnchorEmbedError | None:
    """The one line for a file that is not there to read (no file, a folder, no permission), or None: those are
    not damage."""
    if isinstance(exc, FileNotFoundError):
        return AnchorEmbedError(f"{path}: no such file; {remedy}")
    if isinstance(exc, IsADirectoryError):
        return AnchorEmbedError(f"{path}: a folder, not a file; {remedy}")
    if isinstance(exc, PermissionError):
        return AnchorEmbedError(f"{path}: not readable (permission denied)")
    return None


def _refuse_objects(where: str, dtype: np.dtype, remedy: str) -> None:
    if dtype.hasobject:
        raise AnchorEmbedError(f"{where}: holds Python objects (dtype {dtype}), not an array of numbers; {remedy}")


def load_npy(path: str | Path, remedy: str, mmap: bool = False) -> np.ndarray:
    """A .npy file's array (memory-mapped read-only with `mmap`); not a .npy, an object array or a damaged file is
    one line naming `path` and ending with `remedy` (what to do about it)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            start = f.read(len(NPY_MAGIC))
            if not start:
                raise AnchorEmbedError(f"{path}: empty (0 bytes), the file is damaged; {remedy}")
            if start != NPY_MAGIC and not NPY_MAGIC.startswith(start):     # (a cut-off header is damaged, below)
                raise AnchorEmbedError(f"{path}: not a NumPy .npy file (no NUMPY header); {remedy}")
            f.seek(0)
            dtype = _header_dtype(f)
        _refuse_objects(str(path), dtype, remedy)
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except AnchorEmbedError:
        raise
    except (OSError, ValueError, EOFError, SyntaxError) as exc:     # SyntaxError: a garbled header dict
        if isinstance(exc, OSError) and (absent := _absent(path, exc, remedy)):
            raise absent from None
        raise AnchorEmbedError(f"{path}: unreadable ({_first_line(exc)}); the file is damaged (truncated?); "
                               f"{remedy}") from None


def load_npz(path: str | Path, names: tuple[str, ...], remedy: str) -> dict[str, np.ndarray]:
    """The named arrays of a .npz file; not a .npz, a missing array, an object array or a damaged file is one line
    naming `path` (and the array) and ending with `remedy`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            start = f.read(4)
            if not start:
                raise AnchorEmbedError(f"{path}: empty (0 bytes), the file is damaged; {remedy}")
            if start not in ZIP_MAGICS:
                raise AnchorEmbedError(f"{path}: not a NumPy .npz file (not a zip archive); {remedy}")
        with zipfile.ZipFile(path) as zf:
            have = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
            missing = sorted(set(names) - have)
            if missing:
                raise AnchorEmbedError(f"{path}: missing array(s) {missing}; expected {', '.join(map(repr, names))}")
            out = {}
            for name in names:
                with zf.open(f"{name}.npy") as f:
                    if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
                        raise AnchorEmbedError(f"{path}: array '{name}' is not a .npy member; {remedy}")
                with zf.open(f"{name}.npy") as f:
                    _refuse_objects(f"{path}: array '{name}'", _header_dtype(f), remedy)
                with zf.open(f"{name}.npy") as f:
                    out[name] = np.lib.format.read_array(f, allow_pickle=False)
            return out
    except AnchorEmbedError:
        raise
    except (OSError, ValueError, EOFError, SyntaxError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, OSError) and (absent := _absent(path, exc, remedy)):
            raise absent from None
        raise AnchorEmbedError(f"{path}: unreadable ({_first_line(exc)}); the file is damaged (truncated?); "
                               f"{remedy}") from None
