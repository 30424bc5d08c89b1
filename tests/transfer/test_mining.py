"""Mining behavioural neighbours and keeping a per-query share of them, against brute force."""

import math

import numpy as np

from anchor_embed.transfer.mining import above_quantile, filter_pairs, mine, mutual_pairs


def test_mining_equals_brute_force_and_excludes_self():
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(50, 8)).astype(np.float32)
    rows = np.arange(0, 50, 2)
    q, n, s = mine(vecs, rows, 5)
    assert (q != n).all() and set(q) <= set(rows) and set(n) <= set(rows) and len(q) == 25 * 5
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    for r in rows:
        sims = unit[rows] @ unit[r]
        want = [int(rows[j]) for j in np.argsort(-sims) if rows[j] != r][:5]
        assert n[q == r].tolist() == want
        np.testing.assert_allclose(s[q == r], np.sort(sims[rows != r])[::-1][:5], atol=1e-5)
    q2, n2, _ = mine(vecs, rows[:3], 10)                 # fewer candidates than k: all of them, no padding
    assert len(q2) == 3 * 2 and (n2 >= 0).all()


def test_filter_keeps_the_quantile_and_no_filter_keeps_all():
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(50, 8)).astype(np.float32)
    q, n, s = mine(vecs, np.arange(0, 50, 2), 5)
    pairs = filter_pairs(q, n, s, lambda a, b: (a + b).astype(float), quantile=0.5)
    assert 0.4 < pairs.kept.mean() < 0.8
    assert filter_pairs(q, n, s, None, quantile=0.5).kept.all()
    by_threshold = filter_pairs(q, n, s, lambda a, b: (a + b).astype(float), threshold=50)
    np.testing.assert_array_equal(by_threshold.kept, (q + n) >= 50)


def test_quantile_filter_equals_np_quantile_loop_and_caps_ties():
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


def test_mining_past_the_exact_limit_uses_ivf_and_reports_a_true_recall():
    """Over `exact_up_to` streamers the lists come from IVF; the reported sample recall is close to the recall
    of all lists against exact search (computed here independently with numpy), and at least the target."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 16))
    ids = (centres[rng.integers(0, 40, 4000)] + 0.6 * rng.normal(size=(4000, 16))).astype(np.float32)
    rows = np.arange(200, 4000)                      # mining sees only these rows
    report: dict = {}
    q, n, s = mine(ids, rows, 10, exact_up_to=1000, min_recall=0.9, report=report)
    assert report["search"] == "ivf" and report["recall_at_10"] >= 0.9 and 1 <= report["nprobe"] <= report["nlist"]
    u = ids[rows] / np.linalg.norm(ids[rows], axis=1, keepdims=True)
    sims = u @ u.T
    np.fill_diagonal(sims, -np.inf)
    exact = np.argsort(-sims, axis=1)[:, :10]
    got = {}
    for a, b in zip(q, n, strict=True):
        got.setdefault(int(a), set()).add(int(b))
    assert set(q.tolist()) <= set(rows.tolist()) and set(n.tolist()) <= set(rows.tolist())
    assert not np.any(q == n)                                   # never a streamer's own row
    true_recall = np.mean([len(got.get(int(rows[i]), set()) & set(rows[exact[i]].tolist())) / 10
                           for i in range(len(rows))])
    assert abs(true_recall - report["recall_at_10"]) < 0.03
    np.testing.assert_allclose(s, np.sum(u[np.searchsorted(rows, q)] * u[np.searchsorted(rows, n)], axis=1),
                               atol=1e-5)                       # scores are the cosines of the pairs
    small: dict = {}
    mine(ids, rows[:500], 10, exact_up_to=1000, report=small)
    assert small == {"search": "exact"}


def test_mutual_pairs_against_a_loop():
    """A mined pair (a, b) is mutual when (b, a) was mined too: the reference is the definition, on mined lists of
    random vectors, on duplicate rows (ties) and on a single pair."""
    rng = np.random.default_rng(0)
    for x in (rng.normal(size=(60, 8)), np.repeat(rng.normal(size=(10, 4)), 3, axis=0)):
        q, n, _ = mine(x.astype(np.float32), np.arange(len(x)), 5)
        mined = set(zip(q.tolist(), n.tolist(), strict=True))
        want = np.array([(b, a) in mined for a, b in zip(q.tolist(), n.tolist(), strict=True)])
        got = mutual_pairs(q, n)
        assert got.dtype == bool and np.array_equal(got, want) and 0 < got.sum() < len(got)
    assert mutual_pairs(np.array([3]), np.array([7])).tolist() == [False]
    assert mutual_pairs(np.array([3, 7]), np.array([7, 3])).tolist() == [True, True]
