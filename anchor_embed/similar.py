"""Top-k similar streamers from an index folder. The lookup path imports numpy and faiss only, never torch."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import numpy as np

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.index import set_search_param


class Lookup:
    """An opened index folder: faiss index, keys, float16 vectors (memory-mapped) and labels."""

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
        self.keys = (self.dir / "keys.txt").read_text(encoding="utf-8").splitlines()
        self.pos = {k: i for i, k in enumerate(self.keys)}
        self.vectors = np.load(self.dir / "vectors.npy", mmap_mode="r")
        self.meta = json.loads((self.dir / "meta.json").read_text())
        set_search_param(self.index, self.meta["kind"], self.meta.get("params", {}))
        self._labels: dict[str, dict] | None = None

    def labels(self) -> dict[str, dict]:
        if self._labels is None:
            path = self.dir / "labels.jsonl"
            self._labels = {}
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    row = json.loads(line)
                    self._labels[row["anchor_id"]] = row
        return self._labels

    def vector_of(self, anchor_id: str) -> np.ndarray:
        if anchor_id not in self.pos:
            close = difflib.get_close_matches(anchor_id, [k for k in self.keys if k[:1] == anchor_id[:1]] or self.keys,
                                              n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise AnchorEmbedError(f"anchor_id {anchor_id!r} is not in the index {self.dir}{hint}")
        return np.asarray(self.vectors[self.pos[anchor_id]], np.float32)

    def search(self, vectors: np.ndarray, k: int, exclude: list[str | None]) -> list[list[tuple[str, float]]]:
        scores, idx = self.index.search(np.ascontiguousarray(vectors, np.float32), k + 1)
        out = []
        for row_s, row_i, ex in zip(scores, idx, exclude, strict=True):
            hits = [(self.keys[i], float(s)) for s, i in zip(row_s, row_i, strict=True) if i >= 0 and self.keys[i] != ex]
            out.append(hits[:k])
        return out


def _open(index: str | Path | Lookup) -> Lookup:
    return index if isinstance(index, Lookup) else Lookup(index)


def similar(anchor_ids: list[str], index: str | Path | Lookup, k: int = 20) -> list[dict]:
    """Neighbours of indexed streamers: one NeighbourRow dict per id."""
    look = _open(index)
    vecs = np.stack([look.vector_of(a) for a in anchor_ids])
    return _rows(look, anchor_ids, look.search(vecs, k, list(anchor_ids)))


def _rows(look: Lookup, ids: list[str], hits: list[list[tuple[str, float]]]) -> list[dict]:
    """NeighbourRow dicts, with the neighbours' nicknames."""
    labels = look.labels()
    return [{"anchor_id": a, "neighbours": [{"anchor_id": n, "score": round(s, 4),
                                             "nickname": labels.get(n, {}).get("nickname")} for n, s in row]}
            for a, row in zip(ids, hits, strict=True)]


def similar_to_records(records_file: str | Path, index: str | Path | Lookup, k: int = 20,
                       media_root: str | Path | None = None) -> list[dict]:
    """Neighbours of streamers not in the index, given as records: embedded on the fly with the index's model."""
    import tempfile

    from anchor_embed.vectors import embed, model_hash, open_vectors

    look = _open(index)
    model_dir = Path(look.meta["model_dir"])
    if not (model_dir / "model.safetensors").is_file() or model_hash(model_dir) != look.meta["model_hash"]:
        raise AnchorEmbedError(f"{look.dir}: the model that built it ({model_dir}) is gone or changed; cannot embed records")
    with tempfile.TemporaryDirectory() as tmp:
        embed(model_dir, records_file, tmp, media_root=media_root)
        vecs, keys, _ = open_vectors(tmp)
        vecs = np.asarray(vecs, np.float32)
    return _rows(look, keys, look.search(vecs, k, [None] * len(keys)))
