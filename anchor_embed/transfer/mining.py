"""Mine behavioural neighbours from ID embeddings (exact kNN) and keep those a filter finds alike in content."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anchor_embed.vectorspace import knn, normalise_rows


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
    x = normalise_rows(id_vectors[rows])
    idx, sims = knn(x, np.arange(len(rows)), min(k, len(rows) - 1))
    found = idx >= 0
    q = np.repeat(rows, found.sum(1))
    return q.astype(np.int64), rows[idx[found]].astype(np.int64), sims[found].astype(np.float32)


def filter_pairs(query: np.ndarray, neighbour: np.ndarray, id_score: np.ndarray,
                 score: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
                 threshold: float | None = None, quantile: float | None = None) -> Pairs:
    """Keep a pair when its content score passes an absolute threshold and the per-query quantile (each optional)."""
    if score is None:
        cs = np.full(len(query), np.nan, np.float32)
        return Pairs(query, neighbour, id_score, cs, np.ones(len(query), bool))
    cs = score(query, neighbour).astype(np.float32)
    kept = np.ones(len(query), bool)
    if threshold is not None:
        kept &= cs >= threshold
    if quantile is not None:
        kept &= above_quantile(query, cs, id_score, quantile)
    return Pairs(query, neighbour, id_score, cs, kept)


def above_quantile(query: np.ndarray, score: np.ndarray, tie_break: np.ndarray, quantile: float) -> np.ndarray:
    """Per query, the pairs at or above the `quantile` of its scores (numpy's linear quantile), by one sort.

    Exactly n - ceil(quantile * (n - 1)) of a query's n pairs are kept, so ties (nickname scores are often
    all 0) cannot keep more than asked: tied pairs are ranked by `tie_break` (the ID-embedding score).
    """
    order = np.lexsort((-tie_break, -score, query))
    _, start, count = np.unique(query[order], return_index=True, return_counts=True)
    rank = np.arange(len(order)) - np.repeat(start, count)
    keep = np.repeat(count - np.ceil(quantile * (count - 1) - 1e-9).astype(np.int64), count)
    kept = np.zeros(len(query), bool)
    kept[order] = rank < keep
    return kept
