"""Each registered method's loss against its formula written out in float64; the registry and its params."""

import math

import numpy as np
import pytest
import torch

from anchor_embed.transfer.methods import METHODS
from anchor_embed.transfer.methods.base import TransferData
from anchor_embed.transfer.methods.contrastive import false_negative_mask


def test_registry_names_and_typed_params():
    assert METHODS.names() == ["contrastive", "feature", "rkd", "cluster", "clcrec", "aldi"]
    for name in METHODS.names():
        cls = METHODS.load(name)
        assert cls.Params.model_config.get("extra") == "forbid", name
    assert METHODS.load("cluster").Params().n_clusters == 50
    assert METHODS.load("rkd").Params(distance_weight=0.5).angle_weight == 2.0


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
            want[i, j] = j != i and (nb[j] == q[i] or nb[j] == nb[i] or int(nb[j]) in near.get(int(q[i]), set())
                                     or int(q[i]) in near.get(int(nb[j]), set()))
    got = false_negative_mask(q, nb, np.unique(kept_q * n + kept_n), n).numpy()
    np.testing.assert_array_equal(got, want)


def _method(name: str, **params):
    """A registered method over 40 streamers with random 6-d ID embeddings and a fixed 5-d content table."""
    rng = np.random.default_rng(3)
    data = TransferData(rng.normal(size=(40, 6)).astype(np.float32), np.arange(40), np.arange(0), np.arange(0))
    torch.manual_seed(0)
    table = torch.randn(40, 5, dtype=torch.float32)
    cls = METHODS.load(name)
    return cls(5, data, cls.Params(**params), seed=0), (lambda rows: table[torch.as_tensor(rows)]), table, data


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
    m, embed, table, _ = _method("cluster", n_clusters=5, temperature=0.1)
    rows = np.array([0, 5, 9, 33, 39])
    assert set(m.labels[rows]) <= set(range(m.classifier.out_features)) and (m.labels >= 0).all()
    w, b = m.classifier.weight.detach().double().numpy(), m.classifier.bias.detach().double().numpy()
    terms = []
    for r in rows:
        z = (w @ table[r].double().numpy() + b) / 0.1
        terms.append(np.log(np.exp(z - z.max()).sum()) + z.max() - z[m.labels[r]])
    assert math.isclose(float(m.loss(embed, {"rows": rows}).detach()), float(np.mean(terms)), rel_tol=1e-5)


def test_cluster_with_fewer_streamers_than_clusters():
    rng = np.random.default_rng(0)
    data = TransferData(rng.normal(size=(7, 4)).astype(np.float32), np.arange(7), np.arange(0), np.arange(0))
    cls = METHODS.load("cluster")
    m = cls(5, data, cls.Params(n_clusters=50), seed=0)    # k lowered to what 7 streamers can carry
    assert m.classifier.out_features == 1 and (m.labels >= 0).all()


def _softmax_rows(m):
    m = m - m.max(1, keepdims=True)
    e = np.exp(m)
    return e / e.sum(1, keepdims=True)


def test_clcrec_loss_against_direct():
    """InfoNCE both ways between z_i and the projected, normalised ID embedding W id_i + b (Wei et al. 2021)."""
    m, embed, table, data = _method("clcrec", temperature=0.2)
    rows = np.array([1, 4, 9, 16, 25])
    z = table[rows].double().numpy()
    w, b = m.project.weight.detach().double().numpy(), m.project.bias.detach().double().numpy()
    g = data.id_vectors[rows].astype(np.float64) @ w.T + b
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    logits = z @ g.T / 0.2
    want = 0.0
    for lg in (logits, logits.T):
        want += np.mean([np.log(np.exp(lg[i]).sum()) - lg[i, i] for i in range(len(rows))]) / 2
    assert math.isclose(float(m.loss(embed, {"rows": rows}).detach()), want, rel_tol=1e-5)


def test_aldi_loss_against_direct_and_weights(tmp_path):
    """Teacher softmax over the batch's ID similarities as targets, rows weighted by tanh(scale x count)."""
    counts = tmp_path / "counts.csv"
    keys = [f"a{i}" for i in range(40)]
    counts.write_text("anchor_id,count\n" + "".join(f"a{i},{i}\n" for i in range(0, 40, 3)))
    rng = np.random.default_rng(3)
    data = TransferData(rng.normal(size=(40, 6)).astype(np.float32), np.arange(40), np.arange(0), np.arange(0),
                        keys=keys)
    cls = METHODS.load("aldi")
    torch.manual_seed(0)
    table = torch.nn.functional.normalize(torch.randn(40, 5), dim=1)
    m = cls(5, data, cls.Params(temperature=0.2, target_temperature=0.1, weights_file=str(counts),
                                weight_scale=0.3), seed=0)
    rows = np.array([0, 3, 5, 9, 12, 30])
    z = table[rows].double().numpy()
    u = data.id_vectors[rows].astype(np.float64)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = np.tanh(0.3 * np.array([float(r) if r % 3 == 0 else 0.0 for r in rows]))
    total = 0.0
    for i in range(len(rows)):
        others = [j for j in range(len(rows)) if j != i]
        p = _softmax_rows((u[i] @ u[others].T / 0.1)[None])[0]
        logq = np.log(_softmax_rows((z[i] @ z[others].T / 0.2)[None])[0])
        total += w[i] * -(p * logq).sum()
    got = float(m.loss(lambda r: table[torch.as_tensor(r)], {"rows": rows}).detach())
    assert math.isclose(got, total / w.sum(), rel_tol=1e-5)
    assert m.weights[1] == 0 and m.weights[39] == pytest.approx(np.tanh(0.3 * 39))


def test_contrastive_neighbourhood_batches_and_targets():
    """Neighbourhood batches hold each seed's kept neighbours; multi-positive targets weigh them by 1/rank."""
    n = 30
    rng = np.random.default_rng(0)
    q = np.repeat(np.arange(n), 3)
    nb = (q + np.tile([1, 2, 3], n)) % n
    score = np.tile([0.9, 0.8, 0.7], n).astype(np.float32)
    data = TransferData(rng.normal(size=(n, 4)).astype(np.float32), np.arange(n), q, nb, score)
    cls = METHODS.load("contrastive")
    m = cls(5, data, cls.Params(batches="neighbourhoods", group=4, soft_weight=0.0), seed=0)
    rows = m.sample(np.random.default_rng(1), 12)["rows"]
    assert len(rows) == len(set(rows.tolist())) == 12
    blocks = np.repeat(np.arange(8), 4)                              # disjoint neighbourhoods of 4
    bq = np.repeat(np.arange(32), 3)
    bn = np.array([j for i in range(32) for j in range(32) if j != i and blocks[j] == blocks[i]])
    disjoint = TransferData(rng.normal(size=(32, 4)).astype(np.float32), np.arange(32), bq, bn)
    rows = cls(5, disjoint, cls.Params(batches="neighbourhoods", group=4), seed=0).sample(rng, 12)["rows"]
    assert sorted(np.bincount(blocks[rows]).tolist())[-3:] == [4, 4, 4]   # three whole neighbourhoods
    t = m.targets(np.array([0, 1, 2, 3, 10]))
    np.testing.assert_allclose(t[0, 1:4].numpy(), np.array([1, 1 / 2, 1 / 3]) / (1 + 1 / 2 + 1 / 3), rtol=1e-6)
    assert float(t[4].sum()) == 0 and float(t[0, 0]) == 0         # 10's neighbours are not in this batch
    soft = cls(5, data, cls.Params(batches="neighbourhoods", soft_weight=1.0, target_temperature=0.5), seed=0)
    ts = soft.targets(np.array([0, 1, 2, 3, 10])).numpy()
    u = data.id_vectors[[0, 1, 2, 3, 10]] / np.linalg.norm(data.id_vectors[[0, 1, 2, 3, 10]], axis=1, keepdims=True)
    sims = u @ u.T / 0.5
    np.fill_diagonal(sims, -np.inf)
    np.testing.assert_allclose(ts, _softmax_rows(sims), atol=1e-6)


def test_contrastive_reliability_weights_weigh_each_row_as_aldi_does(tmp_path):
    """With a weights file each row's term weighs tanh(scale x count): the weighted mean of the unweighted terms."""
    counts = tmp_path / "counts.csv"
    n = 24
    keys = [f"s{i}" for i in range(n)]
    counts.write_text("".join(f"s{i},{2 * i}\n" for i in range(n)))
    rng = np.random.default_rng(5)
    q = np.repeat(np.arange(n), 2)
    nb = (q + np.tile([1, 2], n)) % n
    data = TransferData(rng.normal(size=(n, 4)).astype(np.float32), np.arange(n), q, nb,
                        np.tile([0.9, 0.8], n).astype(np.float32), keys=keys)
    cls = METHODS.load("contrastive")
    plain = cls(5, data, cls.Params(), seed=0)
    weighted = cls(5, data, cls.Params(weights_file=str(counts), weight_scale=0.05), seed=0)
    table = torch.nn.functional.normalize(torch.randn(n, 5, generator=torch.Generator().manual_seed(1)), dim=1)
    rows = np.array([0, 1, 2, 7, 8, 15, 16, 23])
    z = table[torch.as_tensor(rows)]
    t = plain.targets(rows).double()
    logq = torch.log_softmax((z @ z.T / 0.1).double().fill_diagonal_(float("-inf")), dim=1).fill_diagonal_(0)
    per_row = -(t * logq).sum(1)
    w = torch.tanh(0.05 * 2 * torch.as_tensor(rows, dtype=torch.float64))
    want = float((w * per_row).sum() / w.sum())
    embed = lambda r: table[torch.as_tensor(r)]  # noqa: E731
    assert math.isclose(float(weighted.loss(embed, {"rows": rows})), want, rel_tol=1e-5)
    assert not math.isclose(float(plain.loss(embed, {"rows": rows})), want, rel_tol=1e-3)
    with pytest.raises(Exception, match="weights_file.*neighbourhoods"):
        cls(5, data, cls.Params(batches="pairs", weights_file=str(counts)), seed=0)
