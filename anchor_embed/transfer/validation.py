"""Validation of a transfer run: do the validation streamers' content neighbours match their ID neighbours?

The same measure as `evaluate` (Recall@10 against the top-10 by ID embedding), on the validation share of
the training streamers, with the training and validation streamers as candidates: never the hold-out.
Beside it, the same queries among the validation streamers alone ("new" Recall@10): how well two streamers
the model never trained on find each other, which falls as a run memorises its training streamers.
"""

from __future__ import annotations

import numpy as np

from anchor_embed.evaluation.metrics import recall_at_k
from anchor_embed.transfer.split import TransferSplit
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


def split_validation(split: TransferSplit) -> NeighbourRecall | None:
    """The validation of a transfer split (its validation streamers among the training and validation ones);
    None when fewer than 2 streamers validate."""
    if len(split.val_rows) < 2:
        return None
    candidates = np.sort(np.concatenate([split.train_rows, split.val_rows]))
    return NeighbourRecall(split.val_vectors, candidates, split.val_rows)


def validation_figures(model, batcher, validation: NeighbourRecall) -> dict[str, float]:
    """A model's validation figures: the mixed and new-vs-new Recall@10, their mean, and the uniformity of its
    fusion vectors (the spread the collapse guard reads: the fixed linear map's part does not train)."""
    import torch

    from anchor_embed.losses import uniformity
    from anchor_embed.model.batcher import embed_rows

    vecs = embed_rows(model, batcher, validation.candidates)
    fusion = normalise_rows(vecs[:, :model.cfg.out_dim])
    sample = fusion[np.random.default_rng(0).permutation(len(vecs))[:2000]]
    mixed, new = validation.score(vecs), validation.score_new(vecs)
    return {"recall_at_10": mixed, "new_recall_at_10": new, "mean_recall_at_10": (mixed + new) / 2,
            "uniformity": float(uniformity(torch.from_numpy(sample)))}
