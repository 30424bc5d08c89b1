"""`anchor-embed evaluate`: one table from one split, rows named apart, references beside the models."""

import json

import numpy as np
import pytest

from tests.conftest import run_cli


def test_cli_evaluate_frozen_and_model(sample, sample_cache, pretrained, tmp_path):
    assert run_cli("evaluate", "--features", sample_cache, "--id-emb", sample / "ids.npy",
                   "--model", pretrained, "--out", tmp_path / "ev") == 0
    rows = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["frozen backbones", "frozen text only", "frozen frames only",
                                          "frozen tags only", "run"]
    assert rows[0]["recall_at_10"] > 0.1   # the sample's kinds show in content and in clicks
    assert "| frozen backbones |" in (tmp_path / "ev" / "evaluation.md").read_text()


def test_model_labels_tell_same_named_runs_apart(tmp_path):
    from anchor_embed.evaluation.evaluate import model_labels

    a, b, c = tmp_path / "clean" / "s0" / "contrastive", tmp_path / "noisy" / "s0" / "contrastive", tmp_path / "rkd"
    assert model_labels([a, c]) == ["contrastive", "rkd"]
    assert model_labels([a, b, c]) == ["clean/s0/contrastive", "noisy/s0/contrastive", "rkd"]
    assert model_labels([c, a, c]) == ["rkd", "contrastive", "rkd (2)"]
    assert model_labels([c, c, c]) == ["rkd", "rkd (2)", "rkd (3)"]
    a.mkdir(parents=True)
    (tmp_path / "link").symlink_to(a, target_is_directory=True)
    assert model_labels([tmp_path / "link", tmp_path / "x" / ".." / "rkd"]) == ["link", "rkd"]


@pytest.mark.slow
def test_references_fit_the_teaching_ids_and_truth_stays(sample, sample_cache, tmp_path):
    """Noisy or sparse teaching ID embeddings change the reference rows only; the truth is --id-emb's."""
    from anchor_embed.evaluation.evaluate import evaluate

    ids, keys = np.load(sample / "ids.npy"), (sample / "ids.keys.txt").read_text().split()
    noisy = tmp_path / "noisy.npy"
    np.save(noisy, ids + np.random.default_rng(0).normal(scale=2.0, size=ids.shape).astype(np.float32))
    (tmp_path / "noisy.keys.txt").write_text("\n".join(keys) + "\n")
    sparse = tmp_path / "sparse.npy"                       # ID embeddings for half of the streamers only
    np.save(sparse, ids[::2])
    (tmp_path / "sparse.keys.txt").write_text("\n".join(keys[::2]) + "\n")
    by_name = {}
    for name, teach in (("plain", None), ("same", sample / "ids.npy"), ("noisy", noisy), ("sparse", sparse)):
        rows = evaluate(sample_cache, sample / "ids.npy", ridge=True, knn_average=True, train_id_emb=teach)
        by_name[name] = {r["model"]: r for r in rows}
    plain, same, noisy_rows, sparse_rows = by_name["plain"], by_name["same"], by_name["noisy"], by_name["sparse"]
    assert same["ID embeddings used for training"]["recall_at_10"] == 1.0      # teaching with the truth itself
    assert {k: v for k, v in same.items() if k != "ID embeddings used for training"} == plain
    for other in (noisy_rows, sparse_rows):
        assert other["frozen backbones"] == plain["frozen backbones"]
        assert other["ridge (reference)"] != plain["ridge (reference)"]
        assert other["ID embeddings used for training"]["recall_at_10"] < 1.0


def test_an_evaluation_records_its_inputs_and_a_rerun_keeps_rows_it_did_not_score(sample, sample_cache, pretrained,
                                                                                   tmp_path, capsys):
    """evaluate rewrote the run's evaluation.json and card, and --out's evaluation.json, with whatever it scored
    last: a rerun without --ridge lost the ridge rows, another ID file replaced them without a word, and nothing
    said what made the figures. Now the inputs (paths and digests, hold-out, seed) are recorded; a rerun of the
    same inputs keeps the rows it did not score again, one of other inputs replaces them and says so."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pretrained, run)
    args = ["evaluate", "--features", sample_cache, "--model", run, "--out", tmp_path / "ev"]
    assert run_cli(*args, "--id-emb", sample / "ids.npy", "--ridge") == 0
    assert run_cli(*args, "--id-emb", sample / "ids.npy", "--no-frozen") == 0
    for saved in (run / "evaluation.json", tmp_path / "ev" / "evaluation.json"):
        got = json.loads(saved.read_text())
        names = [r["model"] for r in got["rows"]]
        assert names[0] == "run" and "ridge (reference)" in names and "frozen backbones" in names, names
        assert got["inputs"]["id_emb"] == str((sample / "ids.npy").resolve()) and got["inputs"]["seed"] == 0
        assert len(got["inputs"]["features_digest"]) == 32 and len(got["inputs"]["id_emb_digest"]) == 32
    assert json.loads((run / "evaluation.json").read_text())["this_run"] == "run"     # no Markdown in the data
    card = (run / "README.md").read_text()
    assert "| **run** |" in card and f"Scored on features {sample_cache.resolve()}" in card
    assert "ridge (reference)" in (tmp_path / "ev" / "evaluation.md").read_text()
    other = tmp_path / "ids2.npy"
    np.save(other, np.load(sample / "ids.npy")[::-1].copy())
    shutil.copy(sample / "ids.keys.txt", tmp_path / "ids2.keys.txt")
    capsys.readouterr()
    assert run_cli(*args, "--id-emb", other, "--no-frozen") == 0
    err = capsys.readouterr().err.replace("\n", " ")
    assert "replaced an evaluation of other inputs (id_emb differ; it had 8 rows)" in " ".join(err.split()), err
    assert [r["model"] for r in json.loads((run / "evaluation.json").read_text())["rows"]] == ["run"]


def test_a_cache_of_other_meta_tags_is_refused(sample, sample_cache, pretrained, tmp_path, capsys):
    """A model scored on features of another spec (a twitch run on the movielens cache) gave a figure without a
    word; a cache of other meta tags or backbones is refused, naming the setting."""
    other = tmp_path / "cache"
    assert run_cli("features", "--streamers", sample / "streamers.jsonl", "--out", other, "--media-root", sample,
                   "--meta-tags", "kind", "--reuse", sample_cache) == 0
    capsys.readouterr()
    assert run_cli("evaluate", "--features", other, "--id-emb", sample / "ids.npy", "--model", pretrained) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "trained on features with meta_tags None (--features has 'kind')" in err, err
    assert not (pretrained / "evaluation.json").exists() or "kind" not in (pretrained / "evaluation.json").read_text()


def test_out_into_another_runs_folder_is_refused_and_a_runs_own_keeps_this_run(sample, sample_cache, pretrained,
                                                                               tmp_path, capsys):
    """`evaluate --model a --out b` (b another run) replaced b's evaluation.json, rows and `this_run`, with a's
    scores and one yellow line; now refused before any work. `--out a` kept its rows but lost `this_run` (the
    --out write, after the card's, had none); a plain folder is written as before."""
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(pretrained, a)
    shutil.copytree(pretrained, b)
    (a / "evaluation.json").unlink(missing_ok=True)          # the shared run may have been evaluated before
    before = '{"rows": [{"model": "b"}], "inputs": {}, "this_run": "b"}'
    (b / "evaluation.json").write_text(before)
    args = ["evaluate", "--features", sample_cache, "--id-emb", sample / "ids.npy", "--model", a, "--no-frozen"]
    capsys.readouterr()
    assert run_cli(*args, "--out", b) == 2
    assert capsys.readouterr().err == f"error: --out {b}: the run folder of a model not evaluated here; a run's " \
                                      f"evaluation belongs in its own folder: give another --out (or --model {b})\n"
    assert (b / "evaluation.json").read_text() == before and not (a / "evaluation.json").exists()
    assert run_cli(*args, "--out", a) == 0
    saved = json.loads((a / "evaluation.json").read_text())
    assert saved["this_run"] == "a" and [r["model"] for r in saved["rows"]] == ["a"]
    assert run_cli(*args, "--ridge", "--out", a) == 0
    capsys.readouterr()
    assert run_cli(*args, "--out", a) == 0            # its ridge rows kept, said once (the card's write and --out's)
    assert capsys.readouterr().err.replace("\n", " ").count("row(s) of the earlier evaluation of the same inputs") == 1
    assert "ridge (reference)" in (a / "evaluation.md").read_text()
    assert run_cli(*args, "--out", tmp_path / "ev") == 0
    assert [r["model"] for r in json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]] == ["a"]


def test_runs_of_one_name_keep_their_own_rows_and_no_card_leaves_runs_alone(sample, sample_cache, pretrained,
                                                                             tmp_path, capsys):
    """Rows were merged by the run folder's name only: evaluating x1/run into an --out that held run's row
    replaced that row with another model's figures under one 'kept N rows' line. Rows now record their run
    folder: another run of the same name gets a row of its own (named apart), the same run scored again keeps its
    name. `--no-card` scores a run without writing its README.md or evaluation.json."""
    import shutil

    first, second = tmp_path / "run", tmp_path / "x1" / "run"
    shutil.copytree(pretrained, first)
    shutil.copytree(pretrained, second)
    for r in (first, second):
        (r / "evaluation.json").unlink(missing_ok=True)
    card = (first / "README.md").read_text()
    args = ["evaluate", "--features", sample_cache, "--id-emb", sample / "ids.npy", "--no-frozen", "--out", tmp_path / "ev"]
    assert run_cli(*args, "--model", first, "--no-card") == 0
    assert (first / "README.md").read_text() == card and not (first / "evaluation.json").exists()
    assert run_cli(*args, "--model", second) == 0
    rows = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]
    assert {r["run"]: r["model"] for r in rows} == {str(first): "run", str(second): "x1/run"}
    capsys.readouterr()
    assert run_cli(*args, "--model", first, "--no-card") == 0          # the same run again: its row, its name
    rows = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]
    assert sorted(r["run"] for r in rows) == sorted([str(first), str(second)])
    assert {r["model"] for r in rows if r["run"] == str(first)} == {"run"}
    assert "kept 1 row(s)" in capsys.readouterr().err.replace("\n", " ")


def test_run_labels_name_a_folder_given_twice_apart_and_reuse_an_earlier_rows_name(tmp_path):
    from anchor_embed.evaluation.evaluate import run_labels

    x, y = tmp_path / "a" / "x", tmp_path / "b" / "x"
    assert run_labels([x, x], {str(x.resolve()): "x"}) == ["x", "x (2)"]
    assert run_labels([y], {str(x.resolve()): "x"}) == ["b/x"]
    assert run_labels([x], {str(x.resolve()): "old name"}) == ["old name"]
    assert run_labels([x, y], {}) == ["a/x", "b/x"]


def test_no_card_with_out_a_scored_runs_folder_is_refused(sample, sample_cache, pretrained, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pretrained, run)
    before = sorted(p.name for p in run.iterdir())
    assert run_cli("evaluate", "--features", sample_cache, "--id-emb", sample / "ids.npy", "--no-frozen",
                   "--model", run, "--no-card", "--out", run) == 2
    assert "--no-card leaves the runs as they are; give another --out" in " ".join(capsys.readouterr().err.split())
    assert sorted(p.name for p in run.iterdir()) == before
