"""Ridge regression of frozen content features onto ID embeddings: the closed-form reference transfer.

Not a training method: `evaluate --ridge` scores it beside the trained models so their numbers have a
simple, strong point of comparison fitted on exactly the same (non-held-out) streamers.
"""

from __future__ import annotations

import numpy as np

from anchor_embed.vectorspace import normalise_rows

ALPHAS = (0.1, 1.0, 10.0, 100.0)


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """W minimising |[x 1] W - y|^2 + alpha |W[:-1]|^2 (bias unpenalised), in float64."""
    xb = np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])
    reg = alpha * np.eye(xb.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(xb.T @ xb + reg, xb.T @ np.asarray(y, np.float64))


def predict(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))]) @ w).astype(np.float32)


def choose_alpha(x: np.ndarray, y: np.ndarray, seed: int = 0, alphas: tuple[float, ...] = ALPHAS) -> float:
    """The alpha with the best mean cosine to the target on a seeded 20% validation cut of the training rows."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    cut = max(1, len(x) // 5)
    va, tr = order[:cut], order[cut:]
    y_unit = normalise_rows(y[va])
    scores = [float(np.mean(np.sum(normalise_rows(predict(x[va], fit_ridge(x[tr], y[tr], a))) * y_unit, axis=1)))
              for a in alphas]
    return alphas[int(np.argmax(scores))]


def ridge_vectors(features: np.ndarray, id_vectors: np.ndarray, train_rows: np.ndarray, seed: int = 0
                  ) -> tuple[np.ndarray, float]:
    """Predicted ID-space vectors for every row, fitted on `train_rows` only; and the alpha chosen."""
    x, y = features[train_rows], normalise_rows(id_vectors[train_rows])
    alpha = choose_alpha(x, y, seed)
    return predict(features, fit_ridge(x, y, alpha)), alpha
