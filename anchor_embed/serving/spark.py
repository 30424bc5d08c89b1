"""Batch jobs on Spark: embed, dedup and scatter where a platform's tables live (pyspark, optional extra).

The same code runs in local mode (tests, one box) and under `spark-submit` on a cluster. Executors load the
model and its backbones once per Python worker (`_model` keeps them) and work on Arrow batches
(`mapInArrow`); the driver only fits small things (k-means centroids on a sample) and joins the edge table.
Vectors are Parquet (`anchor_id`, `vector` array<float>, `model_id`), bucketed by a hash of the id so a
re-read of a slice touches few files; `_anchor_embed.json` beside them records what made them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.progress import say
from anchor_embed.serving.spark_session import java_reason, session  # noqa: F401  (spark.session: the CLI's)

_MODELS: dict[str, Any] = {}     # run path -> loaded Model, one per executor Python worker


def _model(run: str, adapter: str | None = None, features: str | None = None):
    """The run's Model (with an `adapt` run's patch, copying atoms from `features` when given), loaded once in
    this Python worker."""
    key = f"{run}|{adapter}|{features}"
    if key not in _MODELS:
        from anchor_embed.serving.encoder import load

        model = load(run)
        if adapter:
            from anchor_embed.training.adapt import load_adapted

            model.net = load_adapted(adapter, run)[0].eval()     # the base as the driver checked it
        if features:
            model.cache = Path(features)
        if model.cache is not None and not model.cache.is_dir():   # a cluster node without the run's cache
            model.cache = None
        _MODELS[key] = model
    return _MODELS[key]


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
    from anchor_embed.data.records import check_columns

    check_columns(path, df.columns, columns)
    return df


def _input_listing(spark, df) -> str:
    """A digest of the files a table reads: each one's path, length and modification time from its file
    system (local, HDFS, S3 alike), so a changed input is noticed without reading terabytes on the driver."""
    import hashlib

    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()
    h = hashlib.blake2b(digest_size=16)
    for f in sorted(df.inputFiles()):
        path = jvm.org.apache.hadoop.fs.Path(f)
        st = path.getFileSystem(conf).getFileStatus(path)
        h.update(f"{f}:{st.getLen()}:{st.getModificationTime()}\n".encode())
    return h.hexdigest()


def _embed_fn(run: str, media_root: str, columns: dict[str, str] | None, batch_size: int, strict: bool,
              model_id: str, adapter: str | None = None,
              features: str | None = None) -> Callable[[Iterator], Iterator]:
    """The executor side of embed: Arrow batches of records in (each with its place in the input: `_file`,
    `_order`), (anchor_id, vector, model_id, kind, error, _file, _order) out; a blank JSONL line is no record
    (as `embed` reads it), and under `strict` a frame that is not under the media root is a bad row. `model_id`
    is the identity the driver recorded (the patched model's under an adapter), not re-hashed per worker."""
    def fn(batches: Iterator) -> Iterator:
        import pyarrow as pa

        from anchor_embed.data.media import frame_problem
        from anchor_embed.data.records import column_fields, parse_line, parse_row, rename_fields

        model = _model(run, adapter, features)
        wanted = column_fields(columns)
        for batch in batches:
            good, ids, order = [], [], []
            errors: list[tuple[str, str, str]] = []
            bad_order = []
            for raw in batch.to_pylist():
                at = (raw.pop("_file"), raw.pop("_order"))
                line = raw["value"] if "value" in raw and len(raw) == 1 else None   # a JSONL line
                if line is not None and not line.strip():
                    continue
                if line is not None and line.startswith("\ufeff"):   # a byte-order mark opens some exports
                    line = line[1:]
                row = parse_line(line) if line is not None else {wanted[k]: v for k, v in raw.items() if k in wanted}
                if line is not None and columns and isinstance(row, dict):     # as `embed` reads JSONL
                    row = rename_fields(row, columns)
                rec = parse_row(row)
                if not isinstance(rec, tuple) and strict:
                    why = next(((f, w) for f in rec.frames if (w := frame_problem(f, Path(media_root)))), None)
                    if why:
                        rec = ("missing frame", f"frame {why[0]!r} {why[1]}")
                if isinstance(rec, tuple):                   # (kind, message), as read_streamers reports it
                    who = row.get("anchor_id") if isinstance(row, dict) else None
                    errors.append((str(who if who not in (None, "") else "")[:60], *rec))
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
                "anchor_id": ids + [a for a, _, _ in errors],
                "vector": [vecs[at_row[first[a]]].tolist() for a in ids] + [None] * n_err,
                "model_id": [model_id] * (len(ids) + n_err),
                "kind": [None] * len(ids) + [k for _, k, _ in errors],
                "error": [None] * len(ids) + [e for _, _, e in errors],
                "_file": [f for f, _ in order + bad_order],
                "_order": [o for _, o in order + bad_order],
            }, schema=pa.schema([("anchor_id", pa.string()), ("vector", pa.list_(pa.float32())),
                                 ("model_id", pa.string()), ("kind", pa.string()), ("error", pa.string()),
                                 ("_file", pa.string()), ("_order", pa.int64())]))
    return fn


def _places(df, rows: list, jsonl: bool) -> list[str]:
    """Where each of a few rows (with `_file`, `_order`) sits in its input, in `embed`'s words ('line 7',
    'part-1.parquet row 3'): one pass counting the rows before each in its file (Spark's row ids are
    increasing within a file, not consecutive)."""
    from pyspark.sql import functions as F

    if not rows:
        return []
    counts = df.select("_file", "_order").agg(*[
        F.sum(F.when((F.col("_file") == r["_file"]) & (F.col("_order") < r["_order"]), 1).otherwise(0))
        for r in rows]).first()
    several = len({r["_file"] for r in rows}) > 1 or len(df.inputFiles()) > 1
    word = "line" if jsonl else "row"
    return [(f"{Path(r['_file']).name} " if several else "") + f"{word} {int(n or 0) + 1}"
            for r, n in zip(rows, counts, strict=True)]


def _report_bad(df, bad, n_bad: int, streamers, jsonl: bool, strict: bool, limit: int = 5) -> None:
    """Bad rows as `embed` reports them: the first stops a --strict run; otherwise a count by kind and the
    first `limit` by file and line."""
    from pyspark.sql import functions as F
    from rich.markup import escape

    first = bad.orderBy("_file", "_order").limit(1 if strict else limit).collect()
    where = _places(df, first, jsonl)
    if strict:
        raise AnchorEmbedError(f"{streamers}: {where[0]}: {first[0]['error']} (--strict stops at the first bad row)")
    kinds = bad.groupBy("kind").agg(F.count("*").alias("n")).orderBy(F.desc("n"), "kind").collect()
    say(f"[yellow]spark embed[/]: {escape(str(streamers))}: {n_bad} bad record(s) skipped ("
        + ", ".join(f"{r['n']} {r['kind']}" for r in kinds) + ")")
    for w, r in zip(where, first, strict=True):
        say(escape(f"  skipped {streamers}: {w}: {r['error']}"))
    if n_bad > limit:
        say(f"  ... and {n_bad - limit} more (--strict stops at the first)")


def embed(spark, model: str | Path, streamers: str | Path, out: str | Path, media_root: str | Path | None = None,
          columns: dict[str, str] | None = None, strict: bool = False, buckets: int = 16, batch_size: int = 512,
          overwrite: bool = False, adapter: str | Path | None = None, features: str | Path | None = None) -> dict:
    """Vectors of every streamer of a table, computed in the executors, written as bucketed Parquet; `out`
    is replaced only when the job succeeded. `adapter` (an `adapt` run of `model`) and `features` (a cache
    to copy encoded atoms from) as `embed` takes them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from anchor_embed.data.records import check_fields
    from anchor_embed.fingerprint import adapter_digest, fingerprint
    from anchor_embed.model.store import model_hash
    from anchor_embed.serving.spark_out import Folder, claim, held, read_meta, write_whole

    model = Path(model).resolve()
    if not (model / "model.safetensors").is_file():
        raise AnchorEmbedError(f"{model}: not a run folder (no model.safetensors)")
    if buckets < 1:
        raise AnchorEmbedError(f"--buckets {buckets}: at least 1")
    check_fields(columns)
    if features is not None:
        from anchor_embed.features.cache import open_cache

        open_cache(features)        # a donor that is not a cache would be ignored and everything encoded again
        features = Path(features).resolve()
    if adapter is not None:         # the run's model with a patch from `adapt` (its base must be `model`)
        from anchor_embed.training.adapt import load_adapted_of

        adapter = Path(adapter).resolve()
        if load_adapted_of(adapter, model)[1]["mode"] == "head":     # as embed: the base's vectors, its hash
            say(f"[yellow]spark embed[/]: {adapter} is a --mode head run: its vectors are the base's; embedding "
                "without the adapter")
            adapter = None
    media = str(Path(media_root).resolve() if media_root else Path(streamers).resolve().parent)
    read = _read_records(spark, str(streamers), columns)
    jsonl = "value" in read.columns and len(read.columns) == 1
    made = {"model_dir": str(model), "model_hash": model_hash(model), "streamers": str(streamers),
            "inputs": _input_listing(spark, read), "media_root": media, "columns": columns or {}}
    if adapter is not None:         # patched vectors are another model's: indexes and servers check this hash
        from anchor_embed.training.adapt import adapted_hash

        made["adapter"] = adapter_digest(adapter)
        made["model_hash"] = adapted_hash(made["model_hash"], adapter)
    made["fingerprint"] = fingerprint(**made)
    where = Folder(spark, str(out))
    with held(where, "embed"):     # one job at a time on an output folder
        claim(where, "embed", made, overwrite, [Folder(spark, str(streamers)), Folder(spark, str(model))])
        # a row's place in the input, as one process reads it: its file (part files in name order), then its row
        df = read.withColumn("_file", F.input_file_name()).withColumn("_order", F.monotonically_increasing_id())
        schema = ("anchor_id string, vector array<float>, model_id string, kind string, error string, _file string, "
                  "_order long")
        done = df.mapInArrow(_embed_fn(str(model), media, columns, batch_size, strict, made["model_hash"],
                                       str(adapter) if adapter else None, str(features) if features else None),
                             schema).cache()
        bad = done.where(F.col("error").isNotNull())
        n_bad = bad.count()
        if n_bad:
            _report_bad(df, bad, n_bad, streamers, jsonl, strict)
        # an anchor_id's first valid row is kept and later ones are skipped, as `embed` (one process) keeps them
        ranked = done.where(F.col("error").isNull()).withColumn(
            "_rank", F.row_number().over(Window.partitionBy("anchor_id").orderBy("_file", "_order")))
        again = ranked.where("_rank > 1")
        n_again = again.count()
        if n_again:
            first = again.orderBy("_file", "_order").limit(5).collect()
            if strict:
                where = _places(df, first[:1], jsonl)[0]
                raise AnchorEmbedError(f"{streamers}: {where}: duplicate anchor_id '{first[0]['anchor_id']}' (--strict "
                                       "stops at the first bad row)")
            say(f"[yellow]spark embed[/]: {n_again} later row(s) of a repeated anchor_id skipped, the first of each kept "
                "(e.g. " + ", ".join(repr(r["anchor_id"]) for r in first) + ")")
        vectors = (ranked.where("_rank = 1").drop("kind", "error", "_file", "_order", "_rank")
                   .withColumn("bucket", F.pmod(F.xxhash64("anchor_id"), F.lit(buckets)).cast("int")))
        count = vectors.count()
        if count == 0:
            done.unpersist()
            raise AnchorEmbedError(f"{streamers}: no valid streamer records ({n_bad} bad); {out} left as it was")
        meta = {**made, "count": count, "skipped": n_bad + n_again, "buckets": buckets, "normalized": True}
        # other vectors than the folder held: what dedup and scatter made from those goes with them, as in `embed`
        replaced = (read_meta(where) or {}).get("fingerprint") != made["fingerprint"]
        write_whole(where, "embed", lambda path: vectors.repartition(buckets, "bucket").write.partitionBy("bucket")
                    .parquet(path), meta, drop=_derived(where) if replaced else ())
        done.unpersist()
        say(f"[bold]spark embed[/]: {count} vectors written to {out} ({n_bad} bad records, {n_again} repeats skipped)")
        return {"job": "embed", **meta}


def _derived(where) -> list[str]:
    """What spark dedup and scatter wrote into a spark embed folder by default, made from its vectors:
    `_dedup-T.jsonl` told as `embed` tells `dedup-T.jsonl` (by name and first line), the `_clusters` table by the
    record spark scatter left in it."""
    from anchor_embed.serving.embed import derived
    from anchor_embed.serving.output_file import is_output
    from anchor_embed.serving.spark_out import _job_of, read_meta

    names = where.names()
    here = Path(where.path.toUri().getPath()) if where.uri.startswith("file:") else None    # dedup's are local
    files = derived(names, lambda n, fields: here is not None and is_output(here / n, fields), prefix="_")
    tables = [n for n in names if n == "_clusters" and (m := read_meta(where.child(n))) is not None
              and _job_of(m) == "scatter"]
    return sorted(files + tables)


def _read_vectors(spark, vectors: str | Path):
    """A vectors table (spark embed's output, or `export --format parquet`) with its row count."""
    if (Path(vectors) / "vectors.npy").is_file():
        raise AnchorEmbedError(f"{vectors}: a vectors folder of `embed`, not a Parquet table: run the one-box "
                               "command, or `anchor-embed export` it with --format parquet first")
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


def _centroids(df, n: int, clusters: int, sample: int, seed: int) -> tuple[np.ndarray, int]:
    """Spherical k-means centroids fitted on the driver, on a seeded sample ordered by anchor_id (at most one
    per sampled vector), and the sample's size."""
    from anchor_embed.vectorspace import centroid_index

    frac = min(1.0, sample / n)
    part = df if frac >= 1.0 else df.sample(fraction=frac, seed=seed)
    rows = part.orderBy("anchor_id").toPandas()
    x = np.stack(rows["vector"].to_numpy()).astype(np.float32)
    index = centroid_index(x, clusters, seed)
    return index.reconstruct_n(0, index.ntotal), len(x)


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
          reviewed: str | Path | None = None, sample: int = 200_000, seed: int = 0,
          overwrite: bool = False) -> list[dict]:
    """SemDeDup at scale: centroids on a driver sample, range search inside each cluster in the executors,
    groups of the (small) edge table on the driver by the same code as `dedup` (and its --out rule)."""
    from pyspark.sql import functions as F

    from anchor_embed.serving.dedup import (
        capped_clusters,
        check_flags,
        default_name,
        groups_from_edges,
        say_assign_cap,
        say_unapplied,
        settings,
        write_groups,
    )
    from anchor_embed.serving.output_file import claim

    check_flags(threshold, clusters, assign, max_group_size)
    out = Path(out) if out else _local(_beside(spark, vectors, default_name(threshold)))
    if out.parent.exists() and not out.parent.is_dir():
        raise AnchorEmbedError(f"--out {out}: its parent is not a folder; give a file path")
    made_from = _vectors_fingerprint(spark, vectors)
    df, n = _read_vectors(spark, vectors)
    clusters = capped_clusters(clusters, n, "spark dedup")
    say_assign_cap("spark dedup", assign, clusters)
    yes, no, found = [], [], set()
    if reviewed:
        from anchor_embed.serving.review import read_reviews

        yes, no = read_reviews(reviewed)
        named = sorted({a for p in [*yes, *no] for a in p})
        if named:                               # which of them the vectors hold: a join of a small table
            asked = spark.createDataFrame([(a,) for a in named], "anchor_id string")
            found = set(df.join(F.broadcast(asked), "anchor_id").select("anchor_id").toPandas()["anchor_id"])
            say_unapplied("spark dedup", vectors, [*yes, *no], found)
    made_with = settings(threshold, linkage, clusters, assign, max_group_size, yes, no, found)
    claim(out, "dedup", ("group", "representative", "members"), overwrite, made_from, made_with)
    if clusters > 1:
        cent = spark.sparkContext.broadcast(_centroids(df, n, clusters, sample, seed)[0])
        keyed = df.mapInArrow(_assign_fn(cent, assign, True),
                              "cluster int, anchor_id string, distance float, vector array<float>").drop("distance")
    else:                                     # exact: one cluster holds everyone
        keyed = df.withColumn("cluster", F.lit(0))
    edges = (keyed.groupBy("cluster").applyInPandas(_edges_fn(threshold), "src string, dst string, sim float")
             .dropDuplicates(["src", "dst"]).toPandas())
    pairs: list[tuple[str, str]] = list(zip(edges["src"], edges["dst"], strict=True))
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
    say(f"[bold]spark dedup[/]: {len(pairs)} pairs at cosine >= {threshold} among {n} streamers"
        + (f" searched within {clusters} clusters (each streamer in {assign})" if clusters > 1 else ""))
    return write_groups(groups, nodes, threshold, linkage, out, made_from, made_with)


def _vectors_fingerprint(spark, vectors: str | Path) -> str | None:
    """The fingerprint `spark embed` recorded for a vectors table, None for one it did not write (an export)."""
    from anchor_embed.serving.spark_out import Folder, read_meta
    from anchor_embed.serving.vectors import vectors_id

    v = Folder(spark, str(vectors))
    return vectors_id(read_meta(v) or {}) if v.is_dir() else None


def _local(f) -> Path:
    """A driver-side path for a Folder (dedup's groups are written by the driver, as `dedup` writes them)."""
    if not f.uri.startswith("file:"):
        raise AnchorEmbedError(f"{f.given}: not on this machine; give --out (a local file) for the groups")
    return Path(f.path.toUri().getPath())


def _beside(spark, vectors: str | Path, name: str):
    """Where a job's default output goes: inside a vectors folder as `_NAME` (Spark readers skip it), beside a
    vectors file (`export`'s .parquet) as `STEM_NAME`."""
    from anchor_embed.serving.spark_out import Folder

    v = Folder(spark, str(vectors))
    if v.is_dir() or not v.exists():
        return v.child(f"_{name}")
    return v.sibling(f"{Path(v.path.getName()).stem}_{name}")


def scatter(spark, vectors: str | Path, clusters: int = 100, out: str | Path | None = None, seed: int = 0,
            sample: int = 200_000) -> dict:
    """A cluster id per streamer: centroids on a driver sample, assignment in the executors, Parquet out
    (replaced whole when the job succeeded; never over its own input or a folder of other files)."""
    from anchor_embed.serving.spark_out import Folder, claim, held, write_whole

    if clusters < 1:
        raise AnchorEmbedError(f"--clusters {clusters}: at least 1")
    where = Folder(spark, str(out)) if out else _beside(spark, vectors, "clusters")
    out = where.given
    with held(where, "scatter"):     # one job at a time on an output folder
        claim(where, "scatter", None, True, [Folder(spark, str(vectors))])
        df, n = _read_vectors(spark, vectors)
        centroids, fit_on = _centroids(df, n, clusters, sample, seed)
        if len(centroids) < clusters:
            say(f"[yellow]spark scatter[/]: --clusters {clusters}: {len(centroids)} fitted, on the "
                + (f"{n} streamers there are" if fit_on == n else
                   f"{fit_on} vectors sampled of {n} (--sample {sample}; raise it for more)"))
        cent = spark.sparkContext.broadcast(centroids)
        rows = df.mapInArrow(_assign_fn(cent, 1, False), "cluster int, anchor_id string, distance float")
        table = rows.select("anchor_id", "cluster", "distance").cache()
        sizes = table.groupBy("cluster").count().toPandas()["count"].to_numpy()
        fitted = len(centroids)
        meta = {"vectors": str(vectors), "clusters": int(len(sizes)), "count": int(sizes.sum()), "seed": seed,
                "sample": fit_on}
        write_whole(where, "scatter", lambda path: table.write.parquet(path), meta)
        table.unpersist()
        say(f"[bold]spark scatter[/]: {len(sizes)} clusters over {int(sizes.sum())} streamers; sizes min {sizes.min()}, "
            f"median {int(np.median(sizes))}, max {sizes.max()}; written to {out}")
        if len(sizes) < fitted:
            say(f"[yellow]spark scatter[/]: {fitted - len(sizes)} of the {fitted} centroids k-means fitted won no "
                "streamer (near-identical centroids); ask fewer --clusters")
        return {"job": "scatter", **meta}
