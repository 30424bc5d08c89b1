"""The space positives are mined in: the ID embeddings, or their blend with what content predicts of them.

Under sparse behaviour (ID embeddings learned from few interactions) a streamer's ID neighbours are mostly
wrong: on movielens with a 20% sample only 7% of mined pairs are among the full-interaction top-10. What
content predicts of an ID embedding (RidgeCV from the reference features, out of fold, so a streamer's own
embedding never predicts itself) is wrong in other ways; the blend of the two unit vectors, share `a` for the
ID embedding, has neighbours right about twice as often there (docs/tuning.md, twenty-fourth round). The method learns from the blend
(mined pairs, soft targets, its regression targets); validation and the closed-form map read the ID embeddings.
"""

from __future__ import annotations

import numpy as np

from anchor_embed.features.cache import FeatureCache
from anchor_embed.vectorspace import normalise_rows

FOLDS = 5


def out_of_fold_ridge(features: np.ndarray, targets: np.ndarray, seed: int, folds: int = FOLDS) -> np.ndarray:
    """Each row's RidgeCV prediction of its unit target by a fit on the other folds (alpha by leave-one-out
    within them, as the ridge reference chooses it); zeros for fewer than three rows."""
    from sklearn.model_selection import KFold

    from anchor_embed.evaluation.references import fit_ridge

    out = np.zeros(targets.shape, np.float32)
    folds = min(folds, len(targets))
    if len(targets) < 3:        # a fold's fit needs two rows: nothing to predict from (the blend is the ID side)
        return out
    for fit_rows, rows in KFold(folds, shuffle=True, random_state=seed).split(features):
        out[rows] = fit_ridge(features[fit_rows], targets[fit_rows]).predict(features[rows])
    return out


def blend(teacher: np.ndarray, predicted: np.ndarray, share: float) -> np.ndarray:
    """Unit rows of share * unit(teacher) + (1 - share) * unit(predicted)."""
    return normalise_rows(share * normalise_rows(teacher) + (1.0 - share) * normalise_rows(predicted))


def mining_space(cache: FeatureCache, id_vectors: np.ndarray, rows: np.ndarray, share: float,
                 seed: int) -> np.ndarray:
    """`id_vectors` with the rows a method learns from (`rows`, the training streamers) replaced by their blend with
    the out-of-fold content prediction, at ID share `share`; `id_vectors` itself when `share` is 1."""
    if share >= 1.0:
        return id_vectors
    from anchor_embed.evaluation.references import reference_features

    x = reference_features(cache, rows)[rows]
    space = np.array(id_vectors, np.float32, copy=True)
    space[rows] = blend(id_vectors[rows], out_of_fold_ridge(x, id_vectors[rows], seed), share)
    return space
