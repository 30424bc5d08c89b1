"""Downstream tasks for `probe` and `adapt` benchmarks, built from the shared datasets (labels CSVs).

None leaks from the inputs: not the tags, not a title's year, and not a record's meta fields, which the bench
reads as tags (`features --meta-tags`, benchmarks/quality.py META_TAGS: twitch's followers, views, partnership
and mature flag are inputs there, so predicting them would measure how well a vector keeps an input). Every
label comes from interactions.csv, the behaviour the content vectors never see: movielens-100k mean rating and
log popularity (distinct raters), twitch-streamers log popularity (distinct viewers in the matrix).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

TASKS = {  # dataset -> [(target, kind)]
    "twitch-streamers": [("log_popularity", "regress")],
    "movielens-100k": [("mean_rating", "regress"), ("log_popularity", "regress")],
}


def interaction_labels(dataset: Path) -> dict[str, dict[str, float]]:
    """Per item of DATASET/interactions.csv: its mean weight and log(1 + distinct users)."""
    weights: dict[str, list[float]] = defaultdict(list)
    users: dict[str, set] = defaultdict(set)
    with (dataset / "interactions.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            weights[row["item_id"]].append(float(row["weight"]))
            users[row["item_id"]].add(row["user_id"])
    return {item: {"mean_rating": round(sum(w) / len(w), 5), "log_popularity": round(math.log1p(len(users[item])), 5)}
            for item, w in weights.items()}


def build_labels(dataset: Path, out: Path) -> Path | None:
    """Write OUT/labels.csv (anchor_id + one column per task of this dataset); None for other datasets."""
    if dataset.name not in TASKS:
        return None
    rows = interaction_labels(dataset)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "labels.csv"
    cols = [t for t, _ in TASKS[dataset.name]]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["anchor_id", *cols])
        for k, r in sorted(rows.items()):
            w.writerow([k, *(r[c] for c in cols)])
    return path
