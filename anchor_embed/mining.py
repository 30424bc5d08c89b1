"""Mine behavioural neighbours from ID embeddings (faiss kNN) and keep those also alike in content."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anchor_embed.unit_vectors import normalise_rows


@dataclass
class Pairs:
    """Mined (query, neighbour) rows into a shared key list, with ID score, content score and verdict."""

    query: np.ndarray
    neighbour: np.ndarray
    id_score: np.ndarray
    content_score: np.ndarray
    kept: np.ndarray

    def kept_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        return self.query[self.kept], self.neighbour[self.kept]


def mine(id_vectors: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k neighbours by ID-embedding cosine among `rows` only (self excluded): query, neighbour, score."""
    import faiss

    x = normalise_rows(id_vectors[rows])
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    k_eff = min(k, len(rows) - 1)
    sims, idx = index.search(x, k_eff + 1)
    q, n, s = [], [], []
    for i in range(len(rows)):
        hits = [(j, sc) for j, sc in zip(idx[i], sims[i], strict=True) if j != i and j >= 0][:k_eff]
        q += [rows[i]] * len(hits)
        n += [rows[j] for j, _ in hits]
        s += [float(sc) for _, sc in hits]
    return np.array(q, np.int64), np.array(n, np.int64), np.array(s, np.float32)


def content_cosine(vectors: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A filter score: cosine of two streamers' content vectors (pretrained model or frozen text features)."""
    v = normalise_rows(vectors)
    return lambda a, b: np.sum(v[a] * v[b], axis=1)


def filter_pairs(query: np.ndarray, neighbour: np.ndarray, id_score: np.ndarray,
                 score: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
                 threshold: float | None = None, quantile: float | None = None) -> Pairs:
    """Keep a pair when its content score passes an absolute threshold or the per-query quantile."""
    if score is None:
        cs = np.full(len(query), np.nan, np.float32)
        return Pairs(query, neighbour, id_score, cs, np.ones(len(query), bool))
    cs = score(query, neighbour).astype(np.float32)
    kept = np.ones(len(query), bool)
    if threshold is not None:
        kept &= cs >= threshold
    if quantile is not None:
        for q in np.unique(query):
            sel = query == q
            kept[sel] &= cs[sel] >= np.quantile(cs[sel], quantile)
    return Pairs(query, neighbour, id_score, cs, kept)
