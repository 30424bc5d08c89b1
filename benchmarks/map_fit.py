"""One kernel map fit on n synthetic streamers, the scale row's unit of work (benchmarks/scale.py runs it in a
fresh process per way, so each peak RSS is its own):

- `streamed`: `fit_kernel_ridge` as transfer and evaluate run it (Nyström features made and read a chunk at
  a time, evaluation/ridge.py);
- `materialised`: the same landmarks and whitening, every row's Nyström features in one float64 matrix,
  then scikit-learn's RidgeCV on it (what `fit_kernel_ridge` did until the eleventh round).

`python -m benchmarks.map_fit N WAY` prints one JSON line: the alpha chosen and a checksum of the weights, so
the two ways can be seen to fit the same map.
"""

from __future__ import annotations

import json
import sys

import numpy as np

WIDTH, OUT = 1500, 64     # about a twitch model's pooled input width; an ID embedding's width


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n clustered rows and targets that depend on them nonlinearly."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 50), WIDTH)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + rng.normal(size=(n, WIDTH)).astype(np.float32)
    y = np.tanh(x[:, :OUT] @ rng.normal(size=(OUT, OUT)).astype(np.float32) * 0.2)
    return x, y


def materialised(x: np.ndarray, y: np.ndarray):
    """The kernel fit with the whole Nyström matrix in memory and RidgeCV on it: the baseline."""
    from sklearn.linear_model import RidgeCV

    from anchor_embed.evaluation.references import KERNEL_GAMMA, RIDGE_ALPHAS, nystroem_basis, rbf_features
    from anchor_embed.vectorspace import normalise_rows

    landmarks, whiten = nystroem_basis(x)
    ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit(rbf_features(x, landmarks, KERNEL_GAMMA) @ whiten, normalise_rows(y))
    return float(ridge.alpha_), ridge.coef_ @ whiten.T


def main() -> None:
    n, way = int(sys.argv[1]), sys.argv[2]
    x, y = synthetic(n)
    if way == "streamed":
        from anchor_embed.evaluation.references import fit_kernel_ridge

        fit = fit_kernel_ridge(x, y)
        alpha, weight = fit.alpha, fit.weight
    elif way == "materialised":
        alpha, weight = materialised(x, y)
    else:
        raise SystemExit(f"way {way!r}: expected streamed or materialised")
    print(json.dumps({"alpha": alpha, "weight_sum": round(float(np.abs(weight).sum()), 3)}))


if __name__ == "__main__":
    main()
