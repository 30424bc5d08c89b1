"""The ridge reference: closed form against numpy's least squares, and far better than chance on linear data."""

import numpy as np

from anchor_embed.evaluation.metrics import recall_at_k
from anchor_embed.evaluation.ridge import fit_ridge, predict, ridge_vectors
from anchor_embed.vectorspace import knn


def test_ridge_matches_lstsq():
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


def test_ridge_neighbours_beat_chance_on_linear_data():
    """Held-out rows of noisy linear data: ridge predictions find their true neighbours far above chance."""
    rng = np.random.default_rng(0)
    n, k = 600, 10
    x = rng.normal(size=(n, 20))
    y = x @ rng.normal(size=(20, 8)) + 0.3 * rng.normal(size=(n, 8))
    vecs, _ = ridge_vectors(x, y, np.arange(400))
    queries = np.arange(400, n)
    truth = knn(y / np.linalg.norm(y, axis=1, keepdims=True), queries, k)[0]
    got = recall_at_k(knn(vecs / np.linalg.norm(vecs, axis=1, keepdims=True), queries, k)[0], truth, k)
    chance = k / (n - 1)
    assert got > 20 * chance, (got, chance)
    shuffled = recall_at_k(knn(rng.permutation(vecs), queries, k)[0], truth, k)
    assert shuffled < 3 * chance                         # the yardstick itself: a broken map scores near chance
