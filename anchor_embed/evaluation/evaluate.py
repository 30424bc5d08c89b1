"""`anchor-embed evaluate`: frozen backbones and any trained models, scored in one table from one split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from anchor_embed import atomic
from anchor_embed.data.id_embeddings import align_to_streamers, read_id_embeddings
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.evaluation.metrics import holdout_split, markdown_table, score
from anchor_embed.features.cache import open_cache
from anchor_embed.progress import say


def model_labels(paths: list[str | Path]) -> list[str]:
    """A row name per run folder: its name, or as many trailing path parts as tell it apart from the others.

    Two runs both called `contrastive` (clean/seed0/contrastive, noisy/seed0/contrastive) must not share a row;
    a folder given twice gets a numbered second row.
    """
    parts = [Path(os.path.abspath(p)).parts for p in paths]  # abspath: '..' folded, symlinks keep their name
    bases, labels = [], []
    for me in parts:
        depth = 1
        while depth < len(me) and any(o[-depth:] == me[-depth:] for o in parts if o != me):
            depth += 1
        base = "/".join(me[-depth:])
        labels.append(base if base not in bases else f"{base} ({bases.count(base) + 1})")
        bases.append(base)
    return labels


def evaluate(
    features: str | Path,
    id_emb: str | Path,
    models: list[str | Path] | None = None,
    id_keys: str | Path | None = None,
    out: str | Path | None = None,
    holdout_frac: float = 0.2,
    seed: int = 0,
    frozen: bool = True,
    ridge: bool = False,
    ridge_id_emb: str | Path | None = None,
) -> list[dict]:
    """Score each model's content kNN against ID-embedding neighbours of held-out streamers."""
    from anchor_embed.features.pooled import frozen_vectors
    from anchor_embed.model.batcher import Batcher, embed_all
    from anchor_embed.model.store import load_model

    cache = open_cache(features)
    ids, report = read_id_embeddings(id_emb, id_keys)
    ids = align_to_streamers(ids, cache.keys, report)
    say(f"[bold]evaluate[/]: {report.summary()}")
    pos = cache.key_index()
    rows_in_cache = np.array([pos[k] for k in ids.keys])
    held = holdout_split(ids.keys, holdout_frac, seed)
    queries = np.array([i for i, k in enumerate(ids.keys) if k in held])
    named: dict[str, np.ndarray] = {}
    if frozen or ridge:
        base = frozen_vectors(cache)[rows_in_cache]
    if frozen:
        named["frozen backbones"] = base
    if ridge:
        from anchor_embed.evaluation.ridge import ridge_vectors

        train = np.array([i for i, k in enumerate(ids.keys) if k not in held])
        target = ids.vectors
        if ridge_id_emb is not None:  # e.g. the noisy ID embeddings the trained models were taught with
            other, rep2 = read_id_embeddings(ridge_id_emb, None)
            other = align_to_streamers(other, cache.keys, rep2)
            opos = {k: i for i, k in enumerate(other.keys)}
            missing = [k for k in ids.keys if k not in opos]
            if missing:
                raise AnchorEmbedError(f"{ridge_id_emb}: no ID embedding for {len(missing)} evaluated streamers, "
                                       f"e.g. {missing[0]!r}")
            target = other.vectors[[opos[k] for k in ids.keys]]
        named["ridge (reference)"], alpha = ridge_vectors(base, target, train, seed)
        say(f"[bold]evaluate[/]: ridge on frozen features fitted on {len(train)} streamers, alpha {alpha:g}")
    for m, label in zip(models or [], model_labels(models or []), strict=True):
        model, _ = load_model(m)
        vecs = embed_all(model, Batcher.for_model(model, cache))
        named[label] = vecs[rows_in_cache]
    rows = score(named, ids.vectors, queries)
    table = markdown_table(rows)
    say(table)
    if out:
        out = Path(out)
        atomic.write_json(out / "evaluation.json", {"rows": rows, "holdout_frac": holdout_frac, "seed": seed,
                                                    "features": str(features), "id_emb": str(id_emb)})
        atomic.write_text(out / "evaluation.md", table)
    return rows
