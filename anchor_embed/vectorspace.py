"""Sets of unit vectors, the shared geometry of every stage: row normalisation, exact kNN, spherical k-means.

Every similarity in the project is a cosine of unit rows; each operation here exists once (faiss under the
hood, no torch) and is used by mining, evaluation, the index, dedup and scatter alike.
"""

from __future__ import annotations

import numpy as np


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """A float32 copy of `x` with unit-length rows (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def without_self(idx: np.ndarray, sims: np.ndarray, self_rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Search results (k + 1 per query) with each query's own row and the -1 padding removed, cut to k.

    Returns (indices, scores), each (queries, k); where fewer than k hits remain the tail is -1 (index) and
    -inf (score), so a caller can never count padding as a neighbour. `self_rows[i]` < 0 excludes nothing.
    """
    out_i = np.full((len(idx), k), -1, np.int64)
    out_s = np.full((len(idx), k), -np.inf, np.float32)
    for r, me in enumerate(np.asarray(self_rows, np.int64)):
        keep = (idx[r] != me) & (idx[r] >= 0)
        row_i, row_s = idx[r][keep][:k], sims[r][keep][:k]
        out_i[r, :len(row_i)] = row_i
        out_s[r, :len(row_s)] = row_s
    return out_i, out_s


def knn(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact: the k rows of `vectors` with the highest inner product to each row `queries[i]`, itself excluded.

    Returns (indices, scores) as `without_self` does.
    """
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    queries = np.asarray(queries, np.int64)
    sims, idx = faiss.knn(np.ascontiguousarray(x[queries]), x, min(k + 1, len(x)), metric=faiss.METRIC_INNER_PRODUCT)
    return without_self(idx, sims, queries, k)


def centroid_index(x: np.ndarray, k: int, seed: int = 0, niter: int = 20, max_points_per_centroid: int = 256):
    """A faiss inner-product index over the k spherical k-means centroids of the unit rows `x`.

    k is capped at the number of rows; training uses at most `max_points_per_centroid` rows per centroid.
    """
    import faiss

    x = np.ascontiguousarray(x, np.float32)
    k = max(1, min(k, len(x)))
    # min_points_per_centroid only decides when faiss prints "WARNING clustering N points to K centroids" on
    # stderr (a small catalogue, or many clusters, is a fit the caller chose): 1 keeps that line off
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                      max_points_per_centroid=max_points_per_centroid, min_points_per_centroid=1)
    km.train(x)
    return km.index


def spherical_kmeans(x: np.ndarray, k: int, seed: int = 0, niter: int = 20,
                     max_points_per_centroid: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Cluster label and (1 - cosine to centroid) of each unit row of `x`, by faiss spherical k-means."""
    x = np.ascontiguousarray(x, np.float32)
    sims, labels = centroid_index(x, k, seed, niter, max_points_per_centroid).search(x, 1)
    return labels[:, 0].astype(np.int64), (1.0 - sims[:, 0]).astype(np.float32)
