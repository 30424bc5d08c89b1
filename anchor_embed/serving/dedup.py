"""Near-duplicate groups: range search at a cosine threshold, then connected components (union-find).

At scale (`clusters` > 0), SemDeDup-style: spherical k-means first, range search only within each cluster,
so the cost grows near-linearly with the number of streamers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anchor_embed import atomic
from anchor_embed.progress import say
from anchor_embed.serving.vectors import open_vectors


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
    touched = np.unique(np.concatenate([src, dst]))
    roots = np.arange(n)
    roots[touched] = [_find(parent, int(i)) for i in touched]
    degree = np.bincount(np.concatenate([src, dst]), minlength=n)
    members_of = _split_by(touched, roots[touched])
    edge_sims = _split_by(sims, roots[src])
    out = []
    for r, members in members_of.items():
        rep = int(members[np.argmax(degree[members])])
        s = edge_sims[r]
        out.append({"members": members.tolist(), "representative": rep,
                    "min_similarity": float(s.min()), "max_similarity": float(s.max())})
    return sorted(out, key=lambda g: g["members"][0])


def _split_by(values: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """{label: values with that label, in their original order} by one stable sort (not a scan per label)."""
    order = np.argsort(labels, kind="stable")
    uniq, starts = np.unique(labels[order], return_index=True)
    return {int(u): values[order[s:e]] for u, s, e in zip(uniq, starts, [*starts[1:], len(order)], strict=True)}


def dedup_vectors(x: np.ndarray, threshold: float, clusters: int = 0, seed: int = 0, assign: int = 2) -> list[dict]:
    """Groups over rows of `x`: exact, or within k-means clusters when `clusters` > 1.

    With clusters, each row joins its `assign` nearest clusters, so a duplicate pair split across a
    cluster border is still searched together (SemDeDup with one cluster per row misses those).
    """
    x = np.ascontiguousarray(x, np.float32)
    if clusters <= 1:
        return group(len(x), *edges_above(x, threshold))
    from anchor_embed.vectorspace import centroid_index

    cindex = centroid_index(x, clusters, seed)
    _, labels = cindex.search(x, max(1, min(assign, cindex.ntotal)))
    rows_of = _split_by(np.repeat(np.arange(len(x)), labels.shape[1]), labels.ravel())
    src_all, dst_all, sim_all = [], [], []
    for rows in rows_of.values():
        if len(rows) < 2:
            continue
        s, d, v = edges_above(x[rows], threshold)
        src_all.append(rows[s])
        dst_all.append(rows[d])
        sim_all.append(v)
    if not src_all:
        return []
    src, dst, sim = np.concatenate(src_all), np.concatenate(dst_all), np.concatenate(sim_all)
    _, first = np.unique(src * len(x) + dst, return_index=True)  # a pair met in two clusters counts once
    return group(len(x), src[first], dst[first], sim[first])


def dedup(vectors: str | Path, threshold: float = 0.95, out: str | Path | None = None, clusters: int = 0,
          assign: int = 2) -> list[dict]:
    """Write dedup groups (DedupGroup lines) and print a summary of group sizes."""
    x, keys, _ = open_vectors(vectors)
    groups = dedup_vectors(np.asarray(x, np.float32), threshold, clusters, assign=assign)
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
