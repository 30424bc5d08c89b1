"""The streamed ridge (evaluation/ridge.py) against scikit-learn's RidgeCV and against leave-one-out as defined:
refit without each row."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV

from anchor_embed.evaluation.references import RIDGE_ALPHAS
from anchor_embed.evaluation.ridge import chunks_of, fit_ridge_loo, fit_ridge_path


def _data(n: int, p: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) + 3.0                      # off-centre, so the intercept matters
    y = x[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(n, 4))
    return x, y


@pytest.mark.parametrize("n,p", [(200, 30), (40, 100), (500, 5)])
@pytest.mark.parametrize("rows", [None, 7, 64])
def test_streamed_ridge_is_scikit_learns_ridgecv_in_any_chunking(n, p, rows):
    """More rows than columns and fewer (where RidgeCV takes another decomposition); one chunk, chunks of 7
    (an uneven last one) and of 64: the same alpha, coefficients and intercept as RidgeCV."""
    x, y = _data(n, p)
    ref = RidgeCV(alphas=RIDGE_ALPHAS).fit(x, y)
    fit = fit_ridge_loo(chunks_of(x, y, rows or n), RIDGE_ALPHAS)
    assert fit.alpha_ == ref.alpha_
    np.testing.assert_allclose(fit.coef_, ref.coef_, atol=1e-10)
    np.testing.assert_allclose(fit.intercept_, ref.intercept_, atol=1e-9)
    new = np.random.default_rng(9).normal(size=(13, p))
    np.testing.assert_allclose(fit.predict(new), ref.predict(new), atol=1e-9)


@pytest.mark.parametrize("n,p", [(30, 6), (14, 40)])
def test_leave_one_out_errors_are_refits_without_each_row(n, p):
    """Each alpha's error is the mean over rows and targets of (y_i - prediction of a ridge fitted without row
    i)^2, the intercept unpenalised: the definition, computed by n refits; with more columns than rows too
    (the Gram-matrix path)."""
    x, y = _data(n, p, seed=1)
    alphas = (0.01, 0.3, 3.0, 30.0, 300.0)
    fit = fit_ridge_loo(chunks_of(x, y, 8), alphas)
    for a, got in zip(alphas, fit.loo_errors, strict=True):
        sq = [(Ridge(alpha=a).fit(np.delete(x, i, 0), np.delete(y, i, 0)).predict(x[i:i + 1]) - y[i]) ** 2
              for i in range(len(x))]
        assert got == pytest.approx(np.mean(sq), rel=1e-9)
    assert fit.alpha_ == alphas[int(np.argmin(fit.loo_errors))]


def test_duplicate_rows_a_constant_column_and_too_few_rows():
    """Duplicated rows and a constant column (a singular X'X) still match RidgeCV; a constant target gives
    zero coefficients and that constant; fewer than two rows is refused."""
    x, y = _data(25, 8, seed=2)
    x, y = np.repeat(x, 2, axis=0), np.repeat(y, 2, axis=0)
    x[:, 0] = 1.5
    ref = RidgeCV(alphas=RIDGE_ALPHAS).fit(x, y)
    fit = fit_ridge_loo(chunks_of(x, y, 9), RIDGE_ALPHAS)
    assert fit.alpha_ == ref.alpha_
    np.testing.assert_allclose(fit.coef_, ref.coef_, atol=1e-10)
    flat = fit_ridge_loo(chunks_of(x, np.full((50, 2), 0.7), 9), RIDGE_ALPHAS)
    np.testing.assert_allclose(flat.coef_, 0, atol=1e-12)
    np.testing.assert_allclose(flat.predict(x[:3]), 0.7, atol=1e-12)
    with pytest.raises(ValueError, match="at least 2 rows"):
        fit_ridge_loo(chunks_of(x[:1], y[:1], 9), RIDGE_ALPHAS)


@pytest.mark.parametrize("n,p", [(80, 12), (20, 70), (40, 30), (33, 33), (32, 33)])
def test_ridge_path_is_scikit_learns_ridge_at_every_alpha_and_loo_picks_from_it(n, p):
    """`fit_ridge_path` gives, for each alpha in order, what Ridge(alpha) fits (intercept unpenalised), with
    the same leave-one-out errors as `fit_ridge_loo`, whose fit is the path's least-error one; with fewer rows
    than columns as well."""
    x, y = _data(n, p, seed=3)
    alphas = (0.001, 0.1, 10.0, 1000.0)
    path = fit_ridge_path(chunks_of(x, y, 11), alphas)
    assert [f.alpha_ for f in path] == list(alphas)
    for f in path:
        ref = Ridge(alpha=f.alpha_).fit(x, y)
        np.testing.assert_allclose(f.coef_, ref.coef_, atol=1e-9)
        np.testing.assert_allclose(f.intercept_, ref.intercept_, atol=1e-9)
    best = fit_ridge_loo(chunks_of(x, y, 11), alphas)
    np.testing.assert_array_equal(best.loo_errors, path[0].loo_errors)
    assert best.alpha_ == alphas[int(np.argmin(path[0].loo_errors))]


def test_ridge_with_fewer_rows_than_columns_never_forms_the_wide_cross_product():
    """A small, wide sample (20 rows, 3,000 columns) is fitted on its Gram matrix without the 72 MB p x p
    cross-product ever being allocated (numpy reports its allocations to tracemalloc), and still equals Ridge."""
    import tracemalloc

    x, y = _data(20, 3000, seed=5)
    tracemalloc.start()
    try:
        fit = fit_ridge_path(chunks_of(x, y, 7), (0.5,))[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3000 * 3000 * 8 / 4, peak
    np.testing.assert_allclose(fit.coef_, Ridge(alpha=0.5).fit(x, y).coef_, atol=1e-9)
