"""`anchor-embed evaluate`: one table from one split, rows named apart, references beside the models."""

import json

import numpy as np
import pytest

from tests.conftest import run_cli


def test_cli_evaluate_frozen_and_model(sample, sample_cache, pretrained, tmp_path):
    assert run_cli("evaluate", "--features", sample_cache, "--id-emb", sample / "ids.npy",
                   "--model", pretrained, "--out", tmp_path / "ev") == 0
    rows = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["frozen backbones", "run"]
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
def test_evaluate_ridge_on_other_ids_changes_only_the_ridge_row(sample, sample_cache, tmp_path):
    from anchor_embed.evaluation.evaluate import evaluate

    ids = np.load(sample / "ids.npy")
    noisy = tmp_path / "noisy.npy"
    np.save(noisy, ids + np.random.default_rng(0).normal(scale=2.0, size=ids.shape).astype(np.float32))
    (tmp_path / "noisy.keys.txt").write_text((sample / "ids.keys.txt").read_text())
    same = evaluate(sample_cache, sample / "ids.npy", ridge=True, ridge_id_emb=sample / "ids.npy")
    plain = evaluate(sample_cache, sample / "ids.npy", ridge=True)
    other = evaluate(sample_cache, sample / "ids.npy", ridge=True, ridge_id_emb=noisy)
    assert same == plain and other[0] == plain[0] and other[1] != plain[1]
