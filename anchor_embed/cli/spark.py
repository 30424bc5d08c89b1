"""`anchor-embed spark embed|dedup|scatter`: the batch jobs on Spark, with the flags of their one-box commands
plus `--master`. Also a spark-submit entry: `spark-submit .../anchor_embed/cli/spark.py embed ...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from anchor_embed.cli.serving import Assign, Clusters, Linkage, MaxGroupSize, Reviewed, Threshold

Master = Annotated[str | None, typer.Option(help="Spark master URL (default: local[*], or spark-submit's).")]
Sample = Annotated[int, typer.Option(min=1, help="Vectors sampled to the driver to fit the k-means centroids.")]

app = typer.Typer(no_args_is_help=True, help="Batch jobs on Spark (pip install 'anchor-embed\\[spark]').")


@app.command("embed")
def embed(
    model: Annotated[Path, typer.Option(help="Run folder (pretrain or transfer).")],
    streamers: Annotated[str, typer.Option(help="Streamer table: Parquet (file, folder, glob) or JSONL.")],
    out: Annotated[Path, typer.Option(help="Vectors table: Parquet folder, bucketed by anchor_id.")],
    media_root: Annotated[Path | None, typer.Option(help="Root of frame paths, readable by every executor "
                                                    "(default: the records' folder).")] = None,
    id_column: Annotated[str | None, typer.Option(help="Column holding the anchor_id (default: anchor_id).")] = None,
    columns: Annotated[str | None, typer.Option(help="Record fields from other column names: field=column,... (default: the field names).")] = None,
    buckets: Annotated[int, typer.Option(min=1, help="Hash buckets of anchor_id the output is partitioned by.")] = 16,
    overwrite: Annotated[bool, typer.Option(help="Replace vectors in --out made from other inputs.")] = False,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad row (or missing frame) instead of skipping it.")] = False,
    adapter: Annotated[Path | None, typer.Option(help="An `adapt` run: the model with its patch (default: none).")] = None,
    features: Annotated[Path | None, typer.Option(help="A feature cache to copy encoded atoms from, readable by every "
                                                  "executor (default: the model's).")] = None,
    master: Master = None,
) -> None:
    """Vectors for every streamer, computed in the executors (model loaded once per worker). Vectors are stored
    as float32 (Parquet has no half type) and Spark splits the work, so embed's --dtype and --shard have no
    counterpart."""
    from anchor_embed.cli.pipeline import parse_columns
    from anchor_embed.serving import spark

    s = spark.session(master, "anchor-embed embed")
    spark.embed(s, model, streamers, out, media_root=media_root, columns=parse_columns(columns, id_column),
                strict=strict, buckets=buckets, overwrite=overwrite, adapter=adapter, features=features)


@app.command("dedup")
def dedup(
    vectors: Annotated[str, typer.Argument(help="Vectors table (Parquet: anchor_id, vector).")],
    threshold: Threshold = 0.95,
    out: Annotated[Path | None, typer.Option(help="Output JSONL (default VECTORS/_dedup-T.jsonl; beside a vectors file: STEM_dedup-T.jsonl).")] = None,
    clusters: Clusters = 0,
    sample: Sample = 200_000,
    assign: Assign = 2,
    linkage: Linkage = "single",
    max_group_size: MaxGroupSize = 0,
    reviewed: Reviewed = None,
    seed: int = 0,
    master: Master = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out that is no dedup output.")] = False,
) -> None:
    """Groups of near-duplicate streamers: range search per cluster in the executors."""
    from anchor_embed.serving import spark

    s = spark.session(master, "anchor-embed dedup")
    spark.dedup(s, vectors, threshold, out, clusters, assign, linkage, max_group_size, reviewed, sample, seed,
                overwrite)


@app.command("scatter")
def scatter(
    vectors: Annotated[str, typer.Argument(help="Vectors table (Parquet: anchor_id, vector).")],
    clusters: Annotated[int, typer.Option(min=1, help="Number of clusters.")] = 100,
    out: Annotated[Path | None, typer.Option(help="Output Parquet folder (default VECTORS/_clusters; beside a vectors file: STEM_clusters).")] = None,
    sample: Sample = 200_000,
    seed: int = 0,
    master: Master = None,
) -> None:
    """A cluster id per streamer (spherical k-means) with its distance to the centroid."""
    from anchor_embed.serving import spark

    s = spark.session(master, "anchor-embed scatter")
    spark.scatter(s, vectors, clusters, out, seed, sample)


def main() -> None:
    """spark-submit entry: the same commands and one-line errors as `anchor-embed spark`."""
    from anchor_embed.cli.app import main as run

    run(["spark", *__import__("sys").argv[1:]])


if __name__ == "__main__":
    main()
