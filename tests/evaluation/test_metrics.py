import numpy as np

from anchor_embed.evaluation.metrics import holdout_split, ndcg_at_k, recall_at_k, score
from anchor_embed.vectorspace import knn


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
    np.testing.assert_array_equal(knn(ids, queries, 50)[0], truth)
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


def test_padding_never_counts_as_a_hit():
    """Fewer candidates than k: knn pads with -1, and recall/NDCG must not score the padding."""
    from anchor_embed.vectorspace import knn

    rng = np.random.default_rng(1)
    ids = rng.normal(size=(6, 4)).astype(np.float32)
    content = rng.normal(size=(6, 4)).astype(np.float32)
    truth, pred = knn(ids, np.arange(6), 10)[0], knn(content, np.arange(6), 10)[0]
    assert (truth[:, 5:] == -1).all() and (pred[:, 5:] == -1).all()
    assert recall_at_k(pred, truth, 10) == 1.0           # all 5 real neighbours found, none invented
    shuffled = pred.copy()
    shuffled[:, :5] = -1                                   # a model that returns nothing finds nothing
    assert recall_at_k(shuffled, truth, 10) == 0.0 and ndcg_at_k(shuffled, truth, 10) == 0.0



def test_recall_among_new_streamers_against_a_loop():
    """`recall_at_10_new`: per query, the share of its true top-10 that are held out too which the model
    finds, averaged over queries that have such neighbours; re-derived by a plain loop."""
    from anchor_embed.evaluation.metrics import recall_among

    rng = np.random.default_rng(3)
    ids = rng.normal(size=(90, 6)).astype(np.float32)
    ids /= np.linalg.norm(ids, axis=1, keepdims=True)
    content = ids + rng.normal(scale=0.7, size=ids.shape).astype(np.float32)
    held = np.arange(0, 90, 4)
    truth, pred = _brute(ids, held, 50), _brute(content / np.linalg.norm(content, axis=1, keepdims=True), held, 50)
    held_set, per_query = set(held.tolist()), []
    for p, t in zip(pred, truth, strict=True):
        new = [x for x in t[:10] if x in held_set]
        if new:
            per_query.append(len(set(p[:10]) & set(new)) / len(new))
    flags = np.isin(np.arange(90), held)
    assert abs(recall_among(pred, truth, 10, flags) - np.mean(per_query)) < 1e-12
    rows = score({"ids": ids, "content": content}, ids, held)
    assert rows[0]["recall_at_10_new"] == 1.0 and rows[1]["recall_at_10_new"] == round(np.mean(per_query), 4)
    assert recall_among(pred, truth, 10, np.zeros(90, bool)) is None          # no held-out neighbour at all
    assert recall_among(pred, truth, 10, np.ones(90, bool)) == recall_at_k(pred, truth, 10)   # all allowed: plain
