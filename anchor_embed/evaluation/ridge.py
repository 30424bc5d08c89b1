"""Ridge regression with an unpenalised intercept and alpha chosen by exact leave-one-out error, streamed over
chunks of rows: what scikit-learn's `RidgeCV(alphas)` fits (its default efficient LOO, one alpha for every
target), in memory that does not grow with the number of rows.

RidgeCV holds the whole design matrix in float64 and takes its SVD, so a kernel map's Nyström features
(rows x 4,096 landmarks) outgrow a machine at about 150,000 training streamers and take minutes at 10,000.
Here two passes over the chunks suffice: the first merges each chunk's means and centred cross-products
(Chan, Golub & LeVeque 1979), the second scores every alpha by the closed-form leave-one-out residual of a
linear smoother, e_i = r_i / (1 - h_ii), with h_ii = 1/n + x_i' (X'X + alpha I)^-1 x_i on centred rows
(Hastie, Tibshirani & Friedman, The Elements of Statistical Learning, 7.10).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

Chunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


@dataclass
class RidgeFit:
    """A fitted ridge: prediction = x @ coef_.T + intercept_ (the attribute names of scikit-learn's)."""

    coef_: np.ndarray          # (out, p)
    intercept_: np.ndarray     # (out,)
    alpha_: float
    loo_errors: np.ndarray     # mean squared leave-one-out error of each alpha tried, in their order

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(len(x), out) float64 predictions, a chunk of rows at a time (x may be a float32 memmap)."""
        return by_chunks(lambda c: np.asarray(c, np.float64) @ self.coef_.T + self.intercept_, x,
                         chunk_rows(self.coef_.shape[1]))


def by_chunks(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, rows: int) -> np.ndarray:
    """`fn` of `x`, `rows` rows at a time, stacked (an empty `x` still gives fn's empty result)."""
    return np.concatenate([fn(x[s:s + rows]) for s in range(0, max(len(x), 1), rows)])


def chunks_of(x: np.ndarray, y: np.ndarray, rows: int,
              transform: Callable[[np.ndarray], np.ndarray] | None = None) -> Chunks:
    """The chunks of an in-memory `x` (each through `transform`, when given) and `y`, `rows` rows at a time, as
    `fit_ridge_loo` reads them."""
    f = transform or (lambda c: c)
    return lambda: ((f(x[s:s + rows]), y[s:s + rows]) for s in range(0, len(x), rows))


def chunk_rows(width: int, budget_bytes: int = 1 << 27) -> int:
    """Rows per chunk so a float64 chunk `width` wide takes about `budget_bytes` (128 MiB by default)."""
    return max(64, budget_bytes // (8 * max(width, 1)))


Moments = tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _merge(m: Moments | None, x: np.ndarray, y: np.ndarray) -> Moments:
    """The moments `m` (None for none yet) with the rows of one more chunk merged in (Chan et al.)."""
    k, cx, cy = len(x), x.mean(0), y.mean(0)
    xc, yc = x - cx, y - cy
    if m is None:
        return k, cx, cy, xc.T @ xc, xc.T @ yc
    n, mx, my, sxx, sxy = m
    dx, dy, total = cx - mx, cy - my, n + k
    sxx += xc.T @ xc + np.outer(dx, dx) * (n * k / total)
    sxy += xc.T @ yc + np.outer(dx, dy) * (n * k / total)
    return total, mx + dx * (k / total), my + dy * (k / total), sxx, sxy


def _moments(chunks: Chunks) -> tuple[Moments | None, tuple[np.ndarray, np.ndarray] | None]:
    """Rows, means of x and y, and centred cross-products x'x and x'y of the chunks, each chunk's merged in; or,
    when the chunks hold fewer rows than columns, no moments but the rows themselves (x, y) for the Gram path:
    chunks are kept, not merged, until as many rows as columns have come (they take less memory than x'x would),
    so a small, wide sample never forms the p x p cross-product."""
    m: Moments | None = None
    held: list[tuple[np.ndarray, np.ndarray]] = []
    held_rows = 0
    for x, y in chunks():
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if not len(x):
            continue
        if m is None and held_rows + len(x) < x.shape[1]:
            held.append((x, y))
            held_rows += len(x)
            continue
        for hx, hy in held:
            m = _merge(m, hx, hy)
        held = []
        m = _merge(m, x, y)
    n = m[0] if m is not None else held_rows
    if n < 2:
        raise ValueError(f"ridge needs at least 2 rows, got {n}")
    if m is not None:
        return m, None
    return None, (np.concatenate([x for x, _ in held]), np.concatenate([y for _, y in held]))


def fit_ridge_path(chunks: Chunks, alphas: tuple[float, ...]) -> list[RidgeFit]:
    """The ridge from the chunks' x to their y at every one of `alphas`, in their order (`chunks()` yields (x, y)
    row blocks, the same each call; it is called once or twice), each with the mean squared leave-one-out error of
    every alpha over every row and target: one eigendecomposition serves them all."""
    moments, rows = _moments(chunks)
    if moments is None:
        return _ridge_path_dual(*rows, alphas)
    n, mx, my, sxx, sxy = moments
    s, v = np.linalg.eigh(sxx)
    s = np.maximum(s, 0.0)
    z = v.T @ sxy                                          # (p, out)
    inv = np.array([1.0 / (s + a) for a in alphas])        # (A, p)
    err = np.zeros(len(alphas))
    for x, y in chunks():                                  # pass 2: leave-one-out residuals of every alpha
        proj = (np.asarray(x, np.float64) - mx) @ v
        yc = np.asarray(y, np.float64) - my
        lev = 1.0 / n + (proj * proj) @ inv.T              # (k, A) leverages h_ii
        for i in range(len(alphas)):
            resid = yc - proj @ (z * inv[i][:, None])
            err[i] += ((resid / (1.0 - lev[:, i:i + 1])) ** 2).sum()
    err /= n * sxy.shape[1]
    fits = []
    for i, a in enumerate(alphas):
        coef = (v @ (z * inv[i][:, None])).T
        fits.append(RidgeFit(coef, my - mx @ coef.T, float(a), err))
    return fits


def _ridge_path_dual(x: np.ndarray, y: np.ndarray, alphas: tuple[float, ...]) -> list[RidgeFit]:
    """`fit_ridge_path` when there are fewer rows than columns (a small catalogue with wide inputs): the same
    fits from the eigendecomposition of the n x n Gram matrix of the centred rows, coef = X'(XX' + alpha I)^-1 Y
    and h_ii = 1/n + [XX'(XX' + alpha I)^-1]_ii, since the p x p one costs p^3 for a rank below n."""
    n, mx, my = len(x), x.mean(0), y.mean(0)
    x, y = x - mx, y - my
    s, u = np.linalg.eigh(x @ x.T)
    s = np.maximum(s, 0.0)
    uty = u.T @ y
    err = np.zeros(len(alphas))
    duals = []
    for i, a in enumerate(alphas):
        shrink = s / (s + a)
        lev = 1.0 / n + (u * u) @ shrink
        err[i] = (((y - u @ (shrink[:, None] * uty)) / (1.0 - lev[:, None])) ** 2).sum()
        duals.append(u @ (uty / (s + a)[:, None]))          # (XX' + alpha I)^-1 Y
    err /= n * y.shape[1]
    fits = []
    for a, dual in zip(alphas, duals, strict=True):
        coef = (x.T @ dual).T
        fits.append(RidgeFit(coef, my - mx @ coef.T, float(a), err))
    return fits


def fit_ridge_loo(chunks: Chunks, alphas: tuple[float, ...]) -> RidgeFit:
    """Ridge from the chunks' x to their y (`fit_ridge_path`), alpha the first of `alphas` with the least mean
    squared leave-one-out error over every row and target."""
    fits = fit_ridge_path(chunks, alphas)
    return fits[int(np.argmin(fits[0].loo_errors))]      # the first of equal errors, as RidgeCV keeps
