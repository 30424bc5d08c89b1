"""A vectors folder written by `embed`: vectors.npy, keys.txt, labels.jsonl and meta.json (no torch here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anchor_embed import atomic
from anchor_embed.data.key_file import read_keys
from anchor_embed.data.npy_file import load_npy
from anchor_embed.errors import AnchorEmbedError


def vectors_id(meta: dict) -> str | None:
    """What identifies a vectors folder's vectors in the outputs made from them: embed's fingerprint of what made
    them, None for an older folder whose meta.json has none."""
    made = meta.get("fingerprint")
    return made if isinstance(made, str) and made else None


def folder_kind(folder: Path) -> str | None:
    """'index' for an index folder (its index.faiss), 'vectors' for a vectors folder embed wrote (vectors.npy
    beside a meta.json; an index folder holds those too, so it is told first), else None."""
    if (folder / "index.faiss").is_file():
        return "index"
    if (folder / "vectors.npy").is_file() and (folder / "meta.json").is_file():
        return "vectors"
    return None


DAMAGED = "the folder is damaged (re-run `anchor-embed embed`)"
REEMBED = "re-run `anchor-embed embed`"


def open_vectors(vec_dir: str | Path, need: int = 0) -> tuple[np.ndarray, list[str], dict]:
    """Memory-mapped vectors, their keys and meta of a finished vectors folder (at least `need` of them)."""
    vec_dir = Path(vec_dir)
    if vec_dir.is_file():       # an `export`ed .parquet/.npy, say: the commands read the folder it came from
        raise AnchorEmbedError(f"{vec_dir}: a file, not a vectors folder; pass the folder `anchor-embed embed` wrote")
    if (vec_dir / "index.faiss").is_file():
        raise AnchorEmbedError(f"{vec_dir}: an index folder, not a vectors folder; pass the vectors it was built from")
    if not all((vec_dir / f).is_file() for f in ("meta.json", "keys.txt", "vectors.npy")):
        raise AnchorEmbedError(f"{vec_dir}: not a vectors folder (run `anchor-embed embed`; all shards done?)")
    meta = atomic.read_json_object(vec_dir / "meta.json")
    keys = read_keys(vec_dir / "keys.txt")
    vectors = load_npy(vec_dir / "vectors.npy", REEMBED, mmap=True)
    if vectors.dtype.kind != "f":       # embed writes float32 or float16: complex, int, bool... are no vectors of it
        raise AnchorEmbedError(f"{vec_dir / 'vectors.npy'}: holds {vectors.dtype} values, not float vectors; {DAMAGED}")
    if vectors.ndim != 2:
        raise AnchorEmbedError(f"{vec_dir / 'vectors.npy'}: holds an array of shape {vectors.shape}, not N x D "
                               f"vectors; {DAMAGED}")
    if len(vectors) != len(keys):
        raise AnchorEmbedError(f"{vec_dir}: vectors.npy holds {len(vectors)} rows but "
                               f"keys.txt {len(keys)} keys; {DAMAGED}")
    if len(keys) < need:
        raise AnchorEmbedError(f"{vec_dir}: holds {len(keys)} vector(s); this needs at least {need}")
    return vectors, keys, meta
