"""Downstream tasks for `probe` and `adapt` benchmarks, built from the shared datasets (labels CSVs).

None leaks from the inputs: not the tags (they are inputs) nor a title's year. twitch-streamers: a risk flag
(meta.mature_content), partnership (meta.partnered), log career followers (meta.total_followers);
movielens-100k: mean rating and log popularity (number of ratings), both from interactions.csv.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

TASKS = {  # dataset -> [(target, kind)]
    "twitch-streamers": [("mature_content", "classify"), ("partnered", "classify"), ("log_followers", "regress")],
    "movielens-100k": [("mean_rating", "regress"), ("log_popularity", "regress")],
}


def build_labels(dataset: Path, out: Path) -> Path | None:
    """Write OUT/labels.csv (anchor_id + one column per task of this dataset); None for other datasets."""
    if dataset.name not in TASKS:
        return None
    rows: dict[str, dict] = {}
    if dataset.name == "twitch-streamers":
        for line in (dataset / "streamers.jsonl").read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            m = r.get("meta", {})
            if m.get("total_followers") is None:
                continue
            rows[r["anchor_id"]] = {"mature_content": str(bool(m.get("mature_content"))).lower(),
                                    "partnered": str(bool(m.get("partnered"))).lower(),
                                    "log_followers": round(math.log1p(float(m["total_followers"])), 5)}
    else:
        ratings: dict[str, list[float]] = defaultdict(list)
        with (dataset / "interactions.csv").open(encoding="utf-8") as f:
            for row in csv.DictReader(f):
                ratings[row["item_id"]].append(float(row["weight"]))
        for item, rs in ratings.items():
            rows[item] = {"mean_rating": round(sum(rs) / len(rs), 5), "log_popularity": round(math.log1p(len(rs)), 5)}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "labels.csv"
    cols = [t for t, _ in TASKS[dataset.name]]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["anchor_id", *cols])
        for k, r in sorted(rows.items()):
            w.writerow([k, *(r[c] for c in cols)])
    return path
