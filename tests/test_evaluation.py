import json

import numpy as np

from anchor_embed.evaluation import holdout_split, knn, ndcg_at_k, recall_at_k, score
from tests.conftest import run_cli


def _brute(vecs, queries, k):
    sims = vecs @ vecs.T
    out = []
    for q in queries:
        order = [j for j in np.argsort(-sims[q], kind="stable") if j != q]
        out.append(order[:k])
    return np.array(out)


def test_knn_recall_ndcg_against_brute_force():
    rng = np.random.default_rng(0)
    ids = rng.normal(size=(120, 8)).astype(np.float32)
    ids /= np.linalg.norm(ids, axis=1, keepdims=True)
    content = ids + rng.normal(scale=0.8, size=ids.shape).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    queries = np.arange(0, 120, 5)
    truth, pred = _brute(ids, queries, 50), _brute(content, queries, 50)
    np.testing.assert_array_equal(knn(ids, queries, 50), truth)
    rec = np.mean([len(set(p[:10]) & set(t[:10])) / 10 for p, t in zip(pred, truth, strict=True)])
    assert abs(recall_at_k(pred, truth, 10) - rec) < 1e-9
    dcg = [sum(1 / np.log2(i + 2) for i, x in enumerate(p[:10]) if x in set(t[:10])) for p, t in zip(pred, truth, strict=True)]
    assert abs(ndcg_at_k(pred, truth, 10) - np.mean(dcg) / sum(1 / np.log2(i + 2) for i in range(10))) < 1e-9
    rows = score({"ids": ids, "content": content}, ids, queries)
    assert rows[0]["recall_at_10"] == 1.0 and rows[0]["ndcg_at_10"] == 1.0
    assert 0 < rows[1]["recall_at_10"] < 1


def test_holdout_split_is_deterministic_and_sized():
    keys = [f"k{i}" for i in range(100)]
    a = holdout_split(keys, 0.2, seed=3)
    assert a == holdout_split(list(reversed(keys)), 0.2, seed=3) and len(a) == 20
    assert a != holdout_split(keys, 0.2, seed=4)


def test_cli_evaluate_frozen_and_model(sample, sample_cache, tmp_path):
    assert run_cli("pretrain", "--features", sample_cache, "--out", tmp_path / "run", "--epochs", "1",
                   "--batch-size", "16", "--d-model", "32", "--out-dim", "16", "--layers", "1") == 0
    assert run_cli("evaluate", "--features", sample_cache, "--id-emb", sample / "ids.npy",
                   "--model", tmp_path / "run", "--out", tmp_path / "ev") == 0
    rows = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["frozen backbones", "run"]
    assert rows[0]["recall_at_10"] > 0.1   # the sample's kinds show in content and in clicks
    assert "| frozen backbones |" in (tmp_path / "ev" / "evaluation.md").read_text()


def test_model_labels_tell_same_named_runs_apart(tmp_path):
    from anchor_embed.evaluate import model_labels

    a, b, c = tmp_path / "clean" / "s0" / "contrastive", tmp_path / "noisy" / "s0" / "contrastive", tmp_path / "rkd"
    assert model_labels([a, c]) == ["contrastive", "rkd"]
    assert model_labels([a, b, c]) == ["clean/s0/contrastive", "noisy/s0/contrastive", "rkd"]
    assert model_labels([c, a, c]) == ["rkd", "contrastive", "rkd (2)"]
    assert model_labels([c, c, c]) == ["rkd", "rkd (2)", "rkd (3)"]
    a.mkdir(parents=True)
    (tmp_path / "link").symlink_to(a, target_is_directory=True)
    assert model_labels([tmp_path / "link", tmp_path / "x" / ".." / "rkd"]) == ["link", "rkd"]
