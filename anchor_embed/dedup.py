"""Near-duplicate groups: range search at a cosine threshold, then connected components (union-find).

At scale (`clusters` > 0), SemDeDup-style: spherical k-means first, range search only within each cluster,
so the cost grows near-linearly with the number of streamers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anchor_embed import atomic
from anchor_embed.progress import say
from anchor_embed.vectors import open_vectors


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def edges_above(x: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) with inner product >= threshold, by faiss range search."""
    import faiss

    x = np.ascontiguousarray(x, np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    lims, sims, idx = index.range_search(x, threshold)
    src = np.repeat(np.arange(len(x)), np.diff(lims.astype(np.int64)))
    keep = src < idx
    return src[keep], idx[keep].astype(np.int64), sims[keep]


def group(n: int, src: np.ndarray, dst: np.ndarray, sims: np.ndarray) -> list[dict]:
    """Connected components of size > 1, each with members (row ids), representative and min/max similarity."""
    parent = np.arange(n)
    for a, b in zip(src, dst, strict=True):
        ra, rb = _find(parent, int(a)), _find(parent, int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([_find(parent, i) for i in range(n)])
    degree = np.bincount(np.concatenate([src, dst]), minlength=n)
    out = []
    for r in np.unique(roots[np.bincount(roots, minlength=n)[roots] > 1]):
        members = np.flatnonzero(roots == r)
        s = sims[roots[src] == r]
        rep = int(members[np.argmax(degree[members])])
        out.append({"members": members.tolist(), "representative": rep,
                    "min_similarity": float(s.min()), "max_similarity": float(s.max())})
    return out


def dedup_vectors(x: np.ndarray, threshold: float, clusters: int = 0, seed: int = 0) -> list[dict]:
    """Groups over rows of `x` (exact, or within k-means clusters when `clusters` > 0)."""
    if clusters <= 1:
        return group(len(x), *edges_above(x, threshold))
    from anchor_embed.scatter import spherical_kmeans

    labels, _ = spherical_kmeans(x, clusters, seed)
    src_all, dst_all, sim_all = [], [], []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) < 2:
            continue
        s, d, v = edges_above(x[rows], threshold)
        src_all.append(rows[s])
        dst_all.append(rows[d])
        sim_all.append(v)
    if not src_all:
        return []
    return group(len(x), np.concatenate(src_all), np.concatenate(dst_all), np.concatenate(sim_all))


def dedup(vectors: str | Path, threshold: float = 0.95, out: str | Path | None = None, clusters: int = 0) -> list[dict]:
    """Write dedup groups (DedupGroup lines) and print a summary of group sizes."""
    x, keys, _ = open_vectors(vectors)
    groups = dedup_vectors(np.asarray(x, np.float32), threshold, clusters)
    rows = [{"group": g, "representative": keys[gr["representative"]], "members": [keys[m] for m in gr["members"]],
             "size": len(gr["members"]), "min_similarity": round(gr["min_similarity"], 4),
             "max_similarity": round(gr["max_similarity"], 4)} for g, gr in enumerate(groups)]
    out = Path(out) if out else Path(vectors) / f"dedup-{threshold}.jsonl"
    atomic.write_jsonl(out, rows)
    sizes = np.bincount([r["size"] for r in rows]) if rows else np.array([])
    summary = ", ".join(f"{n} of size {s}" for s, n in enumerate(sizes) if n)
    say(f"[bold]dedup[/]: {len(rows)} groups at cosine >= {threshold} "
        f"({sum(r['size'] - 1 for r in rows)} streamers could go){': ' + summary if summary else ''}; written to {out}")
    return rows
