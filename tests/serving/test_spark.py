"""Spark batch jobs in local[2] on real movielens-100k records: the same vectors, dedup groups and clusters as
the one-box commands, and bad rows reported, not lost silently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SMALL, dataset, run_cli, write_jsonl

pytest.importorskip("pyspark", reason="pyspark not installed (pip install 'anchor-embed[spark]')")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java (17+) and there is none on PATH", allow_module_level=True)

pytestmark = pytest.mark.slow
MASTER = "local[2]"


@pytest.fixture(scope="module")
def movielens_run(tmp_path_factory) -> dict:
    """A tiny model on the first 240 movielens streamers and their one-box vectors."""
    data = dataset("movielens-100k")
    root = tmp_path_factory.mktemp("spark")
    lines = (data / "streamers.jsonl").read_text(encoding="utf-8").splitlines()[:240]
    records = write_jsonl(root / "streamers.jsonl", lines)
    assert run_cli("features", "--streamers", records, "--media-root", data, "--out", root / "features") == 0
    assert run_cli("pretrain", "--features", root / "features", "--out", root / "run", *SMALL) == 0
    assert run_cli("embed", "--model", root / "run", "--streamers", records, "--media-root", data,
                   "--out", root / "vectors") == 0
    assert run_cli("spark", "embed", "--model", root / "run", "--streamers", records, "--media-root", data,
                   "--out", root / "spark-vectors", "--buckets", "4", "--master", MASTER) == 0
    return {"root": root, "data": data, "records": records}


def _table(path: Path):
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


def _groups(path: Path) -> set[frozenset]:
    return {frozenset(json.loads(x)["members"]) for x in path.read_text().splitlines()}


def test_spark_embed_gives_the_one_box_vectors(movielens_run):
    from anchor_embed.serving.vectors import open_vectors

    root = movielens_run["root"]
    x, keys, _ = open_vectors(root / "vectors")
    t = _table(root / "spark-vectors")
    assert sorted(t["anchor_id"]) == sorted(keys) and len(keys) == 240
    pos = {k: i for i, k in enumerate(keys)}
    got = np.stack(t["vector"].to_numpy())
    np.testing.assert_allclose(got, x[[pos[a] for a in t["anchor_id"]]], atol=1e-5)
    meta = json.loads((root / "spark-vectors" / "_anchor_embed.json").read_text())
    assert meta["count"] == 240 and t["model_id"].nunique() == 1 and t["model_id"][0] == meta["model_hash"]
    assert sorted(p.name for p in (root / "spark-vectors").glob("bucket=*")) == [f"bucket={i}" for i in range(4)]


@pytest.mark.parametrize("flags", [[], ["--linkage", "complete"]])
def test_spark_dedup_gives_the_one_box_groups(movielens_run, flags):
    root = movielens_run["root"]
    threshold = _threshold(root)
    assert run_cli("dedup", root / "vectors", "--threshold", threshold, "--out", root / "one.jsonl", *flags) == 0
    assert run_cli("spark", "dedup", root / "spark-vectors", "--threshold", threshold, "--out", root / "spark.jsonl",
                   "--master", MASTER, *flags) == 0
    expected = _groups(root / "one.jsonl")
    assert len(expected) > 1 and _groups(root / "spark.jsonl") == expected
    # not only the same sets: the same lines (representative among equals, member and group order by id), each
    # recording the vectors it was found in: the one-box folder's fingerprint, the Spark table's
    one, spark = ([json.loads(x) for x in (root / f).read_text().splitlines()] for f in ("one.jsonl", "spark.jsonl"))
    meta = json.loads((root / "spark-vectors" / "_anchor_embed.json").read_text())
    assert {r.pop("vectors") for r in spark} == {meta["fingerprint"]}
    assert {r.pop("vectors") for r in one} == {json.loads((root / "vectors" / "meta.json").read_text())["fingerprint"]}
    assert spark == one


def test_spark_clustered_dedup_equals_the_single_process_search(movielens_run, capsys):
    """With --clusters, executors search within clusters of driver centroids: the groups of the same search
    done in one process over the vectors in anchor_id order (centroids fitted on all of them)."""
    from anchor_embed.serving.dedup import dedup_vectors

    root = movielens_run["root"]
    threshold = _threshold(root)
    assert run_cli("spark", "dedup", root / "spark-vectors", "--threshold", threshold, "--clusters", "4",
                   "--out", root / "clustered.jsonl", "--master", MASTER) == 0
    t = _table(root / "spark-vectors").sort_values("anchor_id")
    ids = t["anchor_id"].tolist()
    x = np.stack(t["vector"].to_numpy()).astype(np.float32)
    expected = {frozenset(ids[m] for m in g["members"]) for g in dedup_vectors(x, threshold, clusters=4, assign=2)}
    assert len(expected) > 1 and _groups(root / "clustered.jsonl") == expected
    # as `dedup`: clusters under 50 streamers are not made, and --out replaces only a dedup output
    capsys.readouterr()
    assert run_cli("spark", "dedup", root / "spark-vectors", "--threshold", threshold, "--clusters", "6",
                   "--out", root / "clustered.jsonl", "--master", MASTER) == 0
    assert "--clusters 6 for 240 streamers: 4 clusters instead" in " ".join(capsys.readouterr().err.split())
    assert _groups(root / "clustered.jsonl") == expected
    (root / "notes.json").write_text('{"mine": 1}\n')
    assert run_cli("spark", "dedup", root / "spark-vectors", "--threshold", threshold, "--out", root / "notes.json",
                   "--master", MASTER) == 2
    assert "exists and is not a dedup output" in capsys.readouterr().err
    assert (root / "notes.json").read_text() == '{"mine": 1}\n'


def _threshold(root: Path) -> float:
    """A cosine that makes a handful of groups of the tiny model's vectors, not one giant one."""
    from anchor_embed.serving.vectors import open_vectors

    x = np.asarray(open_vectors(root / "vectors")[0])
    sims = x @ x.T
    return round(float(np.quantile(sims[np.triu_indices(len(x), 1)], 0.995)), 4)


def test_spark_scatter_assigns_the_driver_centroids(movielens_run):
    from anchor_embed.vectorspace import centroid_index

    root = movielens_run["root"]
    assert run_cli("spark", "scatter", root / "spark-vectors", "--clusters", "5", "--out", root / "clusters",
                   "--master", MASTER) == 0
    t = _table(root / "spark-vectors").sort_values("anchor_id")
    x = np.stack(t["vector"].to_numpy()).astype(np.float32)
    _, labels = centroid_index(x, 5, 0).search(x, 1)
    got = _table(root / "clusters").set_index("anchor_id").loc[t["anchor_id"], "cluster"].to_numpy()
    np.testing.assert_array_equal(got, labels[:, 0])
    # the one-box command fits on the rows in id order too: the same clusters of the same vectors, whatever
    # order embed wrote them in (it was the file's order, and 28 cluster pairs where 5 mean the same partition)
    assert run_cli("scatter", root / "vectors", "--clusters", "5", "--out", root / "one-clusters.jsonl") == 0
    one = {r["anchor_id"]: r["cluster"] for r in map(json.loads, (root / "one-clusters.jsonl").read_text().splitlines())}
    np.testing.assert_array_equal([one[a] for a in t["anchor_id"]], labels[:, 0])


def test_spark_embed_reports_bad_rows_and_strict_stops(movielens_run, capsys):
    root, data = movielens_run["root"], movielens_run["data"]
    good = movielens_run["records"].read_text(encoding="utf-8").splitlines()[:3]
    bad = write_jsonl(root / "bad.jsonl", [*good, "{not json", json.dumps({"anchor_id": "x1", "tags": 7})])
    assert run_cli("spark", "embed", "--model", root / "run", "--streamers", bad, "--media-root", data,
                   "--out", root / "bad-vectors", "--master", MASTER) == 0
    assert len(_table(root / "bad-vectors")) == 3
    assert "2 bad record(s) skipped" in capsys.readouterr().err.replace("\n", " ")
    assert run_cli("spark", "embed", "--model", root / "run", "--streamers", bad, "--media-root", data,
                   "--out", root / "strict-vectors", "--strict", "--master", MASTER) == 2
    assert "error:" in capsys.readouterr().err
    # vectors made from other inputs are never written over silently
    assert run_cli("spark", "embed", "--model", root / "run", "--streamers", movielens_run["records"],
                   "--media-root", data, "--out", root / "bad-vectors", "--master", MASTER) == 2


def test_spark_dedup_honours_a_review_log_as_dedup_does(movielens_run, capsys):
    """A review log joins a pair the vectors keep apart and splits none here; a pair naming an id the vectors
    lack is said, by both paths, not applied silently."""
    root = movielens_run["root"]
    keys = (root / "vectors" / "keys.txt").read_text().split()
    log = root / "reviews.jsonl"
    log.write_text("".join(json.dumps({"a": a, "b": b, "verdict": v}) + "\n" for a, b, v in
                           [(keys[0], keys[1], "same_owner"), (keys[2], "ghost", "not_related")]))
    threshold = _threshold(root)
    capsys.readouterr()
    assert run_cli("dedup", root / "vectors", "--threshold", threshold, "--out", root / "r1.jsonl", "--reviewed",
                   log) == 0
    one = capsys.readouterr().err
    assert run_cli("spark", "dedup", root / "spark-vectors", "--threshold", threshold, "--out", root / "r2.jsonl",
                   "--master", MASTER, "--reviewed", log) == 0
    two = capsys.readouterr().err
    expected = _groups(root / "r1.jsonl")
    assert any({keys[0], keys[1]} <= g for g in expected) and _groups(root / "r2.jsonl") == expected
    for err in (one, two):
        assert "1 reviewed pair(s) name ids not in" in err and "'ghost'" in err, err


def test_spark_embed_keeps_an_anchor_ids_first_valid_row_as_embed_does(movielens_run, capsys):
    """Repeated anchor_ids: both paths keep the first valid row of each (a bad first row does not count) and
    skip the rest, so the vectors agree; --strict stops at the repeat (Spark refused every repeat before)."""
    root, data = movielens_run["root"], movielens_run["data"]
    rows = [json.loads(x) for x in movielens_run["records"].read_text(encoding="utf-8").splitlines()[:4]]
    a, b, c, d = rows
    recs = write_jsonl(root / "repeats.jsonl", [a, b, {**a, "profile": "another copy, another story"},
                                                {"anchor_id": c["anchor_id"], "tags": 7}, c, d,
                                                {**d, "tags": ["only this"]}])
    assert run_cli("embed", "--model", root / "run", "--streamers", recs, "--media-root", data,
                   "--out", root / "rep-one") == 0
    capsys.readouterr()
    assert run_cli("spark", "embed", "--model", root / "run", "--streamers", recs, "--media-root", data,
                   "--out", root / "rep-spark", "--master", MASTER) == 0
    err = capsys.readouterr().err.replace("\n", " ")
    assert "2 later row(s) of a repeated anchor_id skipped" in err and "1 bad record(s) skipped" in err
    from anchor_embed.serving.vectors import open_vectors

    x, keys, _ = open_vectors(root / "rep-one")
    t = _table(root / "rep-spark").set_index("anchor_id")
    assert sorted(t.index) == sorted(keys) == sorted(r["anchor_id"] for r in rows)
    np.testing.assert_allclose(np.stack(t.loc[keys, "vector"].to_numpy()), x, atol=1e-5)
    twice = write_jsonl(root / "twice.jsonl", [a, b, {**a, "profile": "another copy, another story"}])
    assert run_cli("spark", "embed", "--model", root / "run", "--streamers", twice, "--media-root", data,
                   "--out", root / "rep-strict", "--master", MASTER, "--strict") == 2
    assert f"duplicate anchor_id {a['anchor_id']!r} (--strict stops" in capsys.readouterr().err


def test_a_file_that_is_no_parquet_is_named_with_sparks_reason(movielens_run, capsys):
    root = movielens_run["root"]
    (root / "garbage.parquet").write_bytes(b"PAR1 no")
    capsys.readouterr()
    assert run_cli("spark", "dedup", root / "garbage.parquet", "--threshold", "0.9", "--master", MASTER) == 2
    err = capsys.readouterr().err
    assert "garbage.parquet: not a readable Parquet table (" in err and "is not a Parquet file" in err, err
    assert "An error occurred while calling" not in err


def _embed(run, records, out, *flags) -> int:
    return run_cli("spark", "embed", "--model", run["root"] / "run", "--streamers", records, "--media-root",
                   run["data"], "--out", out, "--master", MASTER, *flags)


def test_a_failed_or_refused_rerun_leaves_the_vectors_there(movielens_run, capsys):
    """An all-bad input, a changed input file, a folder of the user's own files: refused in one line, and what
    --out held is still there (the job wrote over it first and deleted the vectors, or replaced them silently)."""
    root = movielens_run["root"]
    lines = movielens_run["records"].read_text(encoding="utf-8").splitlines()
    src = write_jsonl(root / "changing.jsonl", lines[:20])
    assert _embed(movielens_run, src, root / "kept") == 0
    before = sorted(_table(root / "kept")["anchor_id"])
    src.write_text('garbage\n{"nickname": "x"}\n', encoding="utf-8")
    capsys.readouterr()
    assert _embed(movielens_run, src, root / "kept", "--overwrite") == 2
    err = capsys.readouterr().err
    assert "no valid streamer records" in err and "Traceback" not in err, err
    assert sorted(_table(root / "kept")["anchor_id"]) == before
    assert _embed(movielens_run, src, root / "never") == 2 and not (root / "never").exists()
    write_jsonl(src, lines[:15])                     # same path, other rows: noticed by the listing
    assert _embed(movielens_run, src, root / "kept") == 2
    assert "holds vectors made from other inputs (inputs" in capsys.readouterr().err
    assert _embed(movielens_run, src, root / "kept", "--overwrite") == 0
    assert len(_table(root / "kept")) == 15
    mine = root / "mine"
    mine.mkdir()
    (mine / "important.txt").write_text("keep")
    assert _embed(movielens_run, src, mine, "--overwrite") == 2
    assert "holds files spark embed did not write (important.txt)" in capsys.readouterr().err
    assert (mine / "important.txt").read_text() == "keep"
    assert not [p for p in root.iterdir() if ".writing-" in p.name or ".old-" in p.name]


def test_overwrite_removes_what_dedup_and_scatter_made_from_the_replaced_vectors(movielens_run, capsys):
    """spark embed --overwrite kept the `_dedup-T.jsonl` and `_clusters` spark dedup and scatter had written into
    the folder from the vectors it replaced (saying only "if made from the output replaced, run them again"), where
    `embed --overwrite` removes them: both remove them now, in the same words; a rerun of the same inputs keeps
    them, and another entry stays and is named, as before."""
    root = movielens_run["root"]
    lines = movielens_run["records"].read_text(encoding="utf-8").splitlines()
    a, b = write_jsonl(root / "ow_a.jsonl", lines[:20]), write_jsonl(root / "ow_b.jsonl", lines[:15])
    vec = root / "ow"
    assert _embed(movielens_run, a, vec) == 0
    assert run_cli("spark", "scatter", vec, "--clusters", "2", "--master", MASTER) == 0
    assert run_cli("spark", "dedup", vec, "--threshold", "0.9", "--master", MASTER) == 0
    (vec / "_notes.txt").write_text("mine")
    assert _embed(movielens_run, a, vec) == 0                      # the same vectors: what was made from them stays
    assert (vec / "_clusters").is_dir() and (vec / "_dedup-0.9.jsonl").is_file()
    capsys.readouterr()
    assert _embed(movielens_run, b, vec, "--overwrite") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"spark embed: removed _clusters, _dedup-0.9.jsonl from {vec}, made from the vectors replaced" in err
    assert not (vec / "_clusters").exists() and not (vec / "_dedup-0.9.jsonl").exists()
    assert (vec / "_notes.txt").read_text() == "mine" and "kept _notes.txt" in err
    assert len(_table(vec)) == 15


def test_scatter_never_writes_over_what_it_reads(movielens_run, capsys):
    root = movielens_run["root"]
    victim = root / "victim"
    shutil.copytree(root / "spark-vectors", victim)
    capsys.readouterr()
    assert run_cli("spark", "scatter", victim, "--clusters", "4", "--out", victim, "--master", MASTER) == 2
    assert "the job would delete what it reads" in capsys.readouterr().err
    assert len(_table(victim)) == 240
    assert run_cli("spark", "scatter", victim, "--clusters", "4", "--out", root, "--master", MASTER) == 2
    # an exported file: outputs go beside it (inside a file was a Java stack, after the whole search for dedup)
    assert run_cli("export", root / "vectors", "--out", root / "vec.parquet") == 0
    assert run_cli("spark", "scatter", root / "vec.parquet", "--clusters", "4", "--master", MASTER) == 0
    assert len(_table(root / "vec_clusters")) == 240
    assert run_cli("spark", "scatter", root / "vec.parquet", "--clusters", "3", "--master", MASTER) == 0  # its own: rerun
    assert _table(root / "vec_clusters")["cluster"].nunique() == 3
    capsys.readouterr()
    assert run_cli("spark", "scatter", root / "vec.parquet", "--clusters", "40", "--sample", "20", "--master",
                   MASTER) == 0                    # fewer sampled vectors than clusters: said, not silent
    fitted = _table(root / "vec_clusters")["cluster"].nunique()
    assert fitted < 40 and "vectors sampled of 240 (--sample 20; raise it for more)" in capsys.readouterr().err
    assert run_cli("spark", "dedup", root / "vec.parquet", "--threshold", _threshold(root), "--master", MASTER) == 0
    assert (root / f"vec_dedup-{_threshold(root)}.jsonl").is_file()
    # a spark scatter folder is what `scatter rerank --clusters` reads, as a clusters.jsonl
    (root / "feed.txt").write_text("\n".join(sorted(_table(victim)["anchor_id"])[:30]))
    assert run_cli("scatter", "rerank", root / "feed.txt", "--clusters", root / "vec_clusters") == 0
    capsys.readouterr()
    assert run_cli("spark", "dedup", root / "vectors", "--master", MASTER) == 2
    assert "a vectors folder of `embed`" in capsys.readouterr().err


def test_spark_embed_reads_as_embed_reads(movielens_run, capsys, tmp_path):
    """A misspelt --columns field, a blank line, a missing frame under --strict, bad rows by line: as embed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(x) for x in movielens_run["records"].read_text(encoding="utf-8").splitlines()[:6]]
    table = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist([{"anchor_id": r["anchor_id"], "bio": r.get("profile", "")} for r in rows]),
                   table)
    capsys.readouterr()
    assert _embed(movielens_run, table, tmp_path / "a", "--columns", "profil=bio") == 2
    assert "unknown record field(s) ['profil']" in capsys.readouterr().err
    assert _embed(movielens_run, table, tmp_path / "a", "--columns", "profile=biography") == 2
    assert "no column 'biography' (--columns profile=biography)" in capsys.readouterr().err
    blank = write_jsonl(tmp_path / "blank.jsonl", [json.dumps(r) for r in rows[:3]] + ["", "{not json",
                                                                                         json.dumps(rows[3])])
    assert _embed(movielens_run, blank, tmp_path / "b") == 0
    err = capsys.readouterr().err
    assert "1 bad record(s) skipped (1 malformed JSON)" in err and "blank.jsonl: line 5: malformed JSON" in err, err
    assert len(_table(tmp_path / "b")) == 4
    assert _embed(movielens_run, blank, tmp_path / "c", "--strict") == 2
    assert "blank.jsonl: line 5: malformed JSON" in capsys.readouterr().err
    nope = write_jsonl(tmp_path / "frame.jsonl", [json.dumps(rows[0]), json.dumps({**rows[1], "frames": ["images/nope.jpg"]})])
    assert _embed(movielens_run, nope, tmp_path / "d", "--strict") == 2
    assert "frame.jsonl: line 2: frame 'images/nope.jpg' not found under" in capsys.readouterr().err
    assert _embed(movielens_run, nope, tmp_path / "d") == 0 and len(_table(tmp_path / "d")) == 2


def test_a_master_url_spark_does_not_take_is_named(capsys):
    assert run_cli("spark", "scatter", "nowhere", "--master", "garbage://x") == 2
    err = capsys.readouterr().err
    assert "--master 'garbage://x': not a Spark master URL" in err and "Java" not in err


def test_spark_embed_with_an_adapter_and_a_donor_cache_gives_embeds_vectors(movielens_run, capsys):
    """--adapter and --features, as embed takes them (spark embed lacked both): the same vectors."""
    root, data = movielens_run["root"], movielens_run["data"]
    rows = [json.loads(x) for x in movielens_run["records"].read_text(encoding="utf-8").splitlines()]
    labels = root / "comedy.csv"
    labels.write_text("anchor_id,comedy\n" + "".join(f"{r['anchor_id']},{'comedy' in r['tags']}\n" for r in rows))
    patch = root / "adapted"
    assert run_cli("adapt", "--pretrained", root / "run", "--labels", labels, "--target", "comedy", "--out", patch,
                   "--epochs", "2", "--batch-size", "16", "--rank", "2") == 0
    import torch
    from safetensors.torch import load_file, save_file

    # training may keep the warm start (a zero patch) here: weights of its own, so the patch shows
    weights = load_file(str(patch / "patch.safetensors"))
    gen = torch.Generator().manual_seed(0)
    save_file({k: v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in weights.items()},
              str(patch / "patch.safetensors"))
    few = write_jsonl(root / "few.jsonl", [json.dumps(r) for r in rows[:30]])
    assert run_cli("embed", "--model", root / "run", "--streamers", few, "--media-root", data, "--out",
                   root / "ad-one", "--adapter", patch, "--features", root / "features") == 0
    assert _embed(movielens_run, few, root / "ad-spark", "--adapter", patch, "--features", root / "features") == 0
    assert _embed(movielens_run, few, root / "plain-spark") == 0
    from anchor_embed.serving.vectors import open_vectors

    x, keys, _ = open_vectors(root / "ad-one")
    t = _table(root / "ad-spark").set_index("anchor_id")
    np.testing.assert_allclose(np.stack(t.loc[keys, "vector"].to_numpy()), x, atol=1e-5)
    plain = _table(root / "plain-spark").set_index("anchor_id")
    assert not np.allclose(np.stack(plain.loc[keys, "vector"].to_numpy()), x, atol=1e-4)   # the patch applied
    meta = json.loads((root / "ad-spark" / "_anchor_embed.json").read_text())
    assert meta["adapter"] and "adapter" not in json.loads((root / "plain-spark" / "_anchor_embed.json").read_text())
    # every row names the patched model, as the job's record does (rows carried the base's hash)
    assert set(t["model_id"]) == {meta["model_hash"]} != set(plain["model_id"])
    # predict reads the Parquet parts as it reads embed's folder: the same labels; the base's vectors are refused
    assert run_cli("predict", "--adapter", patch, "--vectors", root / "ad-spark", "--out", root / "p-spark.jsonl") == 0
    assert run_cli("predict", "--adapter", patch, "--vectors", root / "ad-one", "--out", root / "p-one.jsonl") == 0
    rows = {r["anchor_id"]: r for r in map(json.loads, (root / "p-spark.jsonl").read_text().splitlines())}
    one = {r["anchor_id"]: r for r in map(json.loads, (root / "p-one.jsonl").read_text().splitlines())}
    assert rows.keys() == one.keys() and len(rows) == len(keys)
    assert all(rows[k]["prediction"] == one[k]["prediction"] and abs(rows[k]["probability"] - one[k]["probability"])
               < 1e-4 for k in rows)
    assert run_cli("predict", "--adapter", patch, "--vectors", root / "plain-spark", "--out", root / "p2.jsonl") == 2
    # a head-only run changes no vector: its spark embed is the base's, under the base's hash (indexes of the base
    # refused it), and predict of the head reads it
    head = root / "head"
    assert run_cli("adapt", "--pretrained", root / "run", "--labels", labels, "--target", "comedy", "--out", head,
                   "--mode", "head") == 0
    assert _embed(movielens_run, few, root / "head-spark", "--adapter", head) == 0
    made = json.loads((root / "head-spark" / "_anchor_embed.json").read_text())
    assert "adapter" not in made and made["model_hash"] == json.loads(
        (root / "plain-spark" / "_anchor_embed.json").read_text())["model_hash"]
    assert set(_table(root / "head-spark")["model_id"]) == set(plain["model_id"])
    assert run_cli("predict", "--adapter", head, "--vectors", root / "head-spark", "--out", root / "p3.jsonl") == 0


def test_a_job_prints_its_own_lines_not_the_jvms_start_up(movielens_run):
    """Run as a user runs it (its own process): stderr holds the job's lines, not the JVM's logging set-up and
    host-name warnings; a JVM that cannot start is named by what it printed (was JAVA_GATEWAY_EXITED only)."""
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "anchor-embed"
    root = movielens_run["root"]
    env = {k: v for k, v in os.environ.items() if k != "ANCHOR_EMBED_SPARK_LOG"}
    done = subprocess.run([exe, "spark", "scatter", root / "spark-vectors", "--clusters", "3", "--out",
                           root / "quiet", "--master", MASTER], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert lines and all(x.startswith("spark scatter") for x in lines), lines
    broken = {**env, "JAVA_HOME": str(root / "no-java")}
    done = subprocess.run([exe, "spark", "scatter", root / "spark-vectors", "--clusters", "3", "--master", MASTER],
                          capture_output=True, text=True, env=broken, timeout=300)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: Spark did not start ({root / 'no-java'}/bin/java: No such file or directory)"], done.stderr


def test_two_jobs_never_write_one_output_at_once(movielens_run, capsys):
    """Two Spark jobs into one --out swapped their staging folders over each other; a lock file beside --out
    (made atomically through Hadoop's FileSystem) refuses the second, naming the first. A lock of a process of
    this host that is gone (a killed job) is taken over."""
    import json
    import socket
    import subprocess

    root = movielens_run["root"]
    out = root / "locked-clusters"
    lock = root / ".locked-clusters.lock"
    running = subprocess.Popen(["sleep", "60"])
    try:
        lock.write_text(json.dumps({"job": "scatter", "host": socket.gethostname(), "pid": running.pid,
                                    "since": "2026-11-29 00:00:00"}))
        capsys.readouterr()
        assert run_cli("spark", "scatter", root / "spark-vectors", "--clusters", "3", "--out", out,
                       "--master", MASTER) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"spark scatter (pid {running.pid} on {socket.gethostname()}, since 2026-11-29 00:00:00) is writing it" \
            in err and f"remove {lock} if no job is running" in err, err
        assert not out.exists() and lock.exists()
    finally:
        running.kill()
        running.wait()
    assert run_cli("spark", "scatter", root / "spark-vectors", "--clusters", "3", "--out", out, "--master",
                   MASTER) == 0               # the process holding it is gone: taken over
    assert len(_table(out)) == 240 and not lock.exists()
