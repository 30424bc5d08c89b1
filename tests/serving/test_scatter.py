"""Scatter: spherical k-means labels and the rerank rule against brute force."""

import numpy as np

from anchor_embed.serving.scatter import rerank, window_clashes
from anchor_embed.vectorspace import spherical_kmeans


def test_rerank_against_brute_force_rule():
    ranked = [f"a{i}" for i in range(12)]
    cluster_of = {a: (0 if i < 8 else i % 3) for i, a in enumerate(ranked)}
    out = rerank(ranked, cluster_of, window=2)
    assert sorted(out) == sorted(ranked)
    clashes = sum(cluster_of[a] == cluster_of[b] for a, b in zip(out, out[1:], strict=False))
    assert clashes < sum(cluster_of[a] == cluster_of[b] for a, b in zip(ranked, ranked[1:], strict=False))
    assert out[0] == "a0" and rerank(ranked, {}, 3) == ranked
    assert window_clashes(out, cluster_of, 2) == clashes   # window 2: a clash is a same-cluster neighbour pair
    brute = sum(any(cluster_of[out[j]] == cluster_of[out[i]] for j in range(max(0, i - 2), i)) for i in range(12))
    assert window_clashes(out, cluster_of, 3) == brute


def test_spherical_kmeans_labels_every_row():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels, dist = spherical_kmeans(x, 8)
    assert set(labels) == set(range(8)) and (dist >= -1e-5).all()
    centroids = np.stack([x[labels == c].mean(0) for c in range(8)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    assert (np.argmax(x @ centroids.T, 1) == labels).mean() > 0.95   # each row sits with its nearest centroid
