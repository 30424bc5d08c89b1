"""Fitting a transferred model's map (model/linear_map.py) in closed form from the pooled input features of the
training streamers to their unit ID embeddings: RidgeCV (the linear map, as evaluate's ridge reference) or
kernel ridge on RBF kernel features of the same inputs (the kernel map, as evaluate's kernel ridge reference),
or the linear map plus kernel ridge of its residuals (the residual map), that kernel part's alpha chosen by the
run's validation.
"""

from __future__ import annotations

import numpy as np
import torch

from anchor_embed.evaluation.neighbour_recall import NeighbourRecall, monitor_figure
from anchor_embed.evaluation.references import (
    KERNEL_GAMMA,
    MAX_LANDMARKS,
    RESIDUAL_ALPHA,
    RESIDUAL_ALPHAS,
    KernelRidgeFit,
    fit_kernel_ridge,
    fit_residual_kernel_ridge,
    fit_ridge,
    nystroem_basis,
)
from anchor_embed.features.meta_tags import meta_tag_mask
from anchor_embed.model.batcher import Batcher
from anchor_embed.model.fusion import FusionModel
from anchor_embed.model.linear_map import LinearMap, pooled_inputs
from anchor_embed.transfer.split import TransferSplit
from anchor_embed.transfer.validation import blend as blend_vectors
from anchor_embed.transfer.validation import fusion_vectors
from anchor_embed.vectorspace import normalise_rows

# the maps a run can fit; `--map auto` fits all in this order (kernel first: it is kept on a tie, and when no
# validation can choose; docs/tuning.md, tenth and thirteenth rounds)
MAP_KINDS = ("kernel", "linear", "residual")
# the validation figure that picks the residual map's alpha, whatever picks the epoch: the mixed figure alone
# rewards a small alpha that copies the training streamers' own ID embeddings (their errors too), which the
# new-vs-new figure, among streamers no map was fitted on, does not (docs/tuning.md, thirteenth round)
RESIDUAL_MONITOR = "mean_recall_at_10"


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
             seed: int = 0, max_landmarks: int = MAX_LANDMARKS, validation: NeighbourRecall | None = None,
             monitor: str = RESIDUAL_MONITOR, residual_alpha: float | None = None,
             blend: tuple[np.ndarray, float] | None = None) -> dict[str, tuple[LinearMap, dict]]:
    """Each map of `kinds` fitted on `rows` (their `targets`, e.g. ID embeddings): {kind: (map, what was fitted,
    for run.json)}, the kernel maps with at most `max_landmarks` landmarks; the residual map's alpha is
    `residual_alpha` when given, else the one whose map scores best on `validation`'s `monitor` figure
    (RESIDUAL_ALPHA without one): alone, or given `blend` (the unit fusion vectors of the validation's
    candidates, the map's share) blended with them as the saved model blends them. None is installed: the run
    keeps the one its validation picks."""
    bad = [k for k in kinds if k not in MAP_KINDS]
    if bad:
        raise ValueError(f"map kind {bad[0]!r}: expected one of {', '.join(MAP_KINDS)}")
    skip = skip_tags(batcher, model.cfg.tag_vocab)
    x = pooled_features(batcher, rows, skip)
    y = targets[rows]
    basis = (nystroem_basis(x, KERNEL_GAMMA, max_landmarks, seed)
             if {"kernel", "residual"} & set(kinds) else None)
    ridge = fit_ridge(x, y) if {"linear", "residual"} & set(kinds) else None
    tags, out = len(skip) - 1, {}
    for kind in kinds:
        if kind == "linear":
            linear = LinearMap(x.shape[1], targets.shape[1], tags)
            _copy(linear, weight=ridge.coef_, bias=ridge.intercept_, skip_tags=skip)
            out[kind] = (linear, {"alpha": float(ridge.alpha_), "inputs": int(x.shape[1]), "fitted_on": len(rows)})
            continue
        if kind == "kernel":
            fit, extra = fit_kernel_ridge(x, y, max_landmarks=max_landmarks, seed=seed, basis=basis), {}
        else:
            given = residual_alpha if residual_alpha is not None else RESIDUAL_ALPHA if validation is None else None
            fits = fit_residual_kernel_ridge(x, y, ridge, RESIDUAL_ALPHAS if given is None else (given,),
                                             max_landmarks=max_landmarks, seed=seed, basis=basis)
            fit, extra = (fits[0], {"alpha_by": "given" if residual_alpha is not None else "default"}) \
                if given is not None else _choose_residual(fits, batcher, skip, validation, monitor, blend)
            extra["linear_alpha"] = float(ridge.alpha_)
        linear = kernel_map(fit, x.shape[1], tags)
        _copy(linear, skip_tags=skip)
        out[kind] = (linear, {"alpha": fit.alpha, "inputs": int(x.shape[1]), "fitted_on": len(rows),
                              "landmarks": int(len(fit.landmarks)), "gamma": fit.gamma, **extra})
    return out


def refit_map(model: FusionModel, batcher: Batcher, split: TransferSplit, kind: str, alpha: float | None,
              seed: int = 0, max_landmarks: int = MAX_LANDMARKS) -> tuple[LinearMap, dict]:
    """The map of `kind` fitted again on the split's training and validation streamers (their ID embeddings),
    the residual map at the `alpha` validation chose for it (the others by leave-one-out as before): after the
    selection, the validation streamers are placed by their own ID embeddings too (docs/tuning.md, thirteenth
    round)."""
    rows = np.sort(np.concatenate([split.train_rows, split.val_rows]))
    return fit_maps(model, batcher, split.val_vectors, rows, (kind,), seed, max_landmarks,
                    residual_alpha=alpha if kind == "residual" else None)[kind]


def final_map(model: FusionModel, batcher: Batcher, split: TransferSplit, validation: NeighbourRecall | None,
              kind: str, alpha: float | None, share: float, refit: bool, seed: int = 0,
              max_landmarks: int = MAX_LANDMARKS) -> tuple[LinearMap, dict] | None:
    """The kept map of a trained `model` (its fusion vectors final) as the saved model carries it, with what
    run.json records of it; None when it stays as validated. The residual map's alpha is chosen again by the
    blend with these fusion vectors on `validation` (the alpha the map alone preferred before training is not
    the best one beside the trained model: docs/tuning.md, fifteenth and sixteenth rounds); then, with
    `refit`, the map is fitted again on the training and validation streamers (`refit_map`)."""
    record: dict = {}
    if kind == "residual" and validation is not None:
        fusion = fusion_vectors(model, batcher, validation.candidates)
        linear, fitted = fit_maps(model, batcher, split.val_vectors, split.train_rows, (kind,), seed, max_landmarks,
                                  validation, blend=(fusion, share))[kind]
        alpha, record["blend_alpha"] = fitted["alpha"], {k: fitted[k] for k in ("alpha", "alpha_by", "alphas")}
        if not refit:
            return linear, record
    if not refit or not len(split.val_rows):
        return None
    linear, fitted = refit_map(model, batcher, split, kind, alpha, seed, max_landmarks)
    return linear, {**record, "refit": {"kind": kind, **fitted}}


def kernel_map(fit: KernelRidgeFit, inputs: int, tags: int) -> LinearMap:
    """The model's map of a kernel (or residual) fit, its skip_tags still unset."""
    linear = LinearMap(inputs, fit.weight.shape[0], tags, len(fit.landmarks), fit.gamma, fit.mean_weight is not None)
    _copy(linear, weight=fit.weight, bias=fit.bias, landmarks=fit.landmarks)
    if fit.mean_weight is not None:
        _copy(linear, mean_weight=fit.mean_weight)
    return linear


def _copy(linear: LinearMap, **buffers) -> None:
    for name, value in buffers.items():
        getattr(linear, name).copy_(torch.as_tensor(np.asarray(value)))


def _choose_residual(fits: list[KernelRidgeFit], batcher: Batcher, skip: torch.Tensor,
                     validation: NeighbourRecall, monitor: str, blend: tuple[np.ndarray, float] | None = None
                     ) -> tuple[KernelRidgeFit, dict]:
    """The residual fit whose predictions score best on the validation's `monitor` figure (the first of equal
    figures), alone or blended (`blend`: the candidates' unit fusion vectors and the map's share), with every
    alpha's figure."""
    x = pooled_features(batcher, validation.candidates, skip)

    def vectors(f: KernelRidgeFit) -> np.ndarray:
        return f.predict(x) if blend is None else blend_vectors(blend[0], normalise_rows(f.predict(x)), blend[1])
    scores = [monitor_figure(vectors(f), validation, monitor) for f in fits]
    best = int(np.argmax(scores))
    return fits[best], {"alpha_by": f"validation {monitor}" + (" of the blend" if blend is not None else ""),
                        "alphas": {f"{f.alpha:.4g}": round(v, 5) for f, v in zip(fits, scores, strict=True)}}
