"""predict: an adapt run's head applied to a vectors folder gives the labels its own test score was made of."""

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, r2_score

from anchor_embed.evaluation.probe import read_labels
from anchor_embed.training.adapt import _splits
from tests.conftest import run_cli


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _test_share(run, labels, target, kind, have):
    """The adapt run's test streamers, as `adapt` drew them (its config's seed and shares)."""
    cfg = json.loads((run / "config.json").read_text())
    y, _ = read_labels(labels, target, kind)
    keys = sorted(k for k in y if k in have)
    return y, _splits(keys, cfg["holdout_frac"], cfg["val_frac"], cfg["seed"])[2]


def test_predict_of_an_adapter_run_gives_its_test_score(sample, pretrained, labels, tmp_path, capsys):
    run, vec, out = tmp_path / "ad", tmp_path / "vec", tmp_path / "pred.jsonl"
    assert run_cli("adapt", "--pretrained", pretrained, "--labels", labels, "--target", "kind", "--out", run,
                   "--epochs", "3", "--batch-size", "16", "--rank", "2", "--holdout-frac", "0.25") == 0
    # the head reads the patched model's vectors: the base's are refused, naming what to embed
    assert run_cli("predict", "--adapter", run, "--vectors", tmp_path / "none", "--out", out) == 2
    assert run_cli("embed", "--model", pretrained, "--streamers", sample / "streamers.jsonl", "--out",
                   tmp_path / "base") == 0
    capsys.readouterr()
    assert run_cli("predict", "--adapter", run, "--vectors", tmp_path / "base", "--out", out) == 2
    assert f"embed --adapter {run}" in capsys.readouterr().err and not out.exists()
    assert run_cli("embed", "--model", pretrained, "--adapter", run, "--streamers", sample / "streamers.jsonl",
                   "--out", vec) == 0
    assert run_cli("predict", "--adapter", run, "--vectors", vec, "--out", out) == 0
    rows = _rows(out)
    info = json.loads((run / "adapter.json").read_text())
    meta = json.loads((vec / "meta.json").read_text())
    assert [r["anchor_id"] for r in rows] == (vec / "keys.txt").read_text().split()
    assert {r["model_id"] for r in rows} == {meta["model_hash"]}
    assert {r["prediction"] for r in rows} <= set(info["classes"])
    assert all(1 / len(info["classes"]) <= r["probability"] <= 1 for r in rows)
    pred = {r["anchor_id"]: r["prediction"] for r in rows}
    y, test = _test_share(run, labels, "kind", "classify", pred)
    got = f1_score([str(y[k]) for k in test], [pred[k] for k in test], average="macro")
    assert round(got, 4) == info["test_score"]
    # the head as a torch module on the adapted model agrees row by row
    from safetensors.torch import load_file

    from anchor_embed.features.cache import open_cache
    from anchor_embed.model.batcher import Batcher, embed_all
    from anchor_embed.training.adapt import load_adapted

    model, _ = load_adapted(run)
    cache = open_cache(json.loads((run / "run.json").read_text())["features"])
    head = load_file(str(run / "head.safetensors"))
    logits = torch.from_numpy(embed_all(model, Batcher.for_model(model, cache))) @ head["weight"].T + head["bias"]
    want = dict(zip(cache.keys, np.asarray(info["classes"])[logits.argmax(1).numpy()], strict=True))
    assert all(pred[k] == want[k] for k in pred)
    # the Python API gives the same labels, and the patched model's vectors
    import anchor_embed

    api = anchor_embed.load(pretrained, adapter=run)
    got = api.predict(sample / "streamers.jsonl", quiet=True)
    assert [(r["anchor_id"], r["prediction"]) for r in got] == [(r["anchor_id"], r["prediction"]) for r in rows]
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(got, rows, strict=True)) < 1e-5
    np.testing.assert_allclose(api.encode(sample / "streamers.jsonl", quiet=True), np.load(vec / "vectors.npy"),
                               atol=1e-5)
    with pytest.raises(anchor_embed.AnchorEmbedError, match="adapter=ADAPT_RUN"):
        anchor_embed.load(pretrained).predict(sample / "streamers.jsonl")
    # a rerun replaces its own output; another file is refused and left as it was
    assert run_cli("predict", "--adapter", run, "--vectors", vec, "--out", out) == 0 and _rows(out) == rows
    other = tmp_path / "notes.jsonl"
    other.write_text('{"x": 1}\n')
    assert run_cli("predict", "--adapter", run, "--vectors", vec, "--out", other) == 2
    assert other.read_text() == '{"x": 1}\n'


def test_an_unfinished_adapt_run_is_said_so(sample, pretrained, labels, tmp_path, capsys):
    """A run stopped before its end was 'not an adapt run'; one resumed and stopped again predicted silently from
    the head of its best epoch so far."""
    import shutil

    run = tmp_path / "head"
    assert run_cli("adapt", "--pretrained", pretrained, "--labels", labels, "--target", "kind", "--mode", "head",
                   "--out", run) == 0
    assert run_cli("embed", "--model", pretrained, "--streamers", sample / "streamers.jsonl", "--out",
                   tmp_path / "vec") == 0
    stopped = tmp_path / "stopped"
    shutil.copytree(run, stopped)
    (stopped / "outcome.json").unlink()
    capsys.readouterr()
    assert run_cli("predict", "--adapter", stopped, "--vectors", tmp_path / "vec", "--out", tmp_path / "p.jsonl") == 0
    assert "did not finish training" in capsys.readouterr().err
    # an adapter.json edited by hand was a KeyError traceback; now one line naming the file and the key
    info = json.loads((run / "adapter.json").read_text())
    for edit, said in [({"base_hash": None}, "no usable 'base_hash'"), ({"kind": "rank"}, "kind 'rank'")]:
        (stopped / "adapter.json").write_text(json.dumps({**info, **edit}))
        assert run_cli("predict", "--adapter", stopped, "--vectors", tmp_path / "vec", "--out",
                       tmp_path / "p.jsonl") == 2
        err = capsys.readouterr().err
        assert f"{stopped / 'adapter.json'}: {said}" in err and "Traceback" not in err
    (stopped / "adapter.json").unlink()
    assert run_cli("predict", "--adapter", stopped, "--vectors", tmp_path / "vec", "--out", tmp_path / "p.jsonl") == 2
    # a head run keeps no checkpoint: --resume would only start it over (it advised --resume, which failed again
    # the same way when an error had stopped the run)
    assert "the adapt run did not finish (no adapter.json); it stopped before any checkpoint (on the error it " \
           "printed, if any), so there is nothing to resume: run the same `anchor-embed adapt` again" in \
           " ".join(capsys.readouterr().err.split())
    trained = tmp_path / "trained"                  # one with an epoch's checkpoint is resumed from it
    assert run_cli("adapt", "--pretrained", pretrained, "--labels", labels, "--target", "kind", "--epochs", "1",
                   "--out", trained) == 0
    (trained / "adapter.json").unlink()
    assert run_cli("predict", "--adapter", trained, "--vectors", tmp_path / "vec", "--out", tmp_path / "p.jsonl") == 2
    assert "did not finish (no adapter.json); run the same `anchor-embed adapt` with --resume to finish it from its " \
           "epoch-0001 checkpoint" in " ".join(capsys.readouterr().err.split())


def test_predict_of_a_head_run_reads_the_base_vectors_in_the_label_units(sample, pretrained, labels, tmp_path):
    run, out = tmp_path / "head", tmp_path / "pred.jsonl"
    assert run_cli("adapt", "--pretrained", pretrained, "--labels", labels, "--target", "n_tags", "--kind", "regress",
                   "--mode", "head", "--out", run, "--holdout-frac", "0.25") == 0
    assert run_cli("embed", "--model", pretrained, "--streamers", sample / "streamers.jsonl", "--out",
                   tmp_path / "vec") == 0
    assert run_cli("predict", "--adapter", run, "--vectors", tmp_path / "vec", "--out", out) == 0
    assert "`predict --adapter RUN --vectors VEC` its labels" in (run / "README.md").read_text()   # the card says how
    rows = _rows(out)
    assert all("probability" not in r for r in rows)
    pred = {r["anchor_id"]: r["prediction"] for r in rows}
    y, test = _test_share(run, labels, "n_tags", "regress", pred)
    info = json.loads((run / "adapter.json").read_text())
    assert abs(r2_score([y[k] for k in test], [pred[k] for k in test]) - info["test_score"]) < 1e-3
    import anchor_embed

    api = anchor_embed.load(pretrained, adapter=run).predict(sample / "streamers.jsonl", quiet=True)
    assert max(abs(a["prediction"] - pred[a["anchor_id"]]) for a in api) < 1e-4
    # numbers in the label's units, not the standardised ones the head was fitted on
    assert abs(np.mean(list(pred.values())) - np.mean(list(y.values()))) < np.std(list(y.values()))
    assert np.std(list(pred.values())) > 0.1 * np.std(list(y.values()))
