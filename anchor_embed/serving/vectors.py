"""A vectors folder written by `embed`: vectors.npy, keys.txt, labels.jsonl and meta.json (no torch here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from anchor_embed.errors import AnchorEmbedError


def open_vectors(vec_dir: str | Path) -> tuple[np.ndarray, list[str], dict]:
    """Memory-mapped vectors, their keys and meta of a finished vectors folder."""
    vec_dir = Path(vec_dir)
    if not (vec_dir / "meta.json").is_file():
        raise AnchorEmbedError(f"{vec_dir}: not a vectors folder (run `anchor-embed embed`; all shards done?)")
    meta = json.loads((vec_dir / "meta.json").read_text())
    keys = (vec_dir / "keys.txt").read_text(encoding="utf-8").splitlines()
    return np.load(vec_dir / "vectors.npy", mmap_mode="r"), keys, meta
