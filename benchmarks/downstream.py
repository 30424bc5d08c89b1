"""One vector, many tasks: linear probes of each vector set, and probe vs adapter vs full fine-tuning vs head.

Uses the quality runs of a dataset (pretrained and default-transfer models per seed, taught without
evaluate's hold-out streamers) and the downstream labels of benchmarks/probe_tasks.py.
- probe: 5-fold CV of a linear probe on frozen backbones, the pretrained and the transferred vectors, and
  the ID embeddings (an upper reference: they were learned from the behaviour the tasks reflect), seed 0;
- compare: per seed, one 80/20 split of the labelled streamers (20% scored once at the end); the linear
  probe (fitted on the 80%), and `adapt` head only, low-rank adapter, and full fine-tuning of the
  transferred model (a validation share of the 80% picks each run's epoch); plus an adapter rank curve.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.probe_tasks import TASKS, build_labels

RANK = 4
CURVE = (1, 2, 8)


def _vectors(cache, run: Path) -> np.ndarray:
    from anchor_embed.model.batcher import Batcher, embed_all
    from anchor_embed.model.store import load_model

    model, _ = load_model(run)
    return embed_all(model, Batcher.for_model(model, cache))


def _split_probe(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, kind: str) -> float:
    """The linear probe fitted on `train`, its selection figure (macro-F1 or R²) on `test`."""
    import warnings

    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.metrics import f1_score, make_scorer, r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "classify":
        m = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=8, cv=3, max_iter=2000,
                                                                 scoring=make_scorer(f1_score, average="macro")))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            m.fit(x[train], y[train])
        return float(f1_score(y[test], m.predict(x[test]), average="macro"))
    m = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13))).fit(x[train], y[train])
    return float(r2_score(y[test], m.predict(x[test])))


def run_downstream(data: Path, out: Path, seeds: int, epochs: int = 15, patience: int = 4) -> dict:
    import csv
    import json

    from anchor_embed.data.id_embeddings import read_id_embeddings
    from anchor_embed.evaluation.probe import cv_probe, read_labels
    from anchor_embed.features.cache import open_cache
    from anchor_embed.features.pooled import frozen_vectors
    from anchor_embed.training.adapt import _splits, adapt

    root = out / data.name
    everything = build_labels(data, root / "downstream")
    if everything is None:
        return {}
    cache = open_cache(root / "features")
    keys_pos = cache.key_index()
    ids, _ = read_id_embeddings(data / "ids.npy")
    id_of = dict(zip(ids.keys, ids.vectors, strict=True))
    labels = root / "downstream" / "labels_covered.csv"   # the streamers every row can score, ID embeddings too
    with everything.open(newline="") as f, labels.open("w", newline="") as g:
        rows_in = list(csv.reader(f))
        csv.writer(g).writerows([rows_in[0]] + [r for r in rows_in[1:] if r[0] in id_of and r[0] in keys_pos])
    sets = {"frozen backbones": frozen_vectors(cache), "pretrained": _vectors(cache, root / "pretrain" / "seed0"),
            "transferred (contrastive)": _vectors(cache, root / "clean" / "seed0" / "contrastive")}
    probe_rows: dict[str, dict[str, dict]] = {}
    compare: dict[str, dict[str, dict]] = {}
    for target, kind in TASKS[data.name]:
        y_of, _ = read_labels(labels, target, kind)
        keys = sorted(k for k in y_of if k in keys_pos and k in id_of)   # the ID-embedding row needs them
        y = np.array([y_of[k] for k in keys])
        rows = np.array([keys_pos[k] for k in keys])
        table = {}
        for name, x in {**sets, "ID embeddings (upper reference)": np.stack([id_of[k] for k in keys])}.items():
            xs = x if name.startswith("ID") else x[rows]
            per = cv_probe(xs, y, kind, folds=5, seed=0)
            table[name] = {m: (float(np.mean(v)), float(np.std(v, ddof=1))) for m, v in per.items()}
        probe_rows[target] = table
        res: dict[str, dict] = {}
        for seed in range(seeds):
            run = root / "clean" / f"seed{seed}" / "contrastive"
            x = _vectors(cache, run)[rows]
            train_k, val_k, test_k = _splits(keys, 0.2, 0.15, seed)
            at = {k: i for i, k in enumerate(keys)}
            tr = np.array([at[k] for k in train_k + val_k])
            te = np.array([at[k] for k in test_k])
            res.setdefault("linear probe", {"scores": [], "params": x.shape[1] * (len(set(y)) if kind == "classify"
                                                                                  else 1)})["scores"].append(
                _split_probe(x, y, tr, te, kind))
            variants = [("head only", "head", RANK), (f"adapter (rank {RANK})", "adapter", RANK), ("full fine-tuning", "full", RANK)]
            if seed == 0:
                variants += [(f"adapter (rank {r})", "adapter", r) for r in CURVE]
            for name, mode, rank in variants:
                dst = root / "downstream" / target / f"seed{seed}" / f"{mode}-r{rank}"
                done = dst / "adapter.json"
                summary = json.loads(done.read_text()) if done.is_file() else adapt(
                    run, labels, dst, target=target, kind=kind, mode=mode, rank=rank, epochs=epochs,
                    patience=patience, holdout_frac=0.2, seed=seed, resume=(dst / "checkpoints" / "latest.json").is_file())
                r = res.setdefault(name, {"scores": []})
                r["scores"].append(summary["test_score"])
                r.update(params=summary["trainable_params"], share=summary["trainable_share"], bytes=summary["patch_bytes"])
        compare[target] = {"kind": kind, "rows": res}
    return {"probe": probe_rows, "compare": compare}
