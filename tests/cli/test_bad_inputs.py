"""Every bad input answered in one line, never a traceback, and never at the cost of what is already there.

Each case runs one command as a user would, on a small world built once (records, a feature cache, a
pretrained run, vectors, an index). It checks the exit code, that stderr names the file/row/key/option,
that there is no traceback, and that the world's outputs are unchanged afterwards.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli, write_jsonl

GOOD = {"anchor_id": "g1", "nickname": "good", "profile": "singing every night", "tags": ["music"], "frames": []}


@pytest.fixture(scope="module")
def world(sample, sample_cache, pretrained, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("world")
    vec, idx = root / "vec", root / "idx"
    assert run_cli("embed", "--model", pretrained, "--streamers", sample / "streamers.jsonl", "--out", vec) == 0
    assert run_cli("index", "build", vec, "--out", idx) == 0
    assert run_cli("scatter", vec, "--clusters", "4") == 0
    return {"root": root, "sample": sample, "cache": sample_cache, "pre": pretrained, "vec": vec, "idx": idx}


def _digest(folder: Path) -> str:
    """Every file's bytes under a folder (its lock and temporary files aside): 'unchanged' means this."""
    h = hashlib.sha1()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def _exported(w: dict, t: Path) -> Path:
    assert run_cli("export", w["vec"], "--out", t / "v.parquet") == 0
    return t / "v.parquet"


def _records(t: Path, rows) -> Path:
    return write_jsonl(t / "bad.jsonl", [GOOD, *rows])


def _ids(t: Path, vecs, keys, name="ids") -> Path:
    np.save(t / f"{name}.npy", np.asarray(vecs, np.float32))
    (t / f"{name}.keys.txt").write_text("".join(k + "\n" for k in keys))
    return t / f"{name}.npy"


def _bytes(t: Path, data: bytes, name="bad.jsonl") -> Path:
    (t / name).write_bytes(data)
    return t / name


def _vec_copy(w, t: Path, break_keys=False, meta: str | None = None) -> Path:
    import shutil

    shutil.copytree(w["vec"], t / "v")
    if break_keys:
        (t / "v" / "keys.txt").write_text("a\nb\n")
    if meta is not None:
        (t / "v" / "meta.json").write_text(meta)
    return t / "v"


# (id, argv builder (world, tmp) -> args, exit code, text stderr must hold)
CASES = [
    # features: the records
    ("records file missing", lambda w, t: ["features", "--streamers", t / "nope.jsonl", "--out", t / "c"], 2,
     "nope.jsonl: no such file"),
    ("malformed JSON, strict", lambda w, t: ["features", "--streamers", _records(t, ['{"anchor_id": "x",']),
                                             "--out", t / "c", "--strict"], 2, "line 2: malformed JSON"),
    ("not UTF-8, strict", lambda w, t: ["features", "--streamers", _bytes(
        t, json.dumps(GOOD).encode() + b'\n{"anchor_id": "\xff"}\n'), "--out", t / "c", "--strict"], 2,
     "line 2: not UTF-8"),
    ("id with a line feed", lambda w, t: ["features", "--streamers", _records(t, [{"anchor_id": "a\nb"}]),
                                          "--out", t / "c", "--strict"], 2, "U+000A"),
    ("id with U+2028", lambda w, t: ["features", "--streamers", _records(t, [{"anchor_id": "a\u2028b"}]),
                                     "--out", t / "c", "--strict"], 2, "U+2028"),
    ("id with U+0085", lambda w, t: ["features", "--streamers", _records(t, [{"anchor_id": "a\x85b"}]),
                                     "--out", t / "c", "--strict"], 2, "U+0085"),
    ("duplicate id", lambda w, t: ["features", "--streamers", _records(t, [GOOD]), "--out", t / "c",
                                   "--strict"], 2, "duplicate anchor_id 'g1'"),
    ("tags not a list", lambda w, t: ["features", "--streamers", _records(t, [{"anchor_id": "x", "tags": "a"}]),
                                      "--out", t / "c", "--strict"], 2, "field 'tags'"),
    ("meta text not JSON", lambda w, t: ["features", "--streamers", _records(t, [{"anchor_id": "x", "meta": "{"}]),
                                         "--out", t / "c", "--strict"], 2, "meta is text but not JSON"),
    ("no valid records", lambda w, t: ["features", "--streamers", _bytes(t, b"\n\n"), "--out", t / "c"], 2,
     "no valid streamer records"),
    ("corrupt parquet", lambda w, t: ["features", "--streamers", _bytes(t, b"PAR1 no", "s.parquet"), "--out",
                                      t / "c"], 2, "not a readable Parquet file"),
    ("parquet without the id column", lambda w, t: ["features", "--streamers", _table(t, {"uid": [1]}), "--out",
                                                    t / "c"], 2, "no 'anchor_id' column (pass --id-column NAME)"),
    ("bad --columns", lambda w, t: ["features", "--streamers", w["sample"] / "streamers.jsonl", "--out", t / "c",
                                    "--columns", "profile"], 2, "expected field=column pairs"),
    ("unknown --columns field", lambda w, t: ["features", "--streamers", w["sample"] / "streamers.jsonl", "--out",
                                              t / "c", "--columns", "bio=x"], 2, "unknown record field(s) ['bio']"),
    ("unknown image backbone", lambda w, t: ["features", "--streamers", w["sample"] / "streamers.jsonl", "--out",
                                             t / "c", "--image-backbone", "resnet"], 2, "unknown kind 'resnet'"),
    ("text backbone not found", lambda w, t: ["features", "--streamers", w["sample"] / "streamers.jsonl", "--out",
                                              t / "c", "--text-backbone", str(t / "no-model")], 2, "cannot load"),
    # pretrain
    ("not a feature cache", lambda w, t: ["pretrain", "--features", t, "--out", t / "r"], 2, "not a feature cache"),
    ("config key misspelt", lambda w, t: ["pretrain", "--features", w["cache"], "--out", t / "r", "--config",
                                          _write(t / "c.json", '{"epoch": 3}')], 2, "unknown key 'epoch'"),
    ("config not JSON", lambda w, t: ["pretrain", "--features", w["cache"], "--out", t / "r", "--config",
                                      _write(t / "c.json", "{\n nope")], 2, "line 2: malformed JSON"),
    ("config in YAML", lambda w, t: ["pretrain", "--features", w["cache"], "--out", t / "r", "--config",
                                     _write(t / "c.yaml", "epochs: 3\n")], 2, "c.yaml: a config file is JSON (.json) or TOML"),
    ("no backbone threads", lambda w, t: ["features", "--streamers", w["sample"] / "streamers.jsonl", "--out",
                                          t / "c", "--threads", "0"], 2, "--threads"),
    ("run exists, no --resume", lambda w, t: ["pretrain", "--features", w["cache"], "--out", w["pre"]], 2,
     "holds a run already"),
    # transfer
    ("transfer from no run", lambda w, t: ["transfer", "--pretrained", t, "--id-emb", w["sample"] / "ids.npy",
                                           "--out", t / "t"], 2, "no model here (expected model_config.json"),
    ("adapt from no run", lambda w, t: ["adapt", "--pretrained", t, "--labels", _write(t / "l.csv", "anchor_id,y\n"),
                                        "--target", "y", "--out", t / "a"], 2, "no model here"),
    ("ID file missing", lambda w, t: ["transfer", "--pretrained", w["pre"], "--id-emb", t / "x.npy", "--out",
                                      t / "t"], 2, "x.npy: no such file"),
    ("ID keys count", lambda w, t: ["transfer", "--pretrained", w["pre"], "--id-emb", _ids(t, np.eye(3), ["s0000"]),
                                    "--out", t / "t"], 2, "3 vectors but 1 keys"),
    ("pickled npy", lambda w, t: ["transfer", "--pretrained", w["pre"], "--id-emb", _pickled(t), "--out", t / "t"],
     2, "p.npy: unreadable ("),
    ("no ID key known", lambda w, t: ["transfer", "--pretrained", w["pre"], "--id-emb", _ids(t, np.eye(2), ["q", "r"]),
                                      "--out", t / "t"], 2, "none of the ID-embedding keys match a streamer"),
    ("method misspelt", lambda w, t: ["transfer", "--pretrained", w["pre"], "--id-emb", w["sample"] / "ids.npy",
                                      "--out", t / "t", "--method", "contrastiv"], 2, "contrastiv"),
    ("param without =", lambda w, t: ["transfer", "--pretrained", w["pre"], "--id-emb", w["sample"] / "ids.npy",
                                      "--out", t / "t", "--param", "temperature"], 2, "expected key=value"),
    ("param misspelt", lambda w, t: ["transfer", "--pretrained", w["pre"], "--id-emb", w["sample"] / "ids.npy",
                                     "--out", t / "t", "--param", "temprature=0.1"], 2,
     "unknown key 'params.temprature'"),
    ("pretrained without a model", lambda w, t: ["transfer", "--pretrained", t, "--id-emb", w["sample"] / "ids.npy",
                                                 "--out", t / "t", "--features", w["cache"]], 2, "no model here"),
    # outputs of the wrong kind
    ("features --out is a file", lambda w, t: ["features", "--streamers", w["sample"] / "streamers.jsonl", "--out",
                                               _write(t / "afile", "")], 2, "afile: exists and is not a folder"),
    ("export --out is a folder", lambda w, t: ["export", w["vec"], "--out", _dir(t / "d.parquet")], 2,
     "d.parquet: is a folder; give a file path"),
    ("export over a file", lambda w, t: ["export", w["vec"], "--out", _write(t / "ids.npy", "mine")], 2,
     "ids.npy: exists; pass --overwrite to replace it"),
    ("export over an npy's keys", lambda w, t: ["export", w["vec"], "--out", _write(t / "e.keys.txt", "mine")
                                                .with_name("e.npy")], 2, "e.keys.txt: exists; pass --overwrite"),
    ("index over its own vectors", lambda w, t: ["index", "build", _vec_copy(w, t), "--out", t / "v"], 2,
     "holds vectors, not an index"),
    ("index of a feature cache", lambda w, t: ["index", "build", w["cache"], "--out", t / "i"], 2,
     "not a vectors folder"),
    ("negative text count", lambda w, t: ["features", "--streamers", w["sample"] / "streamers.jsonl", "--out",
                                          t / "c", "--max-texts", "-1"], 2, "--max-texts"),
    ("texts cut to nothing", lambda w, t: ["features", "--streamers", w["sample"] / "streamers.jsonl", "--out",
                                           t / "c", "--max-text-chars", "0"], 2, "--max-text-chars"),
    # evaluate
    ("hold-out of one", lambda w, t: ["evaluate", "--features", w["cache"], "--id-emb", w["sample"] / "ids.npy",
                                      "--holdout-frac", "1"], 2, "holds out every streamer"),
    ("nothing to score", lambda w, t: ["evaluate", "--features", w["cache"], "--id-emb", w["sample"] / "ids.npy",
                                       "--no-frozen"], 2, "nothing to score"),
    ("hold-out of zero", lambda w, t: ["evaluate", "--features", w["cache"], "--id-emb", w["sample"] / "ids.npy",
                                       "--holdout-frac", "0"], 2, "holds out no streamer"),
    # embed
    ("embed --features not a cache", lambda w, t: ["embed", "--model", w["pre"], "--streamers",
                                                   w["sample"] / "streamers.jsonl", "--out", t / "v", "--features", t],
     2, "not a feature cache"),
    ("shard out of range", lambda w, t: ["embed", "--model", w["pre"], "--streamers", w["sample"] / "streamers.jsonl",
                                         "--out", t / "v", "--shard", "3/2"], 2, "need 0 <= i < n"),
    ("shard not i/n", lambda w, t: ["embed", "--model", w["pre"], "--streamers", w["sample"] / "streamers.jsonl",
                                    "--out", t / "v", "--shard", "half"], 2, "expected i/n"),
    ("embed into a folder of other vectors", lambda w, t: [
        "embed", "--model", w["pre"], "--streamers", _records(t, []), "--out", w["vec"]], 2,
     "made from other inputs"),
    # index
    ("not a vectors folder", lambda w, t: ["index", "build", t, "--out", t / "i"], 2, "not a vectors folder"),
    ("dedup of an exported file", lambda w, t: ["dedup", _exported(w, t)], 2,
     "v.parquet: a file, not a vectors folder; pass the folder `anchor-embed embed` wrote"),
    ("export of an index", lambda w, t: ["export", w["idx"], "--out", t / "x.npy"], 2,
     "an index folder, not a vectors folder"),
    ("vectors meta not JSON", lambda w, t: ["scatter", _vec_copy(w, t, meta="{oops"), "--clusters", "2"], 2,
     "meta.json: not JSON (Expecting property name"),
    ("vectors and keys disagree", lambda w, t: ["index", "build", _vec_copy(w, t, break_keys=True), "--out", t / "i"],
     2, "rows but keys.txt 2 keys; the folder is damaged"),
    ("memory budget", lambda w, t: ["index", "build", w["vec"], "--out", t / "i", "--memory-budget", "lots"], 2,
     "expected a positive size like 512MB"),
    ("negative memory budget", lambda w, t: ["index", "build", w["vec"], "--out", t / "i", "--memory-budget=-1GB"],
     2, "expected a positive size"),
    ("recall target above 1", lambda w, t: ["index", "build", w["vec"], "--out", t / "i", "--min-recall", "1.5"], 2,
     "--min-recall"),
    ("index of another model", lambda w, t: ["index", "build", _vec_copy(w, t), "--out", w["idx"], "--model",
                                             t], 2, "no model here"),
    # similar
    ("unknown id", lambda w, t: ["similar", "s000", "--index", w["idx"]], 1, "did you mean"),
    ("k of zero", lambda w, t: ["similar", "s0001", "-k", "0", "--index", w["idx"]], 2, "-k"),
    ("a hold-out of three", lambda w, t: ["evaluate", "--features", w["cache"], "--id-emb", w["sample"] / "ids.npy",
                                          "--holdout-frac", "0.04", "--out", t / "e"], 0,
     "only 3 hold-out queries: each row's Recall@10 may be off by chance by up to 0.29"),
    ("no ids at all", lambda w, t: ["similar", "--index", w["idx"]], 2, "give anchor ids, --ids-file or --record"),
    ("bad record row, strict", lambda w, t: ["similar", "--index", w["idx"], "--record", _records(
        t, ['{"anchor_id": "x",']), "--strict"], 2, "bad.jsonl: line 2: malformed JSON"),
    ("ids file missing", lambda w, t: ["similar", "--ids-file", t / "ids.txt", "--index", w["idx"]], 2,
     "ids.txt: no such file"),
    ("ids file a folder", lambda w, t: ["similar", "--ids-file", _dir(t / "ids"), "--index", w["idx"]], 2,
     "ids: a folder; --ids-file takes a file of anchor ids"),
    ("no index", lambda w, t: ["similar", "s0001", "--index", t], 2, "no index here"),
    # dedup
    ("threshold above 1", lambda w, t: ["dedup", w["vec"], "--threshold", "2"], 2, "--threshold 2.0"),
    ("threshold not a number", lambda w, t: ["dedup", w["vec"], "--threshold", "nan"], 2, "--threshold nan"),
    ("assign of zero", lambda w, t: ["dedup", w["vec"], "--clusters", "4", "--assign", "0"], 2, "--assign 0"),
    ("max group size 1", lambda w, t: ["dedup", w["vec"], "--max-group-size", "1"], 2, "--max-group-size 1"),
    # scatter
    ("clusters of zero", lambda w, t: ["scatter", w["vec"], "--clusters", "0"], 2, "--clusters"),
    ("rerank list missing", lambda w, t: ["scatter", "rerank", t / "list.txt", "--clusters",
                                          w["vec"] / "clusters.jsonl"], 2, "list.txt: no such file"),
    ("clusters file malformed", lambda w, t: ["scatter", "rerank", _write(t / "l.txt", "s0001\n"), "--clusters",
                                              _write(t / "c.jsonl", '{"anchor_id": "s0001"}\n')], 2,
     "c.jsonl: line 1: not a cluster row"),
]


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _table(t: Path, columns: dict) -> Path:
    pq.write_table(pa.table(columns), t / "s.parquet")
    return t / "s.parquet"


def _pickled(t: Path) -> Path:
    (t / "p.npy").write_bytes(b"\x93NUMPY" + pickle.dumps({"x": 1}))
    (t / "p.keys.txt").write_text("s0000\n")
    return t / "p.npy"


@pytest.mark.slow
@pytest.mark.parametrize("name, argv, code, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input(world, tmp_path, capsys, name, argv, code, needle):
    before = {k: _digest(world[k]) for k in ("pre", "vec", "idx", "cache")}
    capsys.readouterr()
    got = run_cli(*argv(world, tmp_path))
    err = capsys.readouterr().err
    assert got == code, (name, err)
    assert needle in err, (name, err)
    assert "Traceback" not in err
    if err.startswith("error: "):                      # our own errors: exactly one line
        assert len(err.strip().splitlines()) == 1, err
    assert {k: _digest(world[k]) for k in before} == before    # nothing already there was lost or changed


def test_there_are_enough_cases():
    assert len(CASES) >= 30


@pytest.mark.slow
def test_skipped_rows_are_named(world, tmp_path, capsys):
    """A run that skips rows names them (file, line or key), not only counts them: an ID embedding with a NaN
    row and a duplicate key under `evaluate`, a malformed line under `embed`."""
    sample_ids = world["sample"] / "ids.npy"
    keys = [k.strip() for k in Path(str(sample_ids).replace(".npy", ".keys.txt")).read_text().splitlines()]
    vecs = np.load(sample_ids).astype(np.float32)
    vecs[1] = np.nan
    ids = _ids(tmp_path, np.concatenate([vecs, vecs[:1]]), [*keys, keys[0]])
    capsys.readouterr()
    assert run_cli("evaluate", "--features", world["cache"], "--id-emb", ids, "--out", tmp_path / "e") == 0
    err = capsys.readouterr().err
    assert f"skipped {ids}: key '{keys[1]}': vector has NaN or inf" in err, err
    assert f"key '{keys[0]}': duplicate key '{keys[0]}'" in err, err
    bad = _records(tmp_path, ['{"anchor_id": "x",'])
    assert run_cli("embed", "--model", world["pre"], "--streamers", bad, "--out", tmp_path / "v") == 0
    err = capsys.readouterr().err
    assert f"skipped {bad}: line 2: malformed JSON" in err, err
    assert "records.jsonl" not in err, err               # the reading of its own shard file is not reported


def test_report_lines_name_the_first_problems():
    from anchor_embed.data.input_report import InputReport

    report = InputReport("f.jsonl", kept=3)
    for i in range(7):
        report.bad(f"line {i + 2}", "malformed JSON", "malformed JSON")
    report.notes.append("column 'x' not read")
    lines = report.lines(limit=5)
    assert lines[0] == "f.jsonl: 3 kept, 7 skipped (7 malformed JSON)"
    assert lines[1:6] == [f"  skipped f.jsonl: line {i + 2}: malformed JSON" for i in range(5)]
    assert lines[6] == "  ... and 2 more (--strict stops at the first)" and lines[7] == "  note: column 'x' not read"
    assert InputReport("g", kept=1).lines() == ["g: 1 kept, 0 skipped"]


def test_export_replaces_a_file_only_when_told(world, tmp_path):
    out = _write(tmp_path / "v.parquet", "an older export")
    assert run_cli("export", world["vec"], "--out", out) == 2 and out.read_text() == "an older export"
    assert run_cli("export", world["vec"], "--out", out, "--overwrite") == 0
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == len((world["vec"] / "keys.txt").read_text().split())


@pytest.mark.slow
def test_similar_record_skips_and_names_a_bad_row(world, tmp_path, capsys):
    recs = _records(tmp_path, ['{"anchor_id": "x",'])
    capsys.readouterr()
    assert run_cli("similar", "--index", world["idx"], "--record", recs, "-k", "3", "--json", "-q") == 0
    got = capsys.readouterr()
    assert [json.loads(x)["anchor_id"] for x in got.out.splitlines()] == ["g1"]     # the good row answered
    assert got.err == ""                                                           # -q after the command
    assert run_cli("similar", "--index", world["idx"], "--record", recs, "-k", "3", "--json") == 0
    err = capsys.readouterr().err
    assert f"skipped {recs}: line 2: malformed JSON" in err
    assert "records.jsonl" not in err                    # no temporary file of Model.encode named


@pytest.mark.slow
def test_rerank_repeats_and_reviews_of_unknown_ids_are_said(world, tmp_path, capsys):
    """A feed listing a streamer twice keeps it once, at its first place, and says so; a review log naming ids
    the vectors lack says its pairs are not applied (both were silent)."""
    ids = (world["vec"] / "keys.txt").read_text().split()[:4]
    feed = _write(tmp_path / "feed.txt", "\n".join([ids[0], ids[1], ids[0], ids[2], ids[1], ids[3]]) + "\n")
    capsys.readouterr()
    assert run_cli("scatter", "rerank", feed, "--clusters", world["vec"] / "clusters.jsonl") == 0
    got = capsys.readouterr()
    assert sorted(got.out.split()) == sorted(ids)
    assert f"2 repeated id(s) in {feed} dropped" in got.err and repr(ids[0]) in got.err
    log = tmp_path / "reviews.jsonl"
    log.write_text("".join(json.dumps({"a": a, "b": b, "verdict": v}) + "\n" for a, b, v in
                           [(ids[0], ids[1], "same_owner"), (ids[0], "ghost", "not_related")]))
    assert run_cli("dedup", world["vec"], "--threshold", "0.99", "--reviewed", log, "--out", tmp_path / "d.jsonl") == 0
    err = capsys.readouterr().err
    assert "1 confirmed and 0 rejected pairs" in err and "1 reviewed pair(s) name ids not in" in err and "'ghost'" in err
