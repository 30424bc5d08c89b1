"""Neighbour-recall evaluation: do a content vector's nearest streamers match its behavioural neighbours?

Held-out streamers (a seeded share of those with ID embeddings) are the queries. The truth of a query is
its top-k neighbours by ID embedding among all other streamers with one; a model is scored by the overlap
of its content kNN (over the same candidates) with that truth: Recall@k and NDCG@k. `recall_at_10_new` keeps
only the true neighbours that are held out too (no model trained on them): how well new streamers find each
other, the cold-start case, apart from how well they find the streamers a model has seen.
"""

from __future__ import annotations

import hashlib

import numpy as np

from anchor_embed.vectorspace import knn, normalise_rows


def holdout_split(keys: list[str], frac: float = 0.2, seed: int = 0, salt: str = "") -> set[str]:
    """The held-out keys: each key is held out by its own seeded hash, whatever other keys are listed.

    So transfer and evaluate agree on every streamer even when they read different ID files (sparse ID
    embeddings cover a subset of the streamers). Another `salt` draws an independent split (transfer's
    validation share uses salt 'validation').
    """
    if frac <= 0:
        return set()
    return {k for k in keys if int(hashlib.sha1(f"{salt}{seed}:{k}".encode()).hexdigest()[:15], 16) < frac * 16**15}


def recall_at_k(pred: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over queries of |top-k predicted ∩ top-k true| / |top-k true|.

    Rows are neighbour indices padded with -1 where fewer than k candidates exist (`vectorspace.knn`): the
    padding is never a hit, and a query's true list is only as long as its real entries.
    """
    return float(np.mean(recall_per_query(pred, truth, k)))


def recall_per_query(pred: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """(queries,) each query's |top-k predicted ∩ top-k true| / |top-k true|, as `recall_at_k` averages them."""
    out = np.zeros(len(pred))
    for i, (p, t) in enumerate(zip(pred, truth, strict=True)):
        true = set(t[:k].tolist()) - {-1}
        out[i] = len(set(p[:k].tolist()) & true) / max(len(true), 1)
    return out


def recall_among(pred: np.ndarray, truth: np.ndarray, k: int, allowed: np.ndarray) -> float | None:
    """Recall@k over the true top-k neighbours that `allowed` (a flag per candidate row) marks; queries with
    none of them are left out, and None when no query has one."""
    top = truth[:, :k]
    marked = np.where((top >= 0) & allowed[np.maximum(top, 0)], top, -1)
    keep = (marked >= 0).any(axis=1)
    return recall_at_k(pred[keep], marked[keep], k) if keep.any() else None


def ndcg_at_k(pred: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Binary-relevance NDCG@k: relevant = in the true top-k."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = disc.sum()
    scores = []
    for p, t in zip(pred, truth, strict=True):
        rel = (np.isin(p[:k], t[:k]) & (p[:k] >= 0)).astype(float)
        scores.append(float((rel * disc[: len(rel)]).sum() / ideal))
    return float(np.mean(scores))


def alignment_uniformity(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray,
                         max_pairs: int = 20000, seed: int = 0) -> tuple[float, float]:
    """Alignment over (query, true top-1 neighbour) pairs and uniformity over random pairs (Wang & Isola)."""
    a = vectors[queries]
    b = vectors[truth[:, 0]]
    align = float(np.mean(np.sum((a - b) ** 2, axis=1)))
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(vectors), max_pairs)
    j = rng.integers(0, len(vectors), max_pairs)
    keep = i != j
    d2 = np.sum((vectors[i[keep]] - vectors[j[keep]]) ** 2, axis=1)
    return align, float(np.log(np.mean(np.exp(-2 * d2))))


def score(named: dict[str, np.ndarray], id_vectors: np.ndarray, held_out: np.ndarray) -> list[dict]:
    """One row per model: Recall@10 (all true neighbours, and the held-out ones alone), Recall@50, NDCG@10,
    alignment, uniformity, over the same queries and truth.

    `named` maps a model name to vectors aligned row by row with `id_vectors` (candidates = all rows).
    """
    ids = normalise_rows(id_vectors)
    truth = knn(ids, held_out, 50)[0]
    is_held = np.zeros(len(ids), bool)
    is_held[held_out] = True
    rows = []
    for name, vecs in named.items():
        v = normalise_rows(vecs)
        pred = knn(v, held_out, 50)[0]
        align, unif = alignment_uniformity(v, held_out, truth)
        new = recall_among(pred, truth, 10, is_held)
        rows.append({"model": name, "recall_at_10": round(recall_at_k(pred, truth, 10), 4),
                     "recall_at_10_new": None if new is None else round(new, 4),
                     "recall_at_50": round(recall_at_k(pred, truth, 50), 4),
                     "ndcg_at_10": round(ndcg_at_k(pred, truth, 10), 4),
                     "alignment": round(align, 4), "uniformity": round(unif, 4), "queries": int(len(held_out))})
    return rows


TABLE_COLUMNS = ["model", "recall_at_10", "recall_at_10_new", "recall_at_50", "ndcg_at_10", "alignment",
                 "uniformity", "queries"]


def markdown_table(rows: list[dict], cols: list[str] = TABLE_COLUMNS) -> str:
    """The evaluate table (or the chosen columns of it) as Markdown, one row per model; '-' for a missing figure."""
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("-" if r.get(c) is None else str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
