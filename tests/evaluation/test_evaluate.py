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
