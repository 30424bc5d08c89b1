"""The downstream labels come from the interactions, never from a record's fields the features read."""

from __future__ import annotations

import csv
import json
import math

from benchmarks.probe_tasks import TASKS, build_labels
from benchmarks.quality import META_TAGS


def test_labels_are_counted_from_the_interactions(tmp_path):
    ds = tmp_path / "twitch-streamers"
    ds.mkdir()
    (ds / "interactions.csv").write_text("user_id,item_id,weight,timestamp\n"
                                         "u1,a,1,\nu2,a,1,\nu1,a,1,\nu3,b,1,\n")   # u1 twice on a: one viewer
    (ds / "streamers.jsonl").write_text(json.dumps({"anchor_id": "a", "meta": {"total_followers": 10**6}}) + "\n")
    with build_labels(ds, tmp_path / "out").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["anchor_id"] for r in rows] == ["a", "b"]
    assert [float(r["log_popularity"]) for r in rows] == [round(math.log1p(2), 5), round(math.log1p(1), 5)]

    ml = tmp_path / "movielens-100k"
    ml.mkdir()
    (ml / "interactions.csv").write_text("user_id,item_id,weight,timestamp\n1,7,5,0\n2,7,2,0\n")
    with build_labels(ml, tmp_path / "out-ml").open() as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["mean_rating"]) == 3.5 and float(row["log_popularity"]) == round(math.log1p(2), 5)


def test_no_task_is_a_meta_field_the_bench_reads_as_a_tag():
    fields = {name: {spec.split(":")[0] for spec in tags.split(",")} for name, tags in META_TAGS.items()}
    stems = {"followers", "views", "viewers", "partnered", "mature", "year", "language"}
    for name, tasks in TASKS.items():
        for target, _ in tasks:
            assert not any(s in target for s in stems), (name, target)
            assert target not in fields.get(name, set())
