"""Mixed and new-vs-new Recall@10 of held-back queries (`NeighbourRecall`), re-derived with scikit-learn's exact
cosine neighbours."""

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from anchor_embed.evaluation.neighbour_recall import NeighbourRecall, monitor_figure


def _recall(vectors: np.ndarray, truth_vectors: np.ndarray, pool: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Mean share of each query's k cosine-nearest pool rows by `truth_vectors` found by `vectors` (self excluded)."""
    def top(x):
        nn = NearestNeighbors(n_neighbors=min(k + 1, len(pool)), metric="cosine").fit(x[pool])
        idx = nn.kneighbors(x[queries], return_distance=False)
        return [[pool[j] for j in row if pool[j] != q][:k] for row, q in zip(idx, queries, strict=True)]
    return float(np.mean([len(set(p) & set(t)) / len(t) for p, t in zip(top(vectors), top(truth_vectors), strict=True)]))


def test_mixed_and_new_recall_match_the_definition():
    rng = np.random.default_rng(0)
    ids = rng.normal(size=(120, 8))
    content = ids + 1.5 * rng.normal(size=ids.shape)      # a noisy content view: some neighbours found
    candidates = np.sort(rng.choice(120, 100, replace=False))
    queries = candidates[rng.choice(100, 25, replace=False)]
    v = NeighbourRecall(ids, candidates, queries)
    vecs = content[candidates]
    assert np.isclose(v.score(vecs), _recall(content, ids, candidates, queries, 10))
    assert np.isclose(v.score_new(vecs), _recall(content, ids, np.asarray(queries), queries, 10))
    assert 0 < v.score_new(vecs) < 1
    assert v.score_new(ids[candidates]) == 1.0            # the ID embeddings find themselves
    # duplicates: identical content for every row ranks arbitrarily but stays a share in [0, 1]
    assert 0 <= v.score_new(np.ones_like(vecs)) <= 1


def test_new_recall_with_two_queries_has_one_neighbour_each():
    ids = np.eye(4)
    v = NeighbourRecall(ids, np.arange(4), np.array([1, 3]))
    assert v.new_truth.shape == (2, 1)
    assert v.score_new(ids) == 1.0


def test_per_query_figures_average_to_the_scores():
    """Each monitor's per-query figures average to the figure a run logs (mixed; mean of mixed and new)."""
    rng = np.random.default_rng(1)
    ids = rng.normal(size=(90, 6))
    content = ids + rng.normal(size=ids.shape)
    v = NeighbourRecall(ids, np.arange(90), np.arange(0, 90, 3))
    mixed = v.per_query(content, "recall_at_10")
    assert mixed.shape == (30,) and np.isclose(mixed.mean(), v.score(content))
    assert np.isclose(monitor_figure(content, v, "mean_recall_at_10"), (v.score(content) + v.score_new(content)) / 2)
    with pytest.raises(ValueError, match="monitor 'auc'"):
        v.per_query(content, "auc")
