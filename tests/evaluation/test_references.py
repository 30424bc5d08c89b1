"""Reference rows: RidgeCV against explicit leave-one-out refits, kNN averaging and one-hot tags against loops."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from anchor_embed.evaluation.metrics import recall_at_k
from anchor_embed.evaluation.references import (
    frozen_rows,
    knn_average_vectors,
    ridge_vectors,
    tag_one_hot,
)
from anchor_embed.features.cache import open_cache
from anchor_embed.vectorspace import knn, normalise_rows


def _unit(y):
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def test_ridge_alpha_is_the_leave_one_out_best_and_fit_uses_training_rows_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    y = x @ rng.normal(size=(6, 3)) + 0.8 * rng.normal(size=(40, 3))
    train = np.arange(30)
    alphas = (0.01, 0.3, 3.0, 30.0, 300.0)
    vecs, alpha = ridge_vectors(x, y, train, alphas)
    target = _unit(y[train])

    def loo_error(a):                                      # refit without each row: the definition of LOO
        err = 0.0
        for i in range(len(train)):
            keep = np.arange(len(train)) != i
            m = Ridge(alpha=a).fit(x[train][keep], target[keep])
            err += np.sum((m.predict(x[train][i:i + 1]) - target[i]) ** 2)
        return err
    assert alpha == min(alphas, key=loo_error)
    want = Ridge(alpha=alpha).fit(x[train], target).predict(x)
    np.testing.assert_allclose(vecs, want, atol=1e-5)
    y2 = y.copy()
    y2[30:] = rng.normal(size=(10, 3)) * 100               # held-out targets never enter the fit
    np.testing.assert_allclose(ridge_vectors(x, y2, train, alphas)[0], vecs, atol=1e-6)


def test_ridge_neighbours_beat_chance_on_linear_data():
    """Held-out rows of noisy linear data: ridge predictions find their true neighbours far above chance."""
    rng = np.random.default_rng(0)
    n, k = 600, 10
    x = rng.normal(size=(n, 20))
    y = x @ rng.normal(size=(20, 8)) + 0.3 * rng.normal(size=(n, 8))
    vecs, _ = ridge_vectors(x, y, np.arange(400))
    queries = np.arange(400, n)
    truth = knn(normalise_rows(y), queries, k)[0]
    got = recall_at_k(knn(normalise_rows(vecs), queries, k)[0], truth, k)
    chance = k / (n - 1)
    assert got > 20 * chance, (got, chance)
    shuffled = recall_at_k(knn(normalise_rows(rng.permutation(vecs)), queries, k)[0], truth, k)
    assert shuffled < 3 * chance                         # the yardstick itself: a broken map scores near chance


@pytest.mark.parametrize("k", [1, 3, 7])
def test_knn_average_against_a_loop(k):
    rng = np.random.default_rng(k)
    content, targets = rng.normal(size=(30, 5)), rng.normal(size=(30, 4))
    train = np.sort(rng.choice(30, 20, replace=False))
    got = knn_average_vectors(content, targets, train, k)
    c, t = _unit(content), _unit(targets)
    for r in range(30):
        others = [j for j in train if j != r]
        near = sorted(others, key=lambda j: -c[r] @ c[j])[:k]
        np.testing.assert_allclose(got[r], t[near].mean(0), atol=1e-5)


def test_tag_one_hot_and_frozen_rows(sample_cache):
    cache = open_cache(sample_cache)
    train = np.arange(0, cache.n, 2)
    x = tag_one_hot(cache, train)
    counts: dict[int, int] = {}
    for i in train:
        for t in cache.rows("tag", int(i)):
            counts[int(t)] = counts.get(int(t), 0) + 1
    assert x.shape == (cache.n, sum(c >= 2 for c in counts.values()))
    for i in range(cache.n):                                # each row holds exactly its kept tags
        assert x[i].sum() == sum(counts.get(int(t), 0) >= 2 for t in cache.rows("tag", i))
    rows = frozen_rows(cache)
    assert list(rows) == ["frozen backbones", "frozen text only", "frozen frames only", "frozen tags only"]
    assert all(v.shape[0] == cache.n for v in rows.values())
