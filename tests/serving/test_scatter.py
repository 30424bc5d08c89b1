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


def test_rerank_keeps_the_ranking_when_no_order_has_fewer_clashes():
    """With a window as long as the list every order has the same clashes (a streamer clashes with any earlier one
    of its cluster), yet rerank moved 21 of 30 positions for nothing; now it keeps the ranking, and a window that
    can gain still reorders."""
    ranked = [f"a{i}" for i in range(30)]
    cluster_of = {a: 0 if i < 10 else i % 7 for i, a in enumerate(ranked)}
    for window in (30, 100):
        assert rerank(ranked, cluster_of, window) == ranked
    out = rerank(ranked, cluster_of, 3)
    assert out != ranked and window_clashes(out, cluster_of, 3) < window_clashes(ranked, cluster_of, 3)


def test_spherical_kmeans_labels_every_row():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels, dist = spherical_kmeans(x, 8)
    assert set(labels) == set(range(8)) and (dist >= -1e-5).all()
    centroids = np.stack([x[labels == c].mean(0) for c in range(8)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    assert (np.argmax(x @ centroids.T, 1) == labels).mean() > 0.95   # each row sits with its nearest centroid


def test_scatter_clusters_do_not_depend_on_the_files_order(tmp_path):
    """The same streamers in another row order get the same clusters (k-means was fitted in file order)."""
    import json

    from anchor_embed.data.key_file import write_keys
    from anchor_embed.serving.scatter import assign_clusters

    def write_vectors(vec, x, keys):
        vec.mkdir()
        np.save(vec / "vectors.npy", x)
        write_keys(vec / "keys.txt", keys)
        (vec / "meta.json").write_text(json.dumps({"model_hash": "m", "dim": 16, "count": len(x)}))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    keys = [f"s{i:03d}" for i in range(400)]
    perm = rng.permutation(400)
    write_vectors(tmp_path / "a", x, keys)
    write_vectors(tmp_path / "b", x[perm], [keys[p] for p in perm])
    got = [{r["anchor_id"]: r["cluster"] for r in assign_clusters(tmp_path / v, 7)} for v in ("a", "b")]
    assert got[0] == got[1] and len(set(got[0].values())) == 7
    assert json.loads((tmp_path / "a" / "clusters.jsonl").read_text().splitlines()[0])["anchor_id"] == "s000"


def test_small_fits_print_no_faiss_warning(capfd):
    """faiss printed "WARNING clustering 75 points to 6 centroids: please provide at least 234 training points"
    under every small scatter, dedup --clusters and `--method cluster`; the labels are the same without it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels, _ = spherical_kmeans(x, 6)
    assert "WARNING clustering" not in capfd.readouterr().err
    import faiss

    km = faiss.Kmeans(8, 6, niter=20, seed=0, spherical=True, verbose=False, max_points_per_centroid=256)
    km.train(x)
    assert "WARNING clustering" in capfd.readouterr().err          # faiss's default: the line above
    np.testing.assert_array_equal(km.index.search(x, 1)[1][:, 0], labels)
