"""Recall@10 of held-back queries against their ID neighbours, two ways: among every candidate ("mixed", the
queries beside streamers whose ID embeddings were fitted) and among the queries alone ("new", streamers none of
which was fitted finding each other). A transfer run validates with it each epoch (transfer/validation.py) and
evaluate's fitted references choose their alpha with it, so both judge by the same figures.
"""

from __future__ import annotations

import numpy as np

from anchor_embed.evaluation.metrics import recall_per_query
from anchor_embed.vectorspace import knn, normalise_rows


class NeighbourRecall:
    """Recall@k of validation queries among candidate streamers; the truth is computed once."""

    def __init__(self, id_vectors: np.ndarray, candidates: np.ndarray, queries: np.ndarray, k: int = 10) -> None:
        self.candidates, self.k = np.asarray(candidates, np.int64), k
        at = {int(r): i for i, r in enumerate(self.candidates)}
        self.query_pos = np.array([at[int(q)] for q in queries], np.int64)
        self.truth = knn(normalise_rows(id_vectors[self.candidates]), self.query_pos, k)[0]
        q = np.asarray(queries, np.int64)
        self.new_truth = knn(normalise_rows(id_vectors[q]), np.arange(len(q)), min(k, len(q) - 1))[0]

    def mixed_per_query(self, candidate_vectors: np.ndarray) -> np.ndarray:
        """(queries,) each validation query's Recall@k among the candidates (`score` averages them)."""
        pred = knn(normalise_rows(candidate_vectors), self.query_pos, self.k)[0]
        return recall_per_query(pred, self.truth, self.k)

    def new_per_query(self, candidate_vectors: np.ndarray) -> np.ndarray:
        """(queries,) each validation query's Recall@k among the validation streamers only (`score_new`)."""
        v = normalise_rows(candidate_vectors[self.query_pos])
        pred = knn(v, np.arange(len(v)), self.new_truth.shape[1])[0]
        return recall_per_query(pred, self.new_truth, self.new_truth.shape[1])

    def score(self, candidate_vectors: np.ndarray) -> float:
        """Recall@k of the given vectors (one per candidate, in `candidates` order)."""
        return float(self.mixed_per_query(candidate_vectors).mean())

    def score_new(self, candidate_vectors: np.ndarray) -> float:
        """Recall@k of the validation queries among the validation streamers only (none of them trained on)."""
        return float(self.new_per_query(candidate_vectors).mean())

    def per_query(self, candidate_vectors: np.ndarray, monitor: str) -> np.ndarray:
        """(queries,) each validation query's share of the `monitor` figure: its mixed Recall@k, or the mean of
        that and its new-vs-new one; their mean is `monitor_figure`."""
        mixed = self.mixed_per_query(candidate_vectors)
        new = self.new_per_query(candidate_vectors) if monitor != "recall_at_10" else mixed
        return monitor_per_query(mixed, new, monitor)


def monitor_per_query(mixed: np.ndarray, new: np.ndarray, monitor: str) -> np.ndarray:
    """Each query's share of the `monitor` figure from its mixed and new-vs-new Recall@k."""
    if monitor == "recall_at_10":
        return mixed
    if monitor == "mean_recall_at_10":
        return (mixed + new) / 2
    raise ValueError(f"monitor {monitor!r}: expected recall_at_10 or mean_recall_at_10")


def monitor_figure(candidate_vectors: np.ndarray, validation: NeighbourRecall, monitor: str) -> float:
    """The `monitor` figure (recall_at_10, or mean_recall_at_10 with the new-vs-new figure) of the vectors of
    `validation`'s candidates, as `validation_figures` and `blended_figures` report it."""
    return float(validation.per_query(candidate_vectors, monitor).mean())
