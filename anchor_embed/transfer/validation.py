"""Validation of a transfer run: do the validation streamers' content neighbours match their ID neighbours?

The same measure as `evaluate` (Recall@10 against the top-10 by ID embedding), on the validation share of
the training streamers, with the training and validation streamers as candidates: never the hold-out.
Beside it, the same queries among the validation streamers alone ("new" Recall@10): how well two streamers
the model never trained on find each other, which falls as a run memorises its training streamers.
"""

from __future__ import annotations

import numpy as np

from anchor_embed.evaluation.neighbour_recall import NeighbourRecall, monitor_per_query
from anchor_embed.transfer.split import MIN_VALIDATION, TransferSplit
from anchor_embed.vectorspace import normalise_rows

# maps whose blend is kept only when it beats the best other blend by more than one standard error of their
# paired per-query difference (the one-standard-error rule): the residual map copies the training streamers'
# own ID embeddings most closely, so where those are poor (sparse behaviour) it wins on validation, judged by
# the same poor ID embeddings, by chance (docs/tuning.md, thirteenth round)
CHALLENGERS = ("residual",)


def choose_map(per_query: dict[str, np.ndarray]) -> str:
    """The kind whose blend to keep, from each blend's per-query validation figures (in MAP_KINDS order): the
    best mean among the plain maps (the first of equal ones), replaced by a challenger only when the challenger's
    mean lead over it exceeds one standard error of their paired difference."""
    plain = [k for k in per_query if k not in CHALLENGERS]
    best = max(plain, key=lambda k: per_query[k].mean()) if plain else None
    for kind in (k for k in per_query if k in CHALLENGERS):
        if best is None:
            best = kind
            continue
        d = per_query[kind] - per_query[best]
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.inf
        if d.mean() > se:
            best = kind
    return best


def split_validation(split: TransferSplit) -> NeighbourRecall | None:
    """The validation of a transfer split (its validation streamers among the training and validation ones);
    None when it has none (split_streamers keeps none below MIN_VALIDATION)."""
    if len(split.val_rows) < MIN_VALIDATION:
        return None
    candidates = np.sort(np.concatenate([split.train_rows, split.val_rows]))
    return NeighbourRecall(split.val_vectors, candidates, split.val_rows)


def validation_figures(model, batcher, validation: NeighbourRecall) -> dict[str, float]:
    """A model's validation figures: the mixed and new-vs-new Recall@10, their mean, and the uniformity of its
    fusion vectors (the spread the collapse guard reads: the fixed map's part does not train)."""
    from anchor_embed.model.batcher import embed_rows

    vecs = embed_rows(model, batcher, validation.candidates)
    return {**_recalls(validation.mixed_per_query(vecs), validation.new_per_query(vecs)),
            "uniformity": _uniformity(vecs[:, :model.cfg.out_dim])}


def map_vectors(maps: dict, batcher, rows: np.ndarray, batch_size: int = 512) -> dict[str, np.ndarray]:
    """{kind: (len(rows), D) unit vectors} of each fixed map (model/linear_map.py) for the cache's `rows`."""
    import torch

    rows = [int(r) for r in rows]
    out = {}
    with torch.inference_mode():
        for kind, m in maps.items():
            out[kind] = np.concatenate([m(batcher.make(rows[s:s + batch_size])).float().cpu().numpy()
                                        for s in range(0, len(rows), batch_size)])
    return out


def fusion_vectors(model, batcher, rows: np.ndarray) -> np.ndarray:
    """(len(rows), out_dim) unit fusion vectors of the cache's `rows`: the model's output without its map."""
    from anchor_embed.model.batcher import embed_rows

    return normalise_rows(embed_rows(model, batcher, rows)[:, :model.cfg.out_dim])


def blend(fusion: np.ndarray, map_vectors: np.ndarray, share: float) -> np.ndarray:
    """Unit fusion vectors and unit map vectors side by side, weighted as the saved model's output weighs them
    (FusionModel.forward, model/fusion.py)."""
    return np.hstack([fusion * np.sqrt(1 - share), map_vectors * np.sqrt(share)])


def blended_figures(model, batcher, validation: NeighbourRecall, maps: dict[str, np.ndarray], share: float,
                    monitor: str) -> tuple[dict[str, float], str]:
    """The figures of the model's fusion vectors blended with each map's (`map_vectors` of the candidates) at
    `share`, as the saved model blends them; those of the map `choose_map` keeps by their per-query `monitor`
    figures, with every map's `monitor` figure beside them; and that map's kind."""
    fusion = fusion_vectors(model, batcher, validation.candidates)
    spread = _uniformity(fusion)
    per_query = {}
    for kind, v in maps.items():
        both = blend(fusion, v, share)
        per_query[kind] = validation.mixed_per_query(both), validation.new_per_query(both)
    scored = {kind: {**_recalls(*q), "uniformity": spread} for kind, q in per_query.items()}
    best = choose_map({kind: monitor_per_query(*q, monitor) for kind, q in per_query.items()})
    return {**scored[best], **{f"{kind}_map_{monitor}": f[monitor] for kind, f in scored.items()}}, best


def _recalls(mixed: np.ndarray, new: np.ndarray) -> dict[str, float]:
    """Mixed and new-vs-new Recall@10 and their mean, from the per-query figures."""
    a, b = float(mixed.mean()), float(new.mean())
    return {"recall_at_10": a, "new_recall_at_10": b, "mean_recall_at_10": (a + b) / 2}


def _uniformity(fusion: np.ndarray) -> float:
    """Uniformity of the unit fusion vectors (at most 2,000 of them, a fixed sample): the spread the collapse
    guard reads."""
    import torch

    from anchor_embed.losses import uniformity

    fusion = normalise_rows(fusion)
    sample = fusion[np.random.default_rng(0).permutation(len(fusion))[:2000]]
    return float(uniformity(torch.from_numpy(sample)))
