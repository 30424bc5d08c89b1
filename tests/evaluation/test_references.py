"""Reference rows: RidgeCV against explicit leave-one-out refits, kernel ridge against scikit-learn's Nyström
features + Ridge, kNN averaging and one-hot tags against loops."""

import numpy as np
import pytest
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics.pairwise import rbf_kernel

from anchor_embed.evaluation.metrics import recall_at_k
from anchor_embed.evaluation.references import (
    RESIDUAL_ALPHAS,
    RIDGE_ALPHAS,
    fit_kernel_ridge,
    fit_residual_kernel_ridge,
    fit_ridge,
    frozen_rows,
    kernel_ridge_vectors,
    knn_average_vectors,
    rbf_features,
    residual_ridge_vectors,
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
    vecs, fit = ridge_vectors(x, y, train, alphas)
    alpha = fit.alpha_
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


def test_rbf_features_are_scikit_learns_rbf_kernel_of_unit_rows():
    """exp(-gamma |u - l|^2) of unit rows, as sklearn's rbf_kernel computes it; a zero row stays zero (its
    distance to every unit landmark is 1)."""
    rng = np.random.default_rng(1)
    x, lm = rng.normal(size=(7, 5)) * 3, _unit(rng.normal(size=(4, 5)))
    for gamma in (0.5, 1.0, 2.0):
        np.testing.assert_allclose(rbf_features(x, lm, gamma), rbf_kernel(_unit(x), lm, gamma=gamma), atol=1e-12)
    np.testing.assert_allclose(rbf_features(np.zeros((1, 5)), lm, 1.0), np.exp(-1.0) * np.ones((1, 4)), atol=1e-12)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_kernel_ridge_is_nystroem_features_then_ridge(gamma):
    """With every row a landmark, the fit predicts what scikit-learn's Nystroem (all components: the exact
    kernel's feature map) + RidgeCV predict on unit rows: the same leave-one-out alpha, the same vectors."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 8))
    y = np.tanh(x @ rng.normal(size=(8, 4))) + 0.1 * rng.normal(size=(60, 4))
    fit = fit_kernel_ridge(x, y, gamma=gamma)
    assert len(fit.landmarks) == 60 and fit.gamma == gamma
    ny = Nystroem(kernel="rbf", gamma=gamma, n_components=60, random_state=0).fit(_unit(x))
    ref = RidgeCV(alphas=RIDGE_ALPHAS).fit(ny.transform(_unit(x)), _unit(y))
    assert fit.alpha == ref.alpha_
    new = rng.normal(size=(15, 8))
    for rows in (x, new):
        np.testing.assert_allclose(fit.predict(rows), ref.predict(ny.transform(_unit(rows))), atol=1e-4)


def test_residual_kernel_ridge_is_the_linear_map_plus_kernel_ridge_of_its_residuals():
    """Each alpha's fit predicts RidgeCV's linear map plus scikit-learn's Nystroem (every row) + Ridge(alpha)
    fitted to that map's residuals on the unit targets, at every alpha in order; far from every training row
    (where the RBF features vanish) it is the linear map plus a constant, not the targets' mean as plain kernel
    ridge; duplicate rows give equal predictions."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(70, 6))
    x[:, 0] = np.abs(x[:, 0]) + 0.5                  # every training row on one side, so the far rows below exist
    y = x @ rng.normal(size=(6, 4)) + np.cos(3 * _unit(x) @ rng.normal(size=(6, 4)))
    mean = fit_ridge(x, y)
    fits = fit_residual_kernel_ridge(x, y, mean, gamma=2.0)
    assert [f.alpha for f in fits] == list(RESIDUAL_ALPHAS) and all(f.mean_weight is not None for f in fits)
    ny = Nystroem(kernel="rbf", gamma=2.0, n_components=70, random_state=0).fit(_unit(x))
    resid = _unit(y) - mean.predict(x)
    new = rng.normal(size=(9, 6))
    for f in fits:
        ref = Ridge(alpha=f.alpha).fit(ny.transform(_unit(x)), resid)
        for rows in (x, new):
            np.testing.assert_allclose(f.predict(rows), mean.predict(rows) + ref.predict(ny.transform(_unit(rows))),
                                       atol=1e-4)
    # rows on the other side, far from every landmark: gamma 50 makes their kernel features vanish
    far = fit_residual_kernel_ridge(x, y, mean, alphas=(0.1,), gamma=50.0)[0]
    away = np.hstack([np.full((5, 1), -3.0), 0.3 * rng.normal(size=(5, 5))])
    assert np.abs(rbf_features(away, far.landmarks, 50.0)).max() < 1e-20
    np.testing.assert_allclose(far.predict(away) - mean.predict(away), np.broadcast_to(far.bias - mean.intercept_,
                               (5, 4)), atol=1e-5)
    dup = np.repeat(x[:20], 2, axis=0)
    pred = fit_residual_kernel_ridge(dup, np.repeat(y[:20], 2, axis=0), fit_ridge(dup, np.repeat(y[:20], 2, axis=0)),
                                     alphas=(0.01,))[0].predict(dup)
    assert np.isfinite(pred).all()
    np.testing.assert_allclose(pred[::2], pred[1::2], atol=1e-5)


def test_kernel_ridge_fits_what_a_linear_map_cannot_and_uses_training_rows_only():
    """On targets that depend on the input's direction nonlinearly (cosines of projections of the unit row),
    kernel ridge finds held-out neighbours far better than RidgeCV (.77 against .22 here); held-out targets
    never enter the fit."""
    rng = np.random.default_rng(3)
    n, k = 600, 10
    x = rng.normal(size=(n, 3))
    y = np.cos(3 * _unit(x) @ rng.normal(size=(3, 8)))
    train, queries = np.arange(450), np.arange(450, n)
    truth = knn(normalise_rows(y), queries, k)[0]
    kern, _ = kernel_ridge_vectors(x, y, train)
    lin, _ = ridge_vectors(x, y, train)
    got = {name: recall_at_k(knn(normalise_rows(v), queries, k)[0], truth, k) for name, v in
           (("kernel", kern), ("linear", lin))}
    assert got["kernel"] > 0.6 and got["kernel"] > 2 * got["linear"], got
    y2 = y.copy()
    y2[450:] = rng.normal(size=(n - 450, 8)) * 100
    np.testing.assert_allclose(kernel_ridge_vectors(x, y2, train)[0], kern, atol=1e-5)


def test_residual_ridge_reference_picks_alpha_as_transfer_validation_does_and_uses_training_rows_only():
    """The reference's alpha is the one whose fit on four fifths of the training rows scores best on the other
    fifth by the mean of the mixed and new-vs-new Recall@10, re-scored here from scikit-learn's exact cosine
    neighbours; its vectors are the refit at that alpha on every training row (a caller's RidgeCV fit of those
    rows, passed as `prior`, gives the same; another prior is used, not refitted); held-out targets never
    enter; on nonlinear targets it beats RidgeCV as kernel ridge does."""
    from sklearn.neighbors import NearestNeighbors

    def top(v, pool, queries):                             # each query's 10 cosine-nearest pool rows, self excluded
        nn = NearestNeighbors(n_neighbors=min(11, len(pool)), metric="cosine").fit(v[pool])
        idx = nn.kneighbors(v[queries], return_distance=False)
        return [[pool[j] for j in row if pool[j] != q][:10] for row, q in zip(idx, queries, strict=True)]

    def recall(v, pool, queries):
        return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(top(v, pool, queries),
                                                                      top(y, pool, queries), strict=True)])

    rng = np.random.default_rng(6)
    n = 400
    x = rng.normal(size=(n, 3))
    y = np.cos(3 * _unit(x) @ rng.normal(size=(3, 8))) + 0.3 * x @ rng.normal(size=(3, 8))
    train, queries = np.arange(300), np.arange(300, n)
    got, alpha = residual_ridge_vectors(x, y, train, seed=4)
    order = np.random.default_rng(4).permutation(train)
    val, rest = np.sort(order[:60]), np.sort(order[60:])
    scores = []
    for f in fit_residual_kernel_ridge(x[rest], y[rest], fit_ridge(x[rest], y[rest])):
        v = f.predict(x)
        scores.append((recall(v, train, val) + recall(v, val, val)) / 2)
    assert alpha == RESIDUAL_ALPHAS[int(np.argmax(scores))]
    want = fit_residual_kernel_ridge(x[train], y[train], fit_ridge(x[train], y[train]), (alpha,))[0].predict(x)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(residual_ridge_vectors(x, y, train, seed=4, prior=fit_ridge(x[train], y[train]))[0],
                               got, atol=1e-9)
    other = residual_ridge_vectors(x, y, train, seed=4, prior=fit_ridge(x[rest], y[rest]))[0]
    assert np.abs(other - got).max() > 1e-3
    y2 = y.copy()
    y2[300:] = rng.normal(size=(n - 300, 8)) * 100
    np.testing.assert_allclose(residual_ridge_vectors(x, y2, train, seed=4)[0], got, atol=1e-5)
    truth = knn(normalise_rows(y), queries, 10)[0]
    lin, _ = ridge_vectors(x, y, train)
    assert recall_at_k(knn(normalise_rows(got), queries, 10)[0], truth, 10) > \
        recall_at_k(knn(normalise_rows(lin), queries, 10)[0], truth, 10) + 0.1


def test_kernel_ridge_on_duplicate_and_degenerate_rows_and_the_landmark_cap():
    """Duplicate rows (a singular kernel) give finite, equal predictions; an all-zero row a finite one; above
    `max_landmarks` a seeded sample of the rows is the landmarks, the same for the same seed."""
    rng = np.random.default_rng(4)
    x = np.repeat(rng.normal(size=(20, 5)), 2, axis=0)
    x[0] = x[1] = 0.0
    y = rng.normal(size=(40, 3))
    fit = fit_kernel_ridge(x, y)
    pred = fit.predict(x)
    assert np.isfinite(pred).all()
    np.testing.assert_allclose(pred[::2], pred[1::2], atol=1e-5)
    many = rng.normal(size=(50, 5))
    a, b = (fit_kernel_ridge(many, rng.normal(size=(50, 3)), max_landmarks=20, seed=7) for _ in range(2))
    assert a.landmarks.shape == (20, 5) and a.weight.shape == (3, 20)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    nearest = np.abs(a.landmarks[:, None, :] - _unit(many)[None]).max(2).min(1)   # each landmark is a unit row
    assert nearest.max() < 1e-6
    np.testing.assert_allclose(np.linalg.norm(a.landmarks, axis=1), 1, atol=1e-6)


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


def test_kernel_ridge_with_sampled_landmarks_is_ridgecv_on_their_nystroem_features():
    """Above the landmark cap the fit (streamed over row chunks) is scikit-learn's RidgeCV on the Nyström features
    of every row against the sampled landmarks: the same alpha and predictions."""
    from anchor_embed.evaluation.references import nystroem_basis

    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 6))
    y = np.tanh(x @ rng.normal(size=(6, 4))) + 0.1 * rng.normal(size=(300, 4))
    fit = fit_kernel_ridge(x, y, max_landmarks=40, seed=3)
    landmarks, whiten = nystroem_basis(x, max_landmarks=40, seed=3)
    ref = RidgeCV(alphas=RIDGE_ALPHAS).fit(rbf_features(x, landmarks, 1.0) @ whiten, _unit(y))
    assert fit.alpha == ref.alpha_ and len(fit.landmarks) == 40
    new = rng.normal(size=(20, 6))
    np.testing.assert_allclose(fit.predict(new), ref.predict(rbf_features(new, landmarks, 1.0) @ whiten), atol=1e-5)
