"""Mine behavioural neighbours from ID embeddings and keep those a filter finds alike in content.

Up to `exact_up_to` streamers the kNN is exact; above, an IVF index (faiss) whose `nprobe` is raised until
the Recall@k of a seeded sample of queries against exact search reaches `min_recall`; that recall is
reported with the run, so a reader knows how close the mined lists are to exact ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anchor_embed.vectorspace import knn, normalise_rows, without_self


@dataclass
class Pairs:
    """Mined (query, neighbour) rows into a shared key list, with mined score, content score and verdict.

    `mined_score` is their cosine in the space they were mined in: the ID embeddings, or (teacher_share < 1)
    their blend with what content predicts of them (teacher_blend.py)."""

    query: np.ndarray
    neighbour: np.ndarray
    mined_score: np.ndarray
    content_score: np.ndarray
    kept: np.ndarray

    def kept_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        return self.query[self.kept], self.neighbour[self.kept]


EXACT_UP_TO = 200_000   # streamers with ID embeddings mined by exact search; IVF above
RECALL_SAMPLE = 1000    # queries whose IVF lists are checked against exact search


def mine(id_vectors: np.ndarray, rows: np.ndarray, k: int, exact_up_to: int = EXACT_UP_TO, min_recall: float = 0.95,
         seed: int = 0, report: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k neighbours by ID-embedding cosine among `rows` only (self excluded): query, neighbour, score.

    `report` (when given) receives how the search was done: exact, or IVF with nlist, nprobe and the
    measured Recall@k of the mined lists."""
    x = normalise_rows(id_vectors[rows])
    k = min(k, len(rows) - 1)
    if len(rows) <= exact_up_to:
        idx, sims = knn(x, np.arange(len(rows)), k)
        info: dict = {"search": "exact"}
    else:
        idx, sims, info = ivf_knn(x, k, min_recall, seed)
    if report is not None:
        report.update(info)
    found = idx >= 0
    q = np.repeat(rows, found.sum(1))
    return q.astype(np.int64), rows[idx[found]].astype(np.int64), sims[found].astype(np.float32)


def ivf_knn(x: np.ndarray, k: int, min_recall: float = 0.95, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Approximate self-excluded kNN of every unit row of `x` by an IVF-Flat index, nprobe doubled until a
    sample's Recall@k against exact search reaches `min_recall` (or every list is probed)."""
    from anchor_embed.serving.index import build_faiss

    x = np.ascontiguousarray(x, np.float32)
    n = len(x)
    nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))
    index = build_faiss(x, "ivf_flat", {"nlist": nlist, "nprobe": 1}, seed)   # the index build's IVF, trained on a sample
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, RECALL_SAMPLE), replace=False))
    truth, _ = knn(x, sample, k)
    nprobe, recall = 1, 0.0
    while True:
        index.nprobe = nprobe
        sims, idx = index.search(x[sample], k + 1)
        got, _ = without_self(idx, sims, sample, k)
        recall = float(np.mean([len(set(t[t >= 0]) & set(g[g >= 0])) / max(1, (t >= 0).sum())
                                for t, g in zip(truth, got, strict=True)]))
        if recall >= min_recall or nprobe >= nlist:
            break
        nprobe = min(nlist, nprobe * 2)
    out_i = np.empty((n, k), np.int64)
    out_s = np.empty((n, k), np.float32)
    for start in range(0, n, 65_536):
        stop = min(n, start + 65_536)
        sims, idx = index.search(x[start:stop], k + 1)
        out_i[start:stop], out_s[start:stop] = without_self(idx, sims, np.arange(start, stop), k)
    return out_i, out_s, {"search": "ivf", "nlist": nlist, "nprobe": nprobe, f"recall_at_{k}": round(recall, 4),
                          "recall_sample": len(sample)}


def filter_pairs(query: np.ndarray, neighbour: np.ndarray, mined_score: np.ndarray,
                 score: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
                 threshold: float | None = None, quantile: float | None = None) -> Pairs:
    """Keep a pair when its content score passes an absolute threshold and the per-query quantile (each optional)."""
    if score is None:
        cs = np.full(len(query), np.nan, np.float32)
        return Pairs(query, neighbour, mined_score, cs, np.ones(len(query), bool))
    cs = score(query, neighbour).astype(np.float32)
    kept = np.ones(len(query), bool)
    if threshold is not None:
        kept &= cs >= threshold
    if quantile is not None:
        kept &= above_quantile(query, cs, mined_score, quantile)
    return Pairs(query, neighbour, mined_score, cs, kept)


def mutual_pairs(query: np.ndarray, neighbour: np.ndarray) -> np.ndarray:
    """Per mined pair (a, b), whether (b, a) was mined too: mutual nearest neighbours, the pairs a noisy ID
    embedding space agrees on from both sides (docs/tuning.md, twenty-third round)."""
    span = int(max(query.max(initial=0), neighbour.max(initial=0))) + 1
    return np.isin(query.astype(np.int64) * span + neighbour, neighbour.astype(np.int64) * span + query)


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
