"""Fitting a transferred model's map (model/linear_map.py) in closed form from the pooled input features of the
training streamers to their unit ID embeddings: RidgeCV (the linear map, as evaluate's ridge reference) or
kernel ridge on RBF kernel features of the same inputs (the kernel map, as evaluate's kernel ridge reference).
"""

from __future__ import annotations

import numpy as np
import torch

from anchor_embed.evaluation.references import MAX_LANDMARKS, fit_kernel_ridge, fit_ridge
from anchor_embed.features.meta_tags import meta_tag_mask
from anchor_embed.model.batcher import Batcher
from anchor_embed.model.fusion import FusionModel
from anchor_embed.model.linear_map import LinearMap, pooled_inputs

# the maps a run can fit; `--map auto` fits both in this order (kernel first: it is kept on a tie, and when no
# validation can choose; docs/tuning.md, tenth round)
MAP_KINDS = ("kernel", "linear")


def map_kinds(choice: str) -> tuple[str, ...]:
    """The maps a run fits for `--map`: one, or all of `MAP_KINDS` for 'auto'."""
    return MAP_KINDS if choice == "auto" else (choice,)


def skip_tags(batcher: Batcher, tag_vocab: list[str]) -> torch.Tensor:
    """(V+1,) bools: the vocabulary ids of tags made from meta fields (`features --meta-tags`), left out of
    the tag-name mean for the reason `features.pooled.pooled_block` gives."""
    cache = batcher.cache
    meta = {t for t, m in zip(cache.tag_names, meta_tag_mask(cache.tag_names, cache.meta.get("meta_tags")),
                              strict=True) if m}
    return torch.tensor([False] + [t in meta for t in tag_vocab])


@torch.inference_mode()
def pooled_features(batcher: Batcher, rows: np.ndarray, skip: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """(len(rows), F) input of the map for the cache's streamers `rows`, each with all its atoms."""
    rows = [int(r) for r in rows]
    return np.concatenate([pooled_inputs(batcher.make(rows[s:s + batch_size]), skip).numpy()
                           for s in range(0, len(rows), batch_size)]) if rows else np.zeros((0, 0), np.float32)


def fit_maps(model: FusionModel, batcher: Batcher, targets: np.ndarray, rows: np.ndarray, kinds: tuple[str, ...],
             seed: int = 0, max_landmarks: int = MAX_LANDMARKS) -> dict[str, tuple[LinearMap, dict]]:
    """Each map of `kinds` fitted on `rows` (their `targets`, e.g. ID embeddings): {kind: (map, what was fitted,
    for run.json)}, the kernel map with at most `max_landmarks` landmarks. None is installed: the run keeps the
    one its validation picks."""
    skip = skip_tags(batcher, model.cfg.tag_vocab)
    x = pooled_features(batcher, rows, skip)
    out = {}
    for kind in kinds:
        if kind == "linear":
            ridge = fit_ridge(x, targets[rows])
            weight, bias, alpha, extra = ridge.coef_, ridge.intercept_, ridge.alpha_, {}
            linear = LinearMap(x.shape[1], targets.shape[1], len(skip) - 1)
        elif kind == "kernel":
            fit = fit_kernel_ridge(x, targets[rows], max_landmarks=max_landmarks, seed=seed)
            weight, bias, alpha = fit.weight, fit.bias, fit.alpha
            extra = {"landmarks": int(len(fit.landmarks)), "gamma": fit.gamma}
            linear = LinearMap(x.shape[1], targets.shape[1], len(skip) - 1, len(fit.landmarks), fit.gamma)
            linear.landmarks.copy_(torch.as_tensor(fit.landmarks))
        else:
            raise ValueError(f"map kind {kind!r}: expected one of {', '.join(MAP_KINDS)}")
        for name, value in (("weight", weight), ("bias", bias), ("skip_tags", skip)):
            getattr(linear, name).copy_(torch.as_tensor(np.asarray(value)))
        out[kind] = (linear, {"alpha": float(alpha), "inputs": int(x.shape[1]), "fitted_on": int(len(rows)), **extra})
    return out

