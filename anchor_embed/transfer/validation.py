"""Validation of a transfer run: do the validation streamers' content neighbours match their ID neighbours?

The same measure as `evaluate` (Recall@10 against the top-10 by ID embedding), on the validation share of
the training streamers, with the training and validation streamers as candidates: never the hold-out.
Beside it, the same queries among the validation streamers alone ("new" Recall@10): how well two streamers
the model never trained on find each other, which falls as a run memorises its training streamers.
"""

from __future__ import annotations

import numpy as np

from anchor_embed.evaluation.metrics import recall_at_k
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

    def score(self, candidate_vectors: np.ndarray) -> float:
        """Recall@k of the given vectors (one per candidate, in `candidates` order)."""
        pred = knn(normalise_rows(candidate_vectors), self.query_pos, self.k)[0]
        return recall_at_k(pred, self.truth, self.k)

    def score_new(self, candidate_vectors: np.ndarray) -> float:
        """Recall@k of the validation queries among the validation streamers only (none of them trained on)."""
        v = normalise_rows(candidate_vectors[self.query_pos])
        pred = knn(v, np.arange(len(v)), self.new_truth.shape[1])[0]
        return recall_at_k(pred, self.new_truth, self.new_truth.shape[1])
