"""Top-k similar streamers from an index folder. The lookup path imports numpy and faiss only, never torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from anchor_embed.data.key_table import KeyTable
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.serving.index import set_search_param
from anchor_embed.vectorspace import without_self


class Lookup:
    """An opened index folder: faiss index, key and label tables, float16 vectors (all memory-mapped)."""

    def __init__(self, index_dir: str | Path) -> None:
        import faiss

        self.dir = Path(index_dir)
        if not (self.dir / "index.faiss").is_file():
            raise AnchorEmbedError(f"{self.dir}: no index here (run `anchor-embed index build`)")
        # memory-mapped, read-only: a lookup in a 1 GB index should not first copy 1 GB into memory
        try:
            self.index = faiss.read_index(str(self.dir / "index.faiss"), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:  # an index type without mmap support
            self.index = faiss.read_index(str(self.dir / "index.faiss"))
        self.keys = KeyTable(self.dir)
        self.vectors = np.load(self.dir / "vectors.npy", mmap_mode="r")
        self.meta = json.loads((self.dir / "meta.json").read_text())
        set_search_param(self.index, self.meta["kind"], self.meta.get("params", {}))

    def label(self, anchor_id: str) -> dict:
        """nickname and tags of an indexed streamer ({} when unknown)."""
        return self.keys.label(anchor_id)

    def vector_of(self, anchor_id: str) -> np.ndarray:
        row = self.keys.row(anchor_id)
        if row is None:
            close = self.keys.close_to(anchor_id)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise AnchorEmbedError(f"anchor_id {anchor_id!r} is not in the index {self.dir}{hint}")
        return np.asarray(self.vectors[row], np.float32)

    def search(self, vectors: np.ndarray, k: int, exclude: list[str | None]) -> list[list[tuple[str, float]]]:
        """Top-k (key, score) per query vector, leaving out the query's own key where given (k is capped at
        the index size: there are no more neighbours to return)."""
        if k < 1:
            raise AnchorEmbedError(f"-k {k}: at least 1")
        k = min(k, self.index.ntotal)
        scores, idx = self.index.search(np.ascontiguousarray(vectors, np.float32), k + 1)
        rows = [None if ex is None else self.keys.row(ex) for ex in exclude]
        own = np.array([-1 if r is None else r for r in rows], np.int64)
        idx, scores = without_self(idx, scores, own, k)
        return [[(self.keys.key(int(i)), float(s)) for i, s in zip(row_i, row_s, strict=True) if i >= 0]
                for row_i, row_s in zip(idx, scores, strict=True)]


def _open(index: str | Path | Lookup) -> Lookup:
    return index if isinstance(index, Lookup) else Lookup(index)


def similar(anchor_ids: list[str], index: str | Path | Lookup, k: int = 20) -> list[dict]:
    """Neighbours of indexed streamers: one NeighbourRow dict per id."""
    look = _open(index)
    vecs = np.stack([look.vector_of(a) for a in anchor_ids])
    return _rows(look, anchor_ids, look.search(vecs, k, list(anchor_ids)))


def _rows(look: Lookup, ids: list[str], hits: list[list[tuple[str, float]]]) -> list[dict]:
    """NeighbourRow dicts, with the neighbours' nicknames."""
    return [{"anchor_id": a, "neighbours": [{"anchor_id": n, "score": round(s, 4),
                                             "nickname": look.label(n).get("nickname")} for n, s in row]}
            for a, row in zip(ids, hits, strict=True)]


def similar_to_records(records_file: str | Path, index: str | Path | Lookup, k: int = 20,
                       media_root: str | Path | None = None) -> list[dict]:
    """Neighbours of streamers not in the index, given as records: embedded on the fly with the index's model."""
    import tempfile

    from anchor_embed.model.store import model_hash
    from anchor_embed.serving.embed import embed
    from anchor_embed.serving.vectors import open_vectors

    look = _open(index)
    model_dir = Path(look.meta["model_dir"])
    if not (model_dir / "model.safetensors").is_file() or model_hash(model_dir) != look.meta["model_hash"]:
        raise AnchorEmbedError(f"{look.dir}: the model that built it ({model_dir}) is gone or changed; cannot embed records")
    with tempfile.TemporaryDirectory() as tmp:
        embed(model_dir, records_file, tmp, media_root=media_root)
        vecs, keys, _ = open_vectors(tmp)
        vecs = np.asarray(vecs, np.float32)
    return _rows(look, keys, look.search(vecs, k, [None] * len(keys)))
