"""Batch jobs on Spark: embed, dedup and scatter where a platform's tables live (pyspark, optional extra).

The same code runs in local mode (tests, one box) and under `spark-submit` on a cluster. Executors load the
model and its backbones once per Python worker (`_model` keeps them) and work on Arrow batches
(`mapInArrow`); the driver only fits small things (k-means centroids on a sample) and joins the edge table.
Vectors are Parquet (`anchor_id`, `vector` array<float>, `model_id`), bucketed by a hash of the id so a
re-read of a slice touches few files; `_anchor_embed.json` beside them records what made them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from anchor_embed import atomic
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.progress import say

META = "_anchor_embed.json"      # Spark readers skip files starting with "_"
_MODELS: dict[str, Any] = {}     # run path -> loaded Model, one per executor Python worker


def session(master: str | None = None, app: str = "anchor-embed"):
    """A SparkSession: `master` when given; the submitter's when run by spark-submit; else local[*]."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise AnchorEmbedError("Spark jobs need pyspark: pip install 'anchor-embed[spark]'") from None
    builder = SparkSession.builder.appName(app).config("spark.sql.execution.arrow.pyspark.enabled", "true")
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if master or not under_submit:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)   # local workers run this interpreter
        # a session of its own: no progress bars, and Spark's log lines only when asked (ANCHOR_EMBED_SPARK_LOG=WARN):
        # a failed read otherwise prints pages of Java stack before the one line that says what went wrong
        builder = (builder.master(master or "local[*]").config("spark.ui.showConsoleProgress", "false")
                   .config("spark.log.level", os.environ.get("ANCHOR_EMBED_SPARK_LOG", "OFF")))
    try:
        return builder.getOrCreate()
    except Exception as exc:  # no Java, bad master URL: one line
        raise AnchorEmbedError(f"Spark did not start ({java_reason(exc)}); Spark needs Java 17+") from None


def java_reason(exc: Exception) -> str:
    """What a Spark failure says went wrong, in one line: the innermost Java cause, else Spark's own error
    class and message, else the first line (py4j's is only 'An error occurred while calling o30.parquet.')."""
    import re

    text = str(exc)
    causes = re.findall(r"Caused by: [\w.$]+: ([^\n]+)", text)
    if causes:
        return causes[-1].strip()[:200]
    named = re.search(r"\[[A-Z_.]+\][^\n]+", text)
    return (named.group(0) if named else text.strip().splitlines()[0] if text.strip() else type(exc).__name__)[:200]


def _model(run: str):
    """The run's Model, loaded once in this Python worker."""
    if run not in _MODELS:
        from anchor_embed.serving.encoder import load

        model = load(run)
        if model.cache is not None and not model.cache.is_dir():   # a cluster node without the run's cache
            model.cache = None
        _MODELS[run] = model
    return _MODELS[run]


def _read_records(spark, streamers: str, columns: dict[str, str] | None):
    """The streamers table: Parquet (file, folder, glob) as columns, its id column checked, or JSONL as one
    `value` text column."""
    path = str(streamers)
    if path.endswith((".jsonl", ".json", ".ndjson")):
        if not Path(path).is_file() and "://" not in path:
            raise AnchorEmbedError(f"{path}: no such file")
        return spark.read.text(path)
    try:
        df = spark.read.parquet(path)
    except Exception as exc:
        raise AnchorEmbedError(f"{path}: not a readable Parquet table ({java_reason(exc)})") from None
    id_col = (columns or {}).get("anchor_id", "anchor_id")
    if id_col not in df.columns:
        raise AnchorEmbedError(f"{path}: no '{id_col}' column (pass --id-column NAME); columns: {df.columns}")
    return df


def _embed_fn(run: str, media_root: str, columns: dict[str, str] | None, batch_size: int
              ) -> Callable[[Iterator], Iterator]:
    """The executor side of embed: Arrow batches of records in (each with its place in the input: `_file`,
    `_order`), (anchor_id, vector, model_id, error, _file, _order) out."""
    def fn(batches: Iterator) -> Iterator:
        import pyarrow as pa

        from anchor_embed.data.records import column_fields, parse_line, parse_row
        from anchor_embed.model.store import model_hash

        model = _model(run)
        mid = model_hash(Path(run))
        wanted = column_fields(columns)
        for batch in batches:
            good, ids, errors, order, bad_order = [], [], [], [], []
            for raw in batch.to_pylist():
                at = (raw.pop("_file"), raw.pop("_order"))
                line = raw["value"] if "value" in raw and len(raw) == 1 else None   # a JSONL line
                row = parse_line(line) if line is not None else {wanted[k]: v for k, v in raw.items() if k in wanted}
                rec = parse_row(row)
                if isinstance(rec, tuple):                   # (kind, message), as read_streamers reports it
                    who = row.get("anchor_id") if isinstance(row, dict) else None
                    errors.append((str(who if who not in (None, "") else line or raw)[:60], rec[1]))
                    bad_order.append(at)
                    continue
                good.append(rec.model_dump())
                ids.append(rec.anchor_id)
                order.append(at)
            # a repeat within the batch is encoded once, its later rows carry that vector (the driver drops them)
            first = {a: i for i, a in reversed(list(enumerate(ids)))}
            unique = sorted(first.values())
            vecs = model.encode([good[i] for i in unique], media_root=media_root, batch_size=batch_size) if good \
                else np.zeros((0, model.dim), np.float32)
            at_row = {i: n for n, i in enumerate(unique)}
            n_err = len(errors)
            yield pa.RecordBatch.from_pydict({
                "anchor_id": ids + [a for a, _ in errors],
                "vector": [vecs[at_row[first[a]]].tolist() for a in ids] + [None] * n_err,
                "model_id": [mid] * (len(ids) + n_err),
                "error": [None] * len(ids) + [e for _, e in errors],
                "_file": [f for f, _ in order + bad_order],
                "_order": [o for _, o in order + bad_order],
            }, schema=pa.schema([("anchor_id", pa.string()), ("vector", pa.list_(pa.float32())),
                                 ("model_id", pa.string()), ("error", pa.string()), ("_file", pa.string()),
                                 ("_order", pa.int64())]))
    return fn


def embed(spark, model: str | Path, streamers: str | Path, out: str | Path, media_root: str | Path | None = None,
          columns: dict[str, str] | None = None, strict: bool = False, buckets: int = 16, batch_size: int = 512,
          overwrite: bool = False) -> dict:
    """Vectors of every streamer of a table, computed in the executors, written as bucketed Parquet."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from anchor_embed.fingerprint import fingerprint
    from anchor_embed.model.store import model_hash

    model, out = Path(model).resolve(), Path(out)
    if not (model / "model.safetensors").is_file():
        raise AnchorEmbedError(f"{model}: not a run folder (no model.safetensors)")
    if buckets < 1:
        raise AnchorEmbedError(f"--buckets {buckets}: at least 1")
    media = str(Path(media_root).resolve() if media_root else Path(streamers).resolve().parent)
    made = {"model_dir": str(model), "model_hash": model_hash(model), "streamers": str(streamers),
            "media_root": media, "columns": columns or {}}
    made["fingerprint"] = fingerprint(**made)
    _claim(out, made, overwrite)
    # a row's place in the input, as one process reads it: its file (part files in name order), then its row
    df = (_read_records(spark, str(streamers), columns).withColumn("_file", F.input_file_name())
          .withColumn("_order", F.monotonically_increasing_id()))
    schema = "anchor_id string, vector array<float>, model_id string, error string, _file string, _order long"
    done = df.mapInArrow(_embed_fn(str(model), media, columns, batch_size), schema).cache()
    bad = done.where(F.col("error").isNotNull())
    n_bad = bad.count()
    if n_bad and strict:
        first = bad.orderBy("_file", "_order").first()
        raise AnchorEmbedError(f"{streamers}: record {first['anchor_id']!r}: {first['error']}")
    if n_bad:
        first = bad.orderBy("_file", "_order").first()
        say(f"[yellow]spark embed[/]: {n_bad} bad record(s) skipped; first {first['anchor_id']!r}: {first['error']}")
    # an anchor_id's first valid row is kept and later ones are skipped, as `embed` (one process) keeps them
    ranked = done.where(F.col("error").isNull()).withColumn(
        "_rank", F.row_number().over(Window.partitionBy("anchor_id").orderBy("_file", "_order")))
    again = ranked.where("_rank > 1")
    n_again = again.count()
    if n_again:
        first = again.orderBy("_file", "_order").limit(5).collect()
        if strict:
            raise AnchorEmbedError(f"{streamers}: duplicate anchor_id {first[0]['anchor_id']!r} (--strict stops at "
                                   "the first bad row)")
        say(f"[yellow]spark embed[/]: {n_again} later row(s) of a repeated anchor_id skipped, the first of each kept "
            "(e.g. " + ", ".join(repr(r["anchor_id"]) for r in first) + ")")
    vectors = (ranked.where("_rank = 1").drop("error", "_file", "_order", "_rank")
               .withColumn("bucket", F.pmod(F.xxhash64("anchor_id"), F.lit(buckets)).cast("int")))
    vectors.repartition(buckets, "bucket").write.mode("overwrite").partitionBy("bucket").parquet(str(out))
    count = spark.read.parquet(str(out)).count()
    done.unpersist()
    if count == 0:
        raise AnchorEmbedError(f"{streamers}: no valid streamer records ({n_bad} bad)")
    meta = {**made, "count": count, "skipped": n_bad + n_again, "buckets": buckets, "normalized": True}
    atomic.write_json(out / META, meta)
    say(f"[bold]spark embed[/]: {count} vectors written to {out} ({n_bad} bad records, {n_again} repeats skipped)")
    return meta


def _claim(out: Path, made: dict, overwrite: bool) -> None:
    """Refuse to write over vectors made from other inputs unless `overwrite`."""
    f = out / META
    if f.is_file() and not overwrite:
        from anchor_embed.fingerprint import refuse_other_origin

        refuse_other_origin(out, json.loads(f.read_text()), made)
    elif out.exists() and not f.is_file() and any(out.iterdir()) and not overwrite:
        raise AnchorEmbedError(f"{out}: not empty and not made by spark embed; pass --overwrite or choose another --out")


def _read_vectors(spark, vectors: str | Path):
    """A vectors table (spark embed's output, or `export --format parquet`) with its row count."""
    try:
        df = spark.read.parquet(str(vectors))
    except Exception as exc:
        raise AnchorEmbedError(f"{vectors}: not a readable Parquet table ({java_reason(exc)})") from None
    missing = {"anchor_id", "vector"} - set(df.columns)
    if missing:
        raise AnchorEmbedError(f"{vectors}: no {', '.join(sorted(missing))} column(s); columns: {df.columns}")
    df = df.select("anchor_id", "vector")
    n = df.count()
    if n == 0:
        raise AnchorEmbedError(f"{vectors}: holds no vectors")
    return df, n


def _centroids(df, n: int, clusters: int, sample: int, seed: int) -> np.ndarray:
    """Spherical k-means centroids fitted on the driver, on a seeded sample ordered by anchor_id."""
    from anchor_embed.vectorspace import centroid_index

    frac = min(1.0, sample / n)
    part = df if frac >= 1.0 else df.sample(fraction=frac, seed=seed)
    rows = part.orderBy("anchor_id").toPandas()
    x = np.stack(rows["vector"].to_numpy()).astype(np.float32)
    index = centroid_index(x, clusters, seed)
    return index.reconstruct_n(0, index.ntotal)


def _assign_fn(centroids: Any, assign: int, with_vector: bool) -> Callable[[Iterator], Iterator]:
    """Executor side: each row's `assign` nearest centroids (inner product) from the broadcast matrix."""
    def fn(batches: Iterator) -> Iterator:
        import pyarrow as pa

        c = centroids.value
        for batch in batches:
            if batch.num_rows == 0:
                continue
            ids = batch.column("anchor_id")
            vec = batch.column("vector")
            x = np.asarray(vec.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(batch.num_rows, -1)
            sims = x @ c.T
            top = np.argsort(-sims, axis=1, kind="stable")[:, :assign]
            rows = np.repeat(np.arange(batch.num_rows), top.shape[1])
            cols = {"cluster": pa.array(top.ravel().astype(np.int32)), "anchor_id": ids.take(pa.array(rows)),
                    "distance": pa.array((1.0 - sims[rows, top.ravel()]).astype(np.float32))}
            if with_vector:
                cols["vector"] = vec.take(pa.array(rows))
            yield pa.RecordBatch.from_pydict(cols)
    return fn


def _edges_fn(threshold: float) -> Callable:
    """Executor side: every pair at or above the threshold within one cluster (faiss range search)."""
    def fn(pdf):
        import pandas as pd

        from anchor_embed.serving.dedup import edges_above

        pdf = pdf.sort_values("anchor_id")
        x = np.stack(pdf["vector"].to_numpy()).astype(np.float32)
        ids = pdf["anchor_id"].to_numpy()
        s, d, v = edges_above(x, threshold)
        return pd.DataFrame({"src": ids[s], "dst": ids[d], "sim": v.astype(np.float32)})
    return fn


def dedup(spark, vectors: str | Path, threshold: float = 0.95, out: str | Path | None = None, clusters: int = 0,
          assign: int = 2, linkage: Literal["single", "complete"] = "single", max_group_size: int = 0,
          reviewed: str | Path | None = None, sample: int = 200_000, seed: int = 0) -> list[dict]:
    """SemDeDup at scale: centroids on a driver sample, range search inside each cluster in the executors,
    groups of the (small) edge table on the driver by the same code as `dedup`."""
    from pyspark.sql import functions as F

    from anchor_embed.serving.dedup import check_flags, groups_from_edges, say_unapplied, write_groups

    check_flags(threshold, clusters, assign, max_group_size)
    df, n = _read_vectors(spark, vectors)
    if clusters > 1:
        cent = spark.sparkContext.broadcast(_centroids(df, n, clusters, sample, seed))
        keyed = df.mapInArrow(_assign_fn(cent, assign, True),
                              "cluster int, anchor_id string, distance float, vector array<float>").drop("distance")
    else:                                     # exact: one cluster holds everyone
        keyed = df.withColumn("cluster", F.lit(0))
    edges = (keyed.groupBy("cluster").applyInPandas(_edges_fn(threshold), "src string, dst string, sim float")
             .dropDuplicates(["src", "dst"]).toPandas())
    pairs: list[tuple[str, str]] = list(zip(edges["src"], edges["dst"], strict=True))
    yes, no = [], []
    if reviewed:
        from anchor_embed.serving.review import read_reviews

        yes, no = read_reviews(reviewed)
        named = sorted({a for p in [*yes, *no] for a in p})
        if named:                               # which of them the vectors hold: a join of a small table
            asked = spark.createDataFrame([(a,) for a in named], "anchor_id string")
            found = set(df.join(F.broadcast(asked), "anchor_id").select("anchor_id").toPandas()["anchor_id"])
            say_unapplied("spark dedup", vectors, [*yes, *no], found)
    nodes = sorted({a for p in pairs for a in p} | {a for p in yes for a in p})
    if nodes:
        wanted = spark.createDataFrame([(a,) for a in nodes], "anchor_id string")
        got = df.join(F.broadcast(wanted), "anchor_id").orderBy("anchor_id").toPandas()
        nodes = got["anchor_id"].tolist()
        x = np.stack(got["vector"].to_numpy()).astype(np.float32)
    else:
        x = np.zeros((0, 1), np.float32)
    pos = {a: i for i, a in enumerate(nodes)}
    src = np.array([pos[a] for a, _ in pairs], np.int64)
    dst = np.array([pos[b] for _, b in pairs], np.int64)
    confirmed = {tuple(sorted(pos[k] for k in p)) for p in yes if all(k in pos for k in p)}
    rejected = {tuple(sorted(pos[k] for k in p)) for p in no if all(k in pos for k in p)}
    groups = groups_from_edges(x, src, dst, threshold, linkage, max_group_size, confirmed, rejected, seed)
    out = Path(out) if out else Path(vectors) / f"_dedup-{threshold}.jsonl"
    say(f"[bold]spark dedup[/]: {len(pairs)} pairs at cosine >= {threshold} among {n} streamers"
        + (f" searched within {clusters} clusters (each streamer in {assign})" if clusters > 1 else ""))
    return write_groups(groups, nodes, threshold, linkage, out)


def scatter(spark, vectors: str | Path, clusters: int = 100, out: str | Path | None = None, seed: int = 0,
            sample: int = 200_000) -> dict:
    """A cluster id per streamer: centroids on a driver sample, assignment in the executors, Parquet out."""
    if clusters < 1:
        raise AnchorEmbedError(f"--clusters {clusters}: at least 1")
    df, n = _read_vectors(spark, vectors)
    if clusters > n:
        say(f"[yellow]spark scatter[/]: --clusters {clusters} > {n} streamers: {n} clusters instead")
    cent = spark.sparkContext.broadcast(_centroids(df, n, clusters, sample, seed))
    rows = df.mapInArrow(_assign_fn(cent, 1, False), "cluster int, anchor_id string, distance float")
    out = Path(out) if out else Path(vectors) / "_clusters"
    rows.select("anchor_id", "cluster", "distance").write.mode("overwrite").parquet(str(out))
    sizes = spark.read.parquet(str(out)).groupBy("cluster").count().toPandas()["count"].to_numpy()
    meta = {"vectors": str(vectors), "clusters": int(len(sizes)), "count": int(sizes.sum()), "seed": seed,
            "sample": min(sample, n)}
    atomic.write_json(out / META, meta)
    say(f"[bold]spark scatter[/]: {len(sizes)} clusters over {int(sizes.sum())} streamers; sizes min {sizes.min()}, "
        f"median {int(np.median(sizes))}, max {sizes.max()}; written to {out}")
    return meta
