"""Scatter: cluster ids by spherical k-means, and reordering a ranked list so neighbours differ in cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.markup import escape

from anchor_embed import atomic
from anchor_embed.data.key_file import read_text
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.progress import counted, say
from anchor_embed.serving.output_file import claim
from anchor_embed.serving.vectors import open_vectors, vectors_id
from anchor_embed.vectorspace import centroid_index


def rerank(ranked: list[str], cluster_of: dict[str, int], window: int = 3) -> list[str]:
    """Greedy: at each position take the highest-ranked remaining item whose cluster is not among the
    previous `window - 1` placed; if none qualifies, the highest-ranked remaining one (order kept otherwise).
    A reordering with no fewer clashes than the given order is not made: the ranking stays as it was."""
    rest = list(ranked)
    out: list[str] = []
    while rest:
        recent = {cluster_of.get(a) for a in out[-(window - 1):]} if window > 1 else set()
        pick = next((j for j, a in enumerate(rest) if cluster_of.get(a) not in recent or cluster_of.get(a) is None), 0)
        out.append(rest.pop(pick))
    return out if window_clashes(out, cluster_of, window) < window_clashes(ranked, cluster_of, window) else list(ranked)


def window_clashes(order: list[str], cluster_of: dict[str, int], window: int = 3) -> int:
    """Positions whose cluster is among the previous `window - 1` items' (what rerank could not avoid)."""
    return sum(1 for i, a in enumerate(order) if a in cluster_of and
               cluster_of[a] in {cluster_of.get(b) for b in order[max(0, i - window + 1):i]})


def assign_clusters(vectors: str | Path, clusters: int, out: str | Path | None = None, seed: int = 0,
                    overwrite: bool = False) -> list[dict]:
    """A cluster id per streamer of a vectors folder (spherical k-means), written as ClusterRow lines; an existing
    `out` that is no scatter output is replaced only with `overwrite`. Each row records what shaped the clusters
    (the number k-means fitted, at most the streamers, and the seed), and replacing clusters made with others
    is said."""
    if clusters < 1:
        raise AnchorEmbedError(f"--clusters {clusters}: at least 1")
    out = Path(out) if out else Path(vectors) / "clusters.jsonl"
    x, keys, meta = open_vectors(vectors, need=1)
    made_from = vectors_id(meta)
    made_with = {"clusters": int(min(clusters, len(keys))), "seed": int(seed)}
    claim(out, "scatter", ("anchor_id", "cluster"), overwrite, made_from, made_with)
    if clusters > len(keys):
        say(f"[yellow]scatter[/]: --clusters {clusters} > {len(keys)} streamers: {len(keys)} clusters instead")
    # fitted on the rows in key order: the clusters depend on which streamers there are, not on the file's
    # order, and equal `spark scatter`'s (which has no file order) for the same vectors and seed
    x = np.asarray(x, np.float32)
    index = centroid_index(x[np.argsort(np.array(keys, dtype=object), kind="stable")], clusters, seed)
    sims, found = index.search(x, 1)
    labels, dist = found[:, 0].astype(np.int64), 1.0 - sims[:, 0]
    rows = [{"anchor_id": k, "cluster": int(c), "distance": round(float(d), 5), **made_with,
             **({"vectors": made_from} if made_from else {})} for k, c, d in zip(keys, labels, dist, strict=True)]
    atomic.write_jsonl(out, rows)
    sizes = np.bincount(labels)
    sizes = sizes[sizes > 0]
    say(f"[bold]scatter[/]: {len(sizes)} clusters over {len(keys)} streamers; sizes min {sizes.min()}, "
        f"median {int(np.median(sizes))}, max {sizes.max()}; written to {escape(str(out))}")
    if len(sizes) < index.ntotal:
        say(f"[yellow]scatter[/]: {index.ntotal - len(sizes)} of the {index.ntotal} centroids k-means fitted won no "
            "streamer (near-identical centroids); ask fewer --clusters")
    return rows


def read_clusters(clusters_file: str | Path) -> dict[str, int]:
    """anchor_id -> cluster from `scatter`'s clusters.jsonl or `spark scatter`'s Parquet folder."""
    import json

    path = Path(clusters_file)
    if path.is_dir():
        import pyarrow.dataset as ds

        try:                                   # Spark's _SUCCESS and record files are skipped ('_' prefix)
            table = ds.dataset(path, format="parquet").to_table(columns=["anchor_id", "cluster"])
        except Exception as exc:  # no Parquet here, or no such columns: one line
            raise AnchorEmbedError(f"{path}: not a clusters file or spark scatter folder ({exc})") from None
        return dict(zip(table.column("anchor_id").to_pylist(), table.column("cluster").to_pylist(), strict=True))
    if not path.is_file():
        raise AnchorEmbedError(f"{path}: no such file")
    cluster_of = {}
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            cluster_of[row["anchor_id"]] = int(row["cluster"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise AnchorEmbedError(f"{path}: line {n}: not a cluster row") from None
    return cluster_of


def rerank_file(list_file: str | Path, clusters_file: str | Path, window: int = 3) -> list[str]:
    """`rerank` of a file of ranked ids by the clusters of a clusters.jsonl (or a spark scatter folder);
    reports what moved."""
    if window < 1:
        raise AnchorEmbedError(f"--window {window}: at least 1")
    from collections import Counter

    list_file = Path(list_file)
    if not list_file.is_file():
        raise AnchorEmbedError(f"{list_file}: no such file")
    given = [x.strip() for x in read_text(list_file).splitlines() if x.strip()]
    ranked = list(dict.fromkeys(given))         # a streamer shown twice in one feed is no feed: first place kept
    if len(ranked) < len(given):
        twice = sorted(a for a, n in Counter(given).items() if n > 1)
        say(f"[yellow]rerank[/]: {len(given) - len(ranked)} repeated id(s) in {escape(str(list_file))} dropped, each "
            "kept at its first place (e.g. " + escape(", ".join(map(repr, twice[:3]))) + ")")
    cluster_of = read_clusters(clusters_file)
    out = rerank(ranked, cluster_of, window)
    unknown = sum(a not in cluster_of for a in ranked)
    say(f"[bold]rerank[/]: {sum(a != b for a, b in zip(ranked, out, strict=True))} of {len(ranked)} positions changed; "
        f"clashes within a window of {window}: {window_clashes(ranked, cluster_of, window)} before, "
        f"{window_clashes(out, cluster_of, window)} after"
        + (f"; {counted(unknown, 'id')} not in {escape(str(clusters_file))} kept as they rank" if unknown else ""))
    return out
