import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.evaluation import holdout_split
from anchor_embed.losses import rkd_angle, rkd_distance
from anchor_embed.mining import filter_pairs, mine
from anchor_embed.transfer import METHODS
from anchor_embed.transfer.contrastive import false_negative_mask
from tests.conftest import run_cli

SMALL = ["--epochs", "1", "--batch-size", "16", "--d-model", "32", "--out-dim", "16", "--layers", "1"]


@pytest.fixture(scope="module")
def pretrained(sample_cache, tmp_path_factory):
    run = tmp_path_factory.mktemp("pt") / "run"
    assert run_cli("pretrain", "--features", sample_cache, "--out", run, *SMALL) == 0
    return run


def test_false_negative_mask_matches_loop():
    rng = np.random.default_rng(0)
    n = 30
    q, nb = rng.integers(0, n, 40), rng.integers(0, n, 40)
    kept_q, kept_n = rng.integers(0, n, 200), rng.integers(0, n, 200)
    near: dict[int, set[int]] = {}
    for a, b in zip(kept_q, kept_n, strict=True):
        near.setdefault(int(a), set()).add(int(b))
    want = np.zeros((40, 40), bool)
    for i in range(40):
        for j in range(40):
            want[i, j] = j != i and (nb[j] == q[i] or nb[j] == nb[i] or int(nb[j]) in near.get(int(q[i]), set()))
    got = false_negative_mask(q, nb, np.unique(kept_q * n + kept_n), n).numpy()
    np.testing.assert_array_equal(got, want)


def test_rkd_terms_against_direct():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(7, 4, generator=g), torch.randn(7, 3, generator=g)

    def direct_angle(x):
        b = x.shape[0]
        out = torch.zeros(b, b, b)
        for j in range(b):
            for i in range(b):
                for k in range(b):
                    e1, e2 = F.normalize(x[i] - x[j], dim=0), F.normalize(x[k] - x[j], dim=0)
                    out[j, i, k] = e1 @ e2
        return out
    want = F.smooth_l1_loss(direct_angle(s), direct_angle(t))
    assert math.isclose(float(rkd_angle(s, t, chunk=3)), float(want), rel_tol=1e-5)
    ds, dt = torch.cdist(s, s), torch.cdist(t, t)
    want_d = F.smooth_l1_loss(ds / ds[ds > 0].mean(), dt / dt[dt > 0].mean())
    assert math.isclose(float(rkd_distance(s, t)), float(want_d), rel_tol=1e-6)


def test_mining_excludes_self_and_filter_keeps_quantile():
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(50, 8)).astype(np.float32)
    rows = np.arange(0, 50, 2)
    q, n, s = mine(vecs, rows, 5)
    assert (q != n).all() and set(q) <= set(rows) and set(n) <= set(rows) and len(q) == 25 * 5
    pairs = filter_pairs(q, n, s, lambda a, b: (a + b).astype(float), quantile=0.5)
    assert 0.4 < pairs.kept.mean() < 0.8


def test_registry_has_every_method():
    assert set(METHODS) >= {"contrastive", "feature", "rkd", "cluster"}


def test_cli_transfer_each_method_never_sees_held_out(sample, sample_cache, pretrained, tmp_path):
    keys = (sample / "ids.keys.txt").read_text().split()
    held = holdout_split(keys, 0.2, 0)
    for method in METHODS:
        out = tmp_path / method
        assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", out,
                       "--method", method, "--epochs", "2", "--batch-size", "16") == 0
        pairs = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
        assert pairs and not {p["query"] for p in pairs} & held and not {p["neighbour"] for p in pairs} & held
        assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert run_cli("evaluate", "--features", sample_cache, "--id-emb", sample / "ids.npy",
                   "--model", pretrained, "--model", tmp_path / "contrastive", "--ridge", "--out", tmp_path / "ev") == 0
    rows = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["frozen backbones", "ridge (reference)", "run", "contrastive"]


def test_transfer_resume_and_bad_method(sample, pretrained, tmp_path):
    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--batch-size", "16"]
    assert run_cli(*args, "--out", tmp_path / "a", "--epochs", "2") == 0
    assert run_cli(*args, "--out", tmp_path / "b", "--epochs", "1") == 0
    assert run_cli(*args, "--out", tmp_path / "b", "--epochs", "2", "--resume") == 0
    from anchor_embed.pretrain import load_model
    a, _ = load_model(tmp_path / "a")
    b, _ = load_model(tmp_path / "b")
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.allclose(x, y, atol=1e-6)
    with pytest.raises(AnchorEmbedError, match="unknown; choose from"):
        from anchor_embed.transfer_run import transfer
        transfer(pretrained, sample / "ids.npy", tmp_path / "c", method="magic")


def test_edit_distance_against_brute_force():
    from itertools import product

    from anchor_embed.mining import edit_distance, name_similarity

    def brute(a: str, b: str) -> int:  # recursive definition, memoised
        from functools import lru_cache

        @lru_cache(None)
        def d(i: int, j: int) -> int:
            if not i or not j:
                return i + j
            return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
        return d(len(a), len(b))
    words = ["", "a", "ab", "ba", "kitten", "sitting", "ninja", "ninja_2", "Ninja"]
    for a, b in product(words, words):
        assert edit_distance(a, b) == brute(a, b), (a, b)
    assert name_similarity("Ninja", "ninja") == 1.0 and name_similarity("", "x") == 0.0
    assert math.isclose(name_similarity("ninja", "ninja_2"), 1 - 2 / 7)


def test_cli_transfer_nickname_filter_keeps_similar_names(sample, sample_cache, pretrained, tmp_path):
    out = tmp_path / "nick"
    assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", out,
                   "--filter", "nickname", "--quantile", "0.5", "--epochs", "1", "--batch-size", "16") == 0
    pairs = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    kept = [p["content_score"] for p in pairs if p["kept"]]
    dropped = [p["content_score"] for p in pairs if not p["kept"]]
    assert kept and dropped and np.mean(kept) > np.mean(dropped)
    assert json.loads((out / "run.json").read_text())["mining"]["filter"] == "nickname"


def test_cli_transfer_aux_weight_adds_the_view_loss(sample, pretrained, tmp_path):
    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--epochs", "1",
            "--batch-size", "16"]
    assert run_cli(*args, "--out", tmp_path / "plain") == 0
    assert run_cli(*args, "--out", tmp_path / "aux", "--aux-weight", "0.5") == 0
    plain = json.loads((tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()[0])
    aux = json.loads((tmp_path / "aux" / "metrics.jsonl").read_text().splitlines()[0])
    assert plain["aux_loss"] == 0 and aux["aux_loss"] > 0
    # the first step is taken from the same weights, so the totals differ by about weight x view loss
    assert aux["loss"] > plain["loss"] + 0.25 * aux["aux_loss"]


def test_ridge_matches_lstsq_and_beats_chance_on_linear_data():
    from anchor_embed.ridge import fit_ridge, predict, ridge_vectors

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    y = x @ rng.normal(size=(6, 3)) + 0.5
    w = fit_ridge(x, y, 0.0)
    want, *_ = np.linalg.lstsq(np.hstack([x, np.ones((200, 1))]), y, rcond=None)
    np.testing.assert_allclose(w, want, atol=1e-8)
    assert np.linalg.norm(fit_ridge(x, y, 100.0)[:-1]) < np.linalg.norm(w[:-1])
    vecs, alpha = ridge_vectors(x, y, np.arange(150))
    np.testing.assert_allclose(vecs[150:], predict(x[150:], fit_ridge(x[:150], y[:150] / np.linalg.norm(
        y[:150], axis=1, keepdims=True), alpha)), atol=1e-5)


def test_nickname_filter_on_an_old_cache_says_what_to_do(sample_cache, tmp_path):
    import shutil

    from anchor_embed.features import open_cache

    old = tmp_path / "old_cache"
    shutil.copytree(sample_cache, old)
    (old / "streamers" / "nicknames.json").unlink()
    with pytest.raises(AnchorEmbedError, match="no nicknames.json; re-run `anchor-embed features`"):
        open_cache(old).nicknames()


def test_evaluate_ridge_on_other_ids_changes_only_the_ridge_row(sample, sample_cache, tmp_path):
    from anchor_embed.evaluate import evaluate

    ids = np.load(sample / "ids.npy")
    noisy = tmp_path / "noisy.npy"
    np.save(noisy, ids + np.random.default_rng(0).normal(scale=2.0, size=ids.shape).astype(np.float32))
    (tmp_path / "noisy.keys.txt").write_text((sample / "ids.keys.txt").read_text())
    same = evaluate(sample_cache, sample / "ids.npy", ridge=True, ridge_id_emb=sample / "ids.npy")
    plain = evaluate(sample_cache, sample / "ids.npy", ridge=True)
    other = evaluate(sample_cache, sample / "ids.npy", ridge=True, ridge_id_emb=noisy)
    assert same == plain and other[0] == plain[0] and other[1] != plain[1]


def _method(name: str, **cfg):
    """A registered method over 40 streamers with random 6-d ID embeddings and a fixed 5-d content table."""
    from types import SimpleNamespace

    from anchor_embed.transfer.base import TransferData

    rng = np.random.default_rng(3)
    data = TransferData(rng.normal(size=(40, 6)).astype(np.float32), np.arange(40), np.arange(0), np.arange(0))
    torch.manual_seed(0)
    table = torch.randn(40, 5, dtype=torch.float32)
    cfg = SimpleNamespace(**{"seed": 0, "temperature": 0.1, "n_clusters": 5, "feature_loss": "cosine", **cfg})
    return METHODS[name](5, data, cfg), (lambda rows: table[torch.as_tensor(rows)]), table, data


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_feature_loss_against_direct(kind):
    m, embed, table, data = _method("feature", feature_loss=kind)
    rows = np.array([3, 7, 11, 20])
    w, b = m.map.weight.detach().double().numpy(), m.map.bias.detach().double().numpy()
    terms = []
    for r in rows:
        p, t = w @ table[r].double().numpy() + b, data.id_vectors[r].astype(np.float64)
        terms.append(np.mean((p - t) ** 2) if kind == "mse" else 1 - p @ t / np.linalg.norm(p) / np.linalg.norm(t))
    assert math.isclose(float(m.loss(embed, {"rows": rows}).detach()), float(np.mean(terms)), rel_tol=1e-5)


def test_cluster_loss_against_direct():
    m, embed, table, _ = _method("cluster")
    rows = np.array([0, 5, 9, 33, 39])
    assert set(m.labels[rows]) <= set(range(m.classifier.out_features)) and (m.labels >= 0).all()
    w, b = m.classifier.weight.detach().double().numpy(), m.classifier.bias.detach().double().numpy()
    terms = []
    for r in rows:
        z = (w @ table[r].double().numpy() + b) / 0.1
        terms.append(np.log(np.exp(z - z.max()).sum()) + z.max() - z[m.labels[r]])
    assert math.isclose(float(m.loss(embed, {"rows": rows}).detach()), float(np.mean(terms)), rel_tol=1e-5)


def test_quantile_filter_equals_np_quantile_loop_and_caps_ties():
    from anchor_embed.mining import above_quantile

    rng = np.random.default_rng(4)
    query = np.repeat(rng.permutation(60), rng.integers(1, 15, 60))      # uneven groups, unsorted
    score, ids = rng.normal(size=len(query)).astype(np.float32), rng.normal(size=len(query))
    for q in (0.0, 0.3, 0.5, 0.9):
        want = np.zeros(len(query), bool)
        for u in np.unique(query):
            sel = query == u
            want[sel] = score[sel] >= np.quantile(score[sel], q)
        np.testing.assert_array_equal(above_quantile(query, score, ids, q), want)
    flat = np.zeros(len(query), np.float32)                                 # every score tied
    kept = above_quantile(query, flat, ids, 0.5)
    for u in np.unique(query):
        sel = np.flatnonzero(query == u)
        n = len(sel)
        assert kept[sel].sum() == n - math.ceil(0.5 * (n - 1))
        assert ids[sel][kept[sel]].min() >= ids[sel][~kept[sel]].max(initial=-np.inf)  # the behaviourally closest
