"""Each registered method's loss against its formula written out in float64; the registry and its params."""

import math

import numpy as np
import pytest
import torch

from anchor_embed.transfer.methods import METHODS
from anchor_embed.transfer.methods.base import TransferData
from anchor_embed.transfer.methods.contrastive import false_negative_mask


def test_registry_names_and_typed_params():
    assert METHODS.names() == ["contrastive", "feature", "rkd", "cluster"]
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
