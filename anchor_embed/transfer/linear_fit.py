"""Fitting a transferred model's linear map (model/linear_map.py) in closed form: RidgeCV from the pooled
input features of the training streamers to their unit ID embeddings, as the ridge reference of evaluate."""

from __future__ import annotations

import numpy as np
import torch

from anchor_embed.features.meta_tags import meta_tag_mask
from anchor_embed.model.batcher import Batcher
from anchor_embed.model.fusion import FusionModel
from anchor_embed.model.linear_map import LinearMap, pooled_inputs


def skip_tags(batcher: Batcher, tag_vocab: list[str]) -> torch.Tensor:
    """(V+1,) bools: the vocabulary ids of tags made from meta fields (`features --meta-tags`), left out of
    the tag-name mean for the reason `features.pooled.pooled_block` gives."""
    cache = batcher.cache
    meta = {t for t, m in zip(cache.tag_names, meta_tag_mask(cache.tag_names, cache.meta.get("meta_tags")),
                              strict=True) if m}
    return torch.tensor([False] + [t in meta for t in tag_vocab])


@torch.inference_mode()
def pooled_features(batcher: Batcher, rows: np.ndarray, skip: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """(len(rows), F) input of the linear map for the cache's streamers `rows`, each with all its atoms."""
    rows = [int(r) for r in rows]
    return np.concatenate([pooled_inputs(batcher.make(rows[s:s + batch_size]), skip).numpy()
                           for s in range(0, len(rows), batch_size)]) if rows else np.zeros((0, 0), np.float32)


def fit_linear_map(model: FusionModel, batcher: Batcher, targets: np.ndarray, rows: np.ndarray,
                   share: float) -> dict:
    """Fit the map on `rows` (their `targets`, e.g. ID embeddings) and install it in `model` with `share` of
    the blend; what was fitted, for run.json. Share 0 removes any map the model came with."""
    from anchor_embed.evaluation.references import fit_ridge

    if share <= 0:
        model.set_linear_map(None, 0.0)
        return {"share": 0.0}
    skip = skip_tags(batcher, model.cfg.tag_vocab)
    x = pooled_features(batcher, rows, skip)
    ridge = fit_ridge(x, targets[rows])
    linear = LinearMap(x.shape[1], targets.shape[1], len(skip) - 1)
    for name, value in (("weight", ridge.coef_), ("bias", ridge.intercept_), ("skip_tags", skip)):
        getattr(linear, name).copy_(torch.as_tensor(np.asarray(value)))
    model.set_linear_map(linear, share)
    return {"share": share, "alpha": float(ridge.alpha_), "inputs": int(x.shape[1]), "fitted_on": int(len(rows))}
