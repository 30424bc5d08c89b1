"""Reference rows of the evaluate table: what a model must beat to be worth training.

- frozen backbones, all modalities and one at a time: where the signal lives, without any training;
- ridge: scikit-learn's RidgeCV (alpha by leave-one-out cross-validation on the training streamers) from
  frozen features plus one-hot tag identity to the ID embedding: the linear map a data scientist would fit
  (its fit computed a chunk of rows at a time, evaluation/ridge.py, so it scales to a catalogue);
- kernel ridge: the same fit on RBF kernel features of those inputs (Nyström landmarks, all training streamers
  up to a cap: exact kernel ridge regression below it; Williams & Seeger 2001), the nonlinear closed form;
- content-kNN averaging: a streamer's vector is the mean ID embedding of its k content-nearest training
  streamers (no parameters but k; the classic cold-start baseline, e.g. as compared in Volkovs et al. 2017,
  DropoutNet, and Sedhain et al. 2014, "Social collaborative filtering for cold-start recommendations").

Every fit reads the training streamers' ID embeddings only, never the held-out ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anchor_embed.evaluation.ridge import (
    RidgeFit,
    by_chunks,
    chunk_rows,
    chunks_of,
    fit_ridge_loo,
    fit_ridge_path,
)
from anchor_embed.features.cache import KINDS, FeatureCache
from anchor_embed.features.pooled import frozen_vectors, pooled_block
from anchor_embed.vectorspace import knn, normalise_rows, without_self

RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))
KNN_KS = (5, 10, 20, 40)
# the RBF kernel of unit rows, exp(-gamma |a - b|^2), |a - b|^2 in [0, 4]; gamma chosen on validation
# (docs/tuning.md, tenth round)
KERNEL_GAMMA = 1.0
MAX_LANDMARKS = 4096      # kernel columns: every training streamer up to here, a seeded sample above
# the alphas of a kernel ridge on a linear map's residuals, chosen by a transfer run's validation: leave-one-out
# on the residuals keeps the largest (no correction) while validation recall wants about 0.1-0.3 (docs/tuning.md,
# thirteenth round); RESIDUAL_ALPHA when nothing validates
RESIDUAL_ALPHAS = tuple(float(a) for a in np.logspace(-2.5, 0.5, 7))
RESIDUAL_ALPHA = RESIDUAL_ALPHAS[3]


def frozen_rows(cache: FeatureCache) -> dict[str, np.ndarray]:
    """'frozen backbones' (all modalities) and one row per modality the cache has (text, frames, tags)."""
    rows = {"frozen backbones": frozen_vectors(cache)}
    for kind, label in zip(KINDS, ("text", "frames", "tags"), strict=True):
        if cache.dim(kind):
            rows[f"frozen {label} only"] = pooled_block(cache, kind)
    return rows


def tag_one_hot(cache: FeatureCache, train_rows: np.ndarray, min_streamers: int = 2, max_tags: int = 5000
                ) -> np.ndarray:
    """(n, T) 0/1 tag identity for the tags at least `min_streamers` training streamers show."""
    counts = np.zeros(len(cache.tag_names), np.int64)
    for i in train_rows:
        counts[cache.rows("tag", int(i))] += 1
    keep = np.flatnonzero(counts >= min_streamers)
    keep = keep[np.argsort(-counts[keep], kind="stable")][:max_tags]
    column = np.full(len(cache.tag_names), -1, np.int64)
    column[keep] = np.arange(len(keep))
    x = np.zeros((cache.n, len(keep)), np.float32)
    for i in range(cache.n):
        cols = column[cache.rows("tag", i)]
        x[i, cols[cols >= 0]] = 1.0
    return x


def reference_features(cache: FeatureCache, train_rows: np.ndarray) -> np.ndarray:
    """Frozen features of every modality side by side, plus one-hot tags: the input of the ridge reference."""
    blocks = [pooled_block(cache, kind) for kind in KINDS if cache.dim(kind)]
    return np.concatenate([*blocks, tag_one_hot(cache, train_rows)], 1)


def fit_ridge(features: np.ndarray, targets: np.ndarray, alphas: tuple[float, ...] = RIDGE_ALPHAS) -> RidgeFit:
    """What scikit-learn's RidgeCV fits from `features` to the unit `targets` (alpha by leave-one-out over the
    rows), streamed over row chunks (`evaluation.ridge`)."""
    return fit_ridge_loo(chunks_of(features, normalise_rows(targets), chunk_rows(features.shape[1])), alphas)


def ridge_vectors(features: np.ndarray, targets: np.ndarray, train_rows: np.ndarray,
                  alphas: tuple[float, ...] = RIDGE_ALPHAS) -> tuple[np.ndarray, RidgeFit]:
    """RidgeCV from `features` to the unit `targets` of `train_rows` (alpha by leave-one-out over those rows);
    the predicted vectors of every row and the fit (its `alpha_` the one chosen)."""
    model = fit_ridge(features[train_rows], targets[train_rows], alphas)
    return model.predict(features).astype(np.float32), model


def _unit64(x: np.ndarray) -> np.ndarray:
    """A float64 copy of `x` with unit rows (all-zero rows stay zero): `normalise_rows` at the precision of a fit."""
    u = np.asarray(x, np.float64)
    return u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)


def rbf_features(x: np.ndarray, landmarks: np.ndarray, gamma: float) -> np.ndarray:
    """(n, m) exp(-gamma |u - l|^2) of each row u of `x` made unit (an all-zero row stays zero) against each
    unit `landmarks` row, in float64."""
    u = _unit64(x)
    lm = np.asarray(landmarks, np.float64)
    sq = (u * u).sum(1, keepdims=True) + (lm * lm).sum(1) - 2 * u @ lm.T
    return np.exp(-gamma * np.maximum(sq, 0.0))


@dataclass
class KernelRidgeFit:
    """A fitted kernel ridge map: prediction = rbf_features(x, landmarks, gamma) @ weight.T + bias, plus
    x @ mean_weight.T when it is fitted on a linear map's residuals (`fit_residual_kernel_ridge`)."""

    landmarks: np.ndarray    # (m, F) unit rows
    weight: np.ndarray       # (out, m): the ridge on Nyström features, the whitening folded in
    bias: np.ndarray         # (out,)
    gamma: float
    alpha: float
    mean_weight: np.ndarray | None = None   # (out, F): the linear map whose residuals the kernel part fits

    def predict(self, x: np.ndarray) -> np.ndarray:
        def one(c: np.ndarray) -> np.ndarray:
            y = rbf_features(c, self.landmarks, self.gamma) @ self.weight.T + self.bias
            return y if self.mean_weight is None else y + np.asarray(c, np.float64) @ self.mean_weight.T
        return by_chunks(one, x, chunk_rows(len(self.landmarks))).astype(np.float32)


def nystroem_basis(features: np.ndarray, gamma: float = KERNEL_GAMMA, max_landmarks: int = MAX_LANDMARKS,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks L (unit float64 rows: every row of `features` when there are at most `max_landmarks`, else a
    seeded sample) and the whitening K(L, L)^-1/2 (L x r) that make rbf_features(x, L) @ whitening the Nyström
    features of x. Directions of K(L, L) below 1e-10 of its largest eigenvalue (duplicate rows) are dropped."""
    n = len(features)
    rows = np.arange(n) if n <= max_landmarks else np.sort(
        np.random.default_rng(seed).choice(n, max_landmarks, replace=False))
    landmarks = _unit64(np.asarray(features)[rows])
    eig, vec = np.linalg.eigh(rbf_features(landmarks, landmarks, gamma))
    keep = eig > eig.max() * 1e-10
    return landmarks, vec[:, keep] / np.sqrt(eig[keep])


def fit_kernel_ridge(features: np.ndarray, targets: np.ndarray, gamma: float = KERNEL_GAMMA,
                     max_landmarks: int = MAX_LANDMARKS, seed: int = 0,
                     alphas: tuple[float, ...] = RIDGE_ALPHAS,
                     basis: tuple[np.ndarray, np.ndarray] | None = None) -> KernelRidgeFit:
    """RBF kernel ridge from `features` (rows made unit) to the unit `targets`: Nyström features against
    `nystroem_basis` landmarks (every row up to `max_landmarks`, which makes it exact kernel ridge regression;
    `basis` when already computed for these features), then RidgeCV's fit on them (alpha by leave-one-out), a
    chunk of rows at a time so memory stays flat in the number of rows."""
    landmarks, whiten = basis or nystroem_basis(features, gamma, max_landmarks, seed)
    ridge = fit_ridge_loo(chunks_of(np.asarray(features), normalise_rows(targets), chunk_rows(len(landmarks)),
                                    lambda c: rbf_features(c, landmarks, gamma) @ whiten), alphas)
    return KernelRidgeFit(landmarks.astype(np.float32), (ridge.coef_ @ whiten.T).astype(np.float32),
                          np.asarray(ridge.intercept_, np.float32), float(gamma), float(ridge.alpha_))


def fit_residual_kernel_ridge(features: np.ndarray, targets: np.ndarray, mean: RidgeFit,
                              alphas: tuple[float, ...] = RESIDUAL_ALPHAS, gamma: float = KERNEL_GAMMA,
                              max_landmarks: int = MAX_LANDMARKS, seed: int = 0,
                              basis: tuple[np.ndarray, np.ndarray] | None = None) -> list[KernelRidgeFit]:
    """The linear map `mean` (fitted on these rows) plus RBF kernel ridge of its residuals (unit `targets`
    minus its prediction), one fit per alpha of `alphas` in their order: kernel ridge with the linear map as
    its prior mean, so a streamer unlike every training streamer falls back to the linear map instead of the
    targets' mean. No alpha is chosen here: leave-one-out on the residuals prefers no correction at all."""
    landmarks, whiten = basis or nystroem_basis(features, gamma, max_landmarks, seed)
    x = np.asarray(features)
    rows = chunk_rows(len(landmarks))
    resid = normalise_rows(targets).astype(np.float64) - mean.predict(x)
    fits = fit_ridge_path(chunks_of(x, resid, rows, lambda c: rbf_features(c, landmarks, gamma) @ whiten), alphas)
    return [KernelRidgeFit(landmarks.astype(np.float32), (f.coef_ @ whiten.T).astype(np.float32),
                           np.asarray(f.intercept_ + mean.intercept_, np.float32), float(gamma), f.alpha_,
                           np.asarray(mean.coef_, np.float32)) for f in fits]


def kernel_ridge_vectors(features: np.ndarray, targets: np.ndarray, train_rows: np.ndarray, seed: int = 0
                         ) -> tuple[np.ndarray, float]:
    """Kernel ridge (`fit_kernel_ridge`) fitted on `train_rows`: the predicted vectors of every row and the
    alpha chosen."""
    fit = fit_kernel_ridge(features[train_rows], targets[train_rows], seed=seed)
    return fit.predict(features), fit.alpha


def _fifth_split(train_rows: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A seeded fifth of `train_rows` to validate on (at least 2), the rest to fit on, both together (sorted),
    and the validation rows' positions in them: how the references choose a setting on training rows alone."""
    order = np.random.default_rng(seed).permutation(np.asarray(train_rows, np.int64))
    cut = max(2, len(order) // 5)
    val, fit_rows = np.sort(order[:cut]), np.sort(order[cut:])
    pool = np.sort(np.concatenate([val, fit_rows]))
    at = {int(r): i for i, r in enumerate(pool)}
    return val, fit_rows, pool, np.array([at[int(r)] for r in val])


def residual_ridge_vectors(features: np.ndarray, targets: np.ndarray, train_rows: np.ndarray, seed: int = 0,
                           alphas: tuple[float, ...] = RESIDUAL_ALPHAS, prior: RidgeFit | None = None
                           ) -> tuple[np.ndarray, float]:
    """RidgeCV plus kernel ridge of its residuals (`fit_residual_kernel_ridge`), the closed form of a transfer
    run's residual map: the alpha whose fit on four fifths of `train_rows` best recovers the other fifth's ID
    neighbours (`NeighbourRecall`'s mean of their Recall@10 among all training rows and among themselves, as
    transfer picks it), then refitted on every training row; the predicted vectors of every row and that alpha.
    `prior` is the RidgeCV fit on every training row when the caller has made it (evaluate's ridge row)."""
    from anchor_embed.evaluation.neighbour_recall import NeighbourRecall, monitor_figure

    val, fit_rows, pool, _ = _fifth_split(train_rows, seed)
    judge = NeighbourRecall(targets, pool, val)
    basis = nystroem_basis(features[fit_rows], seed=seed)
    fits = fit_residual_kernel_ridge(features[fit_rows], targets[fit_rows], fit_ridge(features[fit_rows],
                                     targets[fit_rows]), alphas, basis=basis)
    scores = [monitor_figure(f.predict(features[pool]), judge, "mean_recall_at_10") for f in fits]
    alpha = alphas[int(np.argmax(scores))]
    rows = np.asarray(train_rows)
    prior = prior if prior is not None else fit_ridge(features[rows], targets[rows])
    fit = fit_residual_kernel_ridge(features[rows], targets[rows], prior, (alpha,), seed=seed)[0]
    return fit.predict(features), float(alpha)


def knn_average_vectors(content: np.ndarray, targets: np.ndarray, train_rows: np.ndarray, k: int) -> np.ndarray:
    """Each row's mean unit target over its k content-nearest training rows (the row itself excluded)."""
    import faiss

    unit, c = normalise_rows(targets), normalise_rows(content)
    train_rows = np.asarray(train_rows, np.int64)
    sims, idx = faiss.knn(c, np.ascontiguousarray(c[train_rows]), min(k + 1, len(train_rows)),
                          metric=faiss.METRIC_INNER_PRODUCT)
    own = np.full(len(c), -1, np.int64)
    own[train_rows] = np.arange(len(train_rows))
    idx, _ = without_self(idx, sims, own, k)
    out = np.zeros_like(unit)
    for r, row in enumerate(idx):
        out[r] = unit[train_rows[row[row >= 0]]].mean(0)
    return out


def choose_knn_k(content: np.ndarray, targets: np.ndarray, train_rows: np.ndarray, ks: tuple[int, ...] = KNN_KS,
                 seed: int = 0) -> int:
    """The k whose averaging best recovers the training streamers' own neighbours (Recall@10 on a seeded
    fifth of them, averaged over the other four fifths only)."""
    from anchor_embed.evaluation.metrics import recall_at_k

    val, fit_rows, pool, queries = _fifth_split(train_rows, seed)
    truth = knn(normalise_rows(targets[pool]), queries, 10)[0]
    best, best_k = -1.0, ks[0]
    for k in ks:
        vecs = knn_average_vectors(content, targets, fit_rows, min(k, len(fit_rows) - 1))
        got = recall_at_k(knn(normalise_rows(vecs[pool]), queries, 10)[0], truth, 10)
        if got > best:
            best, best_k = got, k
    return best_k
