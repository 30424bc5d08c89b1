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


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute; each costs 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def name_similarity(a: str, b: str) -> float:
    """1 - edit distance / longer length on case-folded names; 0 when either name is empty."""
    a, b = " ".join(a.casefold().split()), " ".join(b.casefold().split())
    if not a or not b:
        return 0.0
    return 1.0 - edit_distance(a, b) / max(len(a), len(b))


def nickname_similarity(nicknames: list[str]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A filter score: edit-distance similarity of two streamers' nicknames (matrix accounts, renamed twins)."""
    return lambda a, b: np.array([name_similarity(nicknames[i], nicknames[j]) for i, j in zip(a, b, strict=True)],
                                 np.float32)


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
