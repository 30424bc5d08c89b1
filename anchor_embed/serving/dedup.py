"""Near-duplicate groups: range search at a cosine threshold (inclusive), then groups of the edges found.

`linkage="single"` groups are connected components (a chain of pairs each at or above the threshold can
join streamers that are not alike at all); `linkage="complete"` splits each component by complete-linkage
clustering so every pair inside a group is at or above the threshold. `max_group_size` splits any larger
group by complete linkage at stricter cuts until it fits. Each group reports the true minimum pairwise
similarity of its members (exact up to EXACT_MEMBERS members, from a seeded sample of pairs above).

At scale (`clusters` > 0), SemDeDup-style: spherical k-means first, range search only within clusters
(each streamer in its `assign` nearest), so the cost grows near-linearly with the number of streamers.
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
from rich.markup import escape

from anchor_embed import atomic
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.progress import counted, say
from anchor_embed.serving.output_file import claim
from anchor_embed.serving.vectors import open_vectors, vectors_id

EXACT_MEMBERS = 3000      # pairwise minimum computed exactly up to this group size
SAMPLED_PAIRS = 200_000   # pairs sampled for larger groups
CHUNK = 65_536            # rows converted to float32 at a time when streaming from a memory map
MIN_CLUSTER_SIZE = 50     # fewer streamers a cluster and duplicates land in different ones (QA: 9,520 clusters for
                          # 1,904 vectors split 66 exact groups into 112; 96 clusters kept them)
ROUNDING = 1e-6           # a float32 cosine of identical unit vectors can be 0.99999994: counted as 1


def edges_above(x: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) with inner product >= threshold, up to float32 rounding (`ROUNDING`: identical vectors
    meet a threshold of 1); faiss range search is strict, so it is asked just below."""
    import faiss

    x = np.ascontiguousarray(x, np.float32)
    if len(x) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    cut = np.float32(threshold) - np.float32(ROUNDING)
    lims, sims, idx = index.range_search(x, float(np.nextafter(cut, np.float32(-np.inf))))
    src = np.repeat(np.arange(len(x)), np.diff(lims.astype(np.int64)))
    keep = (src < idx) & (sims >= cut)
    return src[keep], idx[keep].astype(np.int64), sims[keep]


def components(n: int, src: np.ndarray, dst: np.ndarray) -> list[np.ndarray]:
    """Connected components with more than one member (scipy), each as sorted row ids."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not len(src):
        return []
    _, labels = connected_components(coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n)), directed=False)
    order = np.argsort(labels, kind="stable")
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    return [g for g in np.split(order, cuts) if len(g) > 1]


def complete_groups(x: np.ndarray, members: np.ndarray, threshold: float,
                    forced: dict[tuple[int, int], float] | None = None) -> list[np.ndarray]:
    """Split `members` by complete-linkage clustering so every pair in a group has cosine >= threshold
    (`forced` overrides the cosine of reviewed pairs: 1 for same owner, -1 for not related)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    if len(members) < 2:
        return []
    sims = np.clip(x[members] @ x[members].T, -1.0, 1.0).astype(np.float64)
    if forced:
        at = {int(m): i for i, m in enumerate(members)}
        for (a, b), v in forced.items():
            if a in at and b in at:
                sims[at[a], at[b]] = sims[at[b], at[a]] = v
    dist = squareform(1.0 - sims, checks=False)
    labels = fcluster(linkage(dist, method="complete"), t=(1.0 - threshold) + ROUNDING, criterion="distance")
    return [np.sort(members[labels == c]) for c in np.unique(labels) if np.sum(labels == c) > 1]


def fit_size(x: np.ndarray, members: np.ndarray, threshold: float, max_size: int) -> list[np.ndarray]:
    """Groups of `members` no larger than `max_size`: complete linkage at the threshold, and a group that is
    still too large (every pair that close) is cut again halfway to cosine 1, until each fits."""
    if len(members) <= max_size:
        return [members]
    parts = complete_groups(x, members, threshold)
    if len(parts) == 1 and len(parts[0]) == len(members):       # one clique at this threshold: cut tighter
        if threshold > 1.0 - ROUNDING:                          # identical vectors: no cut separates them
            return [members[i:i + max_size] for i in range(0, len(members) - 1, max_size)
                    if len(members[i:i + max_size]) > 1]
        return fit_size(x, members, threshold + (1.0 - threshold) / 2, max_size)
    return [g for p in parts for g in fit_size(x, p, threshold, max_size)]


def pairwise_range(x: np.ndarray, members: np.ndarray, seed: int = 0) -> tuple[float, float, bool]:
    """(min, max) cosine over distinct pairs of members, and whether it was exact (else from sampled pairs)."""
    if len(members) <= EXACT_MEMBERS:
        sims = x[members] @ x[members].T
        off = ~np.eye(len(members), dtype=bool)
        return float(sims[off].min()), float(sims[off].max()), True
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(members), SAMPLED_PAIRS), rng.integers(0, len(members), SAMPLED_PAIRS)
    keep = a != b
    s = np.sum(x[members[a[keep]]] * x[members[b[keep]]], axis=1)
    return float(s.min()), float(s.max()), False


def dedup_vectors(x: np.ndarray, threshold: float, clusters: int = 0, seed: int = 0, assign: int = 2,
                  linkage: Literal["single", "complete"] = "single", max_group_size: int = 0,
                  confirmed: set[tuple[int, int]] | None = None, rejected: set[tuple[int, int]] | None = None,
                  keys: list[str] | None = None) -> list[dict]:
    """Groups over rows of `x` with members (row ids), representative, and min/max pairwise similarity.

    With clusters, each row joins its `assign` nearest clusters, so a duplicate pair split across a
    cluster border is still searched together (SemDeDup with one cluster per row misses those). Reviewed
    pairs (row ids) win over the vectors: `confirmed` ones always share a group, `rejected` ones never do.
    With `keys` (the rows' anchor_ids), rows are taken in key order, not file order: members are listed, a
    representative is chosen among equals and the k-means rows are fitted in that order, as `spark dedup`
    (which has no file order) does, so both give the same groups of the same vectors.
    """
    src, dst, _ = candidate_edges(x, threshold, clusters, seed, assign, keys)
    confirmed, rejected = confirmed or set(), rejected or set()
    # only the rows on an edge are read into memory (as float32), so `x` may be a larger-than-RAM memory map
    rows = np.unique(np.concatenate([src, dst, np.array(sorted(confirmed), np.int64).ravel()]))
    order = _key_order(rows, keys)
    rank = np.empty(len(rows), np.int64)
    rank[order] = np.arange(len(rows))
    nodes = rows[order]
    at = {int(r): i for i, r in enumerate(nodes)}
    groups = groups_from_edges(np.asarray(x[rows], np.float32)[order],
                               rank[np.searchsorted(rows, src)],
                               rank[np.searchsorted(rows, dst)], threshold, linkage, max_group_size,
                               {(at[a], at[b]) for a, b in confirmed},
                               {(at[a], at[b]) for a, b in rejected if a in at and b in at}, seed)
    for g in groups:
        g["members"] = nodes[g["members"]].tolist()
        g["representative"] = int(nodes[g["representative"]])
    return groups


def groups_from_edges(x: np.ndarray, src: np.ndarray, dst: np.ndarray, threshold: float,
                      linkage: Literal["single", "complete"] = "single", max_group_size: int = 0,
                      confirmed: set[tuple[int, int]] | None = None, rejected: set[tuple[int, int]] | None = None,
                      seed: int = 0) -> list[dict]:
    """Groups of the candidate pairs (src[i], dst[i]) over rows of `x`: components, split as `linkage` and
    `max_group_size` ask; the one path of `dedup` and of `spark dedup` (which finds the pairs in executors)."""
    confirmed, rejected = confirmed or set(), rejected or set()
    if rejected:
        keep = np.array([(int(a), int(b)) not in rejected and (int(b), int(a)) not in rejected
                         for a, b in zip(src, dst, strict=True)], bool)
        src, dst = src[keep], dst[keep]
    if confirmed:
        pairs = np.array(sorted(confirmed), np.int64).reshape(-1, 2)
        src, dst = np.concatenate([src, pairs[:, 0]]), np.concatenate([dst, pairs[:, 1]])
    groups = components(len(x), src, dst)
    forced = {**{p: -1.0 for p in rejected}, **{p: 1.0 for p in confirmed}}
    if linkage == "complete" or rejected:
        split = []
        for c in groups:
            inside = set(c.tolist())
            needs = linkage == "complete" or any(a in inside and b in inside for a, b in rejected)
            split += complete_groups(x, c, threshold, forced) if needs else [c]
        groups = split
    if max_group_size:
        groups = [g for c in groups for g in fit_size(x, c, threshold, max_group_size)]
    degree = np.bincount(np.concatenate([src, dst]), minlength=len(x)) if len(src) else np.zeros(len(x), int)
    out = []
    for members in sorted(groups, key=lambda g: int(g[0])):
        lo, hi, exact = pairwise_range(x, members, seed)
        out.append({"members": members.tolist(), "representative": int(members[np.argmax(degree[members])]),
                    "min_similarity": lo, "max_similarity": hi, "min_exact": exact})
    return out


def _key_order(rows: np.ndarray, keys: list[str] | None) -> np.ndarray:
    """The order of `rows` by their keys (stable), or as they are without keys."""
    if keys is None or not len(rows):
        return np.arange(len(rows))
    return np.argsort(np.array([keys[int(r)] for r in rows], dtype=object), kind="stable")


def candidate_edges(x: np.ndarray, threshold: float, clusters: int, seed: int, assign: int,
                    keys: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs at or above the threshold: all of them, or those within shared k-means clusters (fitted on the
    rows in key order when `keys` are given)."""
    if clusters <= 1:
        return edges_above(x, threshold)
    from anchor_embed.vectorspace import centroid_index

    per = 256                                      # rows per centroid faiss trains on (its own cap too)
    fit = np.arange(len(x)) if len(x) <= per * clusters else \
        np.sort(np.random.default_rng(seed).choice(len(x), size=per * clusters, replace=False))
    fit = fit[_key_order(fit, keys)]
    cindex = centroid_index(np.asarray(x[fit], np.float32), clusters, seed, max_points_per_centroid=per)
    a = max(1, min(assign, cindex.ntotal))
    labels = np.concatenate([cindex.search(np.asarray(x[i:i + CHUNK], np.float32), a)[1]
                             for i in range(0, len(x), CHUNK)]) if len(x) else np.zeros((0, a), np.int64)
    rows, cl = np.repeat(np.arange(len(x)), labels.shape[1]), labels.ravel()
    order = np.argsort(cl, kind="stable")
    found = [(r[s], r[d], v) for r in np.split(rows[order], np.flatnonzero(np.diff(cl[order])) + 1)
             if len(r) > 1 for s, d, v in [edges_above(x[r], threshold)]]
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    src, dst, sim = (np.concatenate(parts) for parts in zip(*found, strict=True))
    _, first = np.unique(src * len(x) + dst, return_index=True)  # a pair met in two clusters counts once
    return src[first], dst[first], sim[first]


def check_flags(threshold: float, clusters: int, assign: int, max_group_size: int) -> None:
    """Out-of-range settings are one clear error, not silently adjusted."""
    if not (math.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise AnchorEmbedError(f"--threshold {threshold}: a cosine between -1 and 1")
    if clusters < 0:
        raise AnchorEmbedError(f"--clusters {clusters}: 0 (exact search) or a positive number of clusters")
    if assign < 1:
        raise AnchorEmbedError(f"--assign {assign}: each streamer joins at least 1 cluster")
    if max_group_size < 0 or max_group_size == 1:
        raise AnchorEmbedError(f"--max-group-size {max_group_size}: 0 (no limit) or at least 2")


def dedup(vectors: str | Path, threshold: float = 0.95, out: str | Path | None = None, clusters: int = 0,
          assign: int = 2, linkage: Literal["single", "complete"] = "single", max_group_size: int = 0,
          reviewed: str | Path | None = None, memory_budget: str | None = None, overwrite: bool = False) -> list[dict]:
    """Write dedup groups (DedupGroup lines) and print a summary of group sizes. `reviewed` is a review log
    (from the serve page): confirmed pairs always grouped, rejected pairs never. When exact search would hold
    more than `memory_budget` in memory, it searches within k-means clusters instead (and says so); the
    vectors themselves stay memory-mapped. An existing `out` that is no dedup output is replaced only with
    `overwrite`; each row records the settings that shaped the groups (`settings`), and replacing groups made
    with others is said."""
    check_flags(threshold, clusters, assign, max_group_size)
    out = Path(out) if out else Path(vectors) / default_name(threshold)
    x, keys, meta = open_vectors(vectors)
    made_from = vectors_id(meta)
    clusters = capped_clusters(clusters, len(keys), "dedup")
    most = len(keys) // MIN_CLUSTER_SIZE
    if memory_budget is not None:
        from anchor_embed.serving.index import parse_bytes

        budget, need = parse_bytes(memory_budget), int(x.shape[0]) * int(x.shape[1]) * 4
        if clusters <= 1 and need > budget:
            want = max(2, math.ceil(4 * need / budget))   # a cluster's rows (each row in `assign`) fit
            clusters = min(want, most) if most > 1 else 0
            say(f"[yellow]dedup[/]: exact search over {len(keys)} vectors needs {_size(need)} > --memory-budget "
                f"{memory_budget}: " + (f"searching within {clusters} k-means clusters instead" if clusters else
                                        "too few streamers to split into clusters; exact search")
                + (f" (the budget asks {want}; clusters under {MIN_CLUSTER_SIZE} streamers split groups)"
                   if 0 < clusters < want else ""))
    say_assign_cap("dedup", assign, clusters)
    confirmed, rejected, yes, no, pos = set(), set(), [], [], {}
    if reviewed:
        from anchor_embed.serving.review import read_reviews

        pos = {k: i for i, k in enumerate(keys)}
        yes, no = read_reviews(reviewed)
        confirmed = {tuple(sorted(pos[k] for k in p)) for p in yes if all(k in pos for k in p)}
        rejected = {tuple(sorted(pos[k] for k in p)) for p in no if all(k in pos for k in p)}
        say(f"[bold]dedup[/]: {len(confirmed)} confirmed and {len(rejected)} rejected pairs from {escape(str(reviewed))}")
        say_unapplied("dedup", vectors, [*yes, *no], set(pos))
    made_with = settings(threshold, linkage, clusters, assign, max_group_size, yes, no, pos)
    claim(out, "dedup", ("group", "representative", "members"), overwrite, made_from, made_with)
    groups = dedup_vectors(x, threshold, clusters, assign=assign, linkage=linkage,
                           max_group_size=max_group_size, confirmed=confirmed, rejected=rejected, keys=keys)
    return write_groups(groups, keys, threshold, linkage, out, made_from, made_with)


def default_name(threshold: float) -> str:
    """The file a dedup at `threshold` writes into its vectors folder by default: `dedup-0.95.jsonl` (the names
    of earlier versions for thresholds from 0 up), `dedup-minus0.5.jsonl` for a negative one (not
    `dedup--0.5.jsonl`), and never an exponent (`dedup-0.00001.jsonl`, not `dedup-1e-05.jsonl`)."""
    t = float(threshold)
    text = repr(abs(t))
    if "e" in text:
        text = np.format_float_positional(abs(t))
    return f"dedup-{'minus' if t < 0 else ''}{text}.jsonl"


def settings(threshold: float, linkage: str, clusters: int, assign: int, max_group_size: int,
             yes: Iterable = (), no: Iterable = (), known: Container[str] = ()) -> dict:
    """What shapes the groups besides the vectors, as each DedupGroup row records it (and `--out` compares it):
    the clusters searched within (0: exact search) after capping, the clusters each streamer joined (0 with
    exact search), and a digest of the reviewed pairs applied: those of `yes` (confirmed) and `no` (rejected)
    whose ids are all `known` (None when none is); `dedup` and `spark dedup` record it alike."""
    import hashlib
    import json

    reviewed = [(verdict, sorted(p)) for verdict, pairs in (("same", yes), ("not", no))
                for p in pairs if all(k in known for k in p)]
    return {"threshold": float(threshold), "linkage": linkage, "clusters": int(clusters),
            "assign": int(min(assign, clusters)) if clusters > 1 else 0, "max_group_size": int(max_group_size),
            "reviewed": hashlib.sha256(json.dumps(sorted(reviewed)).encode()).hexdigest()[:16] if reviewed else None}


def capped_clusters(clusters: int, n: int, stage: str) -> int:
    """`--clusters` for `n` streamers, lowered (and said) so a cluster holds MIN_CLUSTER_SIZE of them on average;
    0 (exact search) when too few streamers make two such clusters. `dedup` and `spark dedup` both cap by it."""
    most = n // MIN_CLUSTER_SIZE
    if clusters <= max(most, 1):
        return clusters
    say(f"[yellow]{stage}[/]: --clusters {clusters} for {n} streamers: "
        + (f"{most} clusters instead" if most > 1 else "exact search instead")
        + f" (smaller clusters than {MIN_CLUSTER_SIZE} streamers split groups of duplicates)")
    return most if most > 1 else 0


def say_assign_cap(stage: str, assign: int, clusters: int) -> None:
    """One line when --assign asks more clusters per streamer than there are: each joins every cluster."""
    if clusters > 1 and assign > clusters:
        say(f"[yellow]{stage}[/]: --assign {assign} > {clusters} clusters: each streamer joins all {clusters}")


def _size(n: int) -> str:
    """Bytes in the largest unit that keeps a figure of 1 or more (1.5 MiB, not 0.00 GiB)."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


def say_unapplied(stage: str, vectors, pairs: list, known: set[str]) -> None:
    """One line for reviewed pairs naming ids the vectors lack: a review log of another catalogue (or a typo)
    would otherwise apply nothing without a word."""
    absent = sorted({k for p in pairs for k in p if k not in known})
    if absent:
        said = sum(1 for p in pairs if not all(k in known for k in p))
        say(f"[yellow]{stage}[/]: {said} reviewed pair(s) name ids not in {escape(str(vectors))}, not applied (e.g. "
            + escape(", ".join(map(repr, absent[:3]))) + ")")


def write_groups(groups: list[dict], keys: list[str], threshold: float, linkage: str, out: Path,
                 made_from: str | None = None, made_with: dict | None = None) -> list[dict]:
    """DedupGroup lines (ids, not rows) written to `out`, with a one-line summary of the sizes; each records the
    threshold and linkage, the other settings that shaped it (`made_with`, as `settings` gives them), and the
    fingerprint of the vectors it was found in (`made_from`), when they have one."""
    made = {"linkage": linkage, "threshold": float(threshold), **(made_with or {}),
            **({"vectors": made_from} if made_from else {})}
    rows = [{"group": g, "representative": keys[gr["representative"]], "members": [keys[m] for m in gr["members"]],
             "size": len(gr["members"]), "min_similarity": round(gr["min_similarity"], 4),
             "max_similarity": round(gr["max_similarity"], 4), "min_exact": gr["min_exact"], **made}
            for g, gr in enumerate(groups)]
    atomic.write_jsonl(out, rows)
    sizes = np.bincount([r["size"] for r in rows]) if rows else np.array([], int)
    summary = ", ".join(f"{n} of size {s}" for s, n in enumerate(sizes) if n)
    say(f"[bold]dedup[/]: {counted(len(rows), 'group')} at cosine >= {threshold} ({linkage} linkage; "
        f"{counted(sum(r['size'] - 1 for r in rows), 'streamer')} could go){': ' + summary if summary else ''}; written to {escape(str(out))}")
    return rows
