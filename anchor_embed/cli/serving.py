"""Commands of serving and batch jobs: embed, predict, index build, similar, dedup, scatter.

Plain functions (registered on the app by `anchor_embed.cli.app`); `similar` by id never imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from typer.core import TyperGroup

from anchor_embed.serving.index import KINDS as INDEX_KINDS
from anchor_embed.serving.index import SERVED_K

IndexKind = Literal[INDEX_KINDS]


def embed(
    model: Annotated[Path, typer.Option(help="Run folder (pretrain or transfer).")],
    streamers: Annotated[Path, typer.Option(help="Streamer records: JSONL, Parquet, a folder or glob of Parquet parts.")],
    out: Annotated[Path, typer.Option(help="Vectors folder.")],
    media_root: Annotated[Path | None, typer.Option(help="Root of frame paths (default: the records' folder).")] = None,
    dtype: Annotated[Literal["float32", "float16"], typer.Option(help="Stored vector type.")] = "float32",
    shard: Annotated[str, typer.Option(help="i/n: this shard of n (it reads only its rows); merged when all are done.")] = "0/1",
    features: Annotated[Path | None, typer.Option(help="A feature cache to copy encoded atoms from (default: the model's).")] = None,
    id_column: Annotated[str | None, typer.Option(help="Column holding the anchor_id in Parquet input (default: anchor_id).")] = None,
    columns: Annotated[str | None, typer.Option(help="Record fields from other column names: field=column,... (default: the field names).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace vectors in --out made from other inputs.")] = False,
    adapter: Annotated[Path | None, typer.Option(help="An `adapt` run: the model with its patch (default: none).")] = None,
    device: Annotated[Literal["auto", "cpu", "cuda", "mps"], typer.Option(help="Where to compute (auto: CUDA when present).")] = "auto",
    strict: Annotated[bool, typer.Option(help="Stop at the first bad row or missing frame instead of skipping it.")] = False,
) -> None:
    """Vectors for every streamer, in resumable shards with done markers."""
    from anchor_embed.cli.pipeline import parse_columns
    from anchor_embed.serving.embed import embed as run

    run(model=model, streamers=streamers, out=out, media_root=media_root, dtype=dtype, shard=shard, strict=strict,
        features=features, columns=parse_columns(columns, id_column), overwrite=overwrite, adapter=adapter,
        device=device)


def predict(
    adapter: Annotated[Path, typer.Option(help="An `adapt` run: its head predicts the label it learned.")],
    vectors: Annotated[Path, typer.Option(help="Vectors folder made by `embed` or `spark embed` (with --adapter ADAPTER unless a --mode head run).")],
    out: Annotated[Path, typer.Option(help="Output JSONL: anchor_id, prediction (probability for classes), model_id (the adapt run's identity: its base's weights and its patch and head).")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out that is no predict output.")] = False,
) -> None:
    """An adapt run's label (class and probability, or number) for every streamer of a vectors folder."""
    from anchor_embed.serving.predict import predict as run

    run(adapter=adapter, vectors=vectors, out=out, overwrite=overwrite)


def serve(
    index: Annotated[Path, typer.Option(envvar="ANCHOR_EMBED_INDEX", help="Index folder to serve.")] = Path("index"),
    model: Annotated[Path | None, typer.Option(help="Run folder for POST /embed (default: /embed is off).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless told otherwise).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    token: Annotated[str | None, typer.Option(envvar="ANCHOR_EMBED_TOKEN", help="Require this bearer token (default: none); open the review page as /#token=T.")] = None,
    media_root: Annotated[Path | None, typer.Option(help="Frames served to the page only from under here (default: the embed's media root).")] = None,
    review_log: Annotated[Path | None, typer.Option(help="Review marks appended here (default: INDEX/reviews.jsonl).")] = None,
    max_ids: Annotated[int, typer.Option(min=1, help="Most ids one POST /similar takes (more: HTTP 413).")] = 1000,
    max_records: Annotated[int, typer.Option(min=1, help="Most records one POST /embed takes (more: HTTP 413).")] = 1000,
    max_neighbours: Annotated[int, typer.Option(min=1, help="Most neighbours (ids x k) one lookup asks for (more: HTTP 413).")] = 50_000,
    workers: Annotated[int, typer.Option(min=1, help="Requests searching or embedding at once, sharing the cores' threads; the rest wait.")] = 1,
) -> None:
    """HTTP server: /similar, /embed, /healthz, /metrics, /docs, and a review page at /."""
    import os

    from anchor_embed.serving.server import serve as run

    if token is None and os.environ.get("ANCHOR_EMBED_TOKEN") == "":
        token = ""          # click reads an empty variable as unset (no token): the server refuses it in one line
    run(index=index, model=model, host=host, port=port, token=token, media_root=media_root, review_log=review_log,
        max_ids=max_ids, max_records=max_records, max_neighbours=max_neighbours, workers=workers)


def export(
    vectors: Annotated[Path, typer.Argument(help="Vectors folder made by `embed`.")],
    out: Annotated[Path, typer.Option(help="Output file: .parquet, or .npy (keys beside it as .keys.txt).")],
    format: Annotated[Literal["parquet", "npy"] | None, typer.Option(
        help="File format (default: --out's suffix; must agree with it).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file (and its .keys.txt).")] = False,
) -> None:
    """Vectors with their ids as one file for warehouses and notebooks."""
    from anchor_embed.serving.export import export as run

    run(vectors=vectors, out=out, format=format, overwrite=overwrite)


def index_build(
    vectors: Annotated[Path, typer.Argument(help="Vectors folder made by `embed`.")],
    out: Annotated[Path, typer.Option(help="Index folder.")],
    memory_budget: Annotated[str, typer.Option(help="e.g. 512MB, 2GB: picks exact, IVF-Flat or IVF-PQ.")] = "2GB",
    kind: Annotated[IndexKind | None, typer.Option(help="Force an index kind (default: picked by size and --memory-budget).")] = None,
    min_recall: Annotated[float, typer.Option(min=0.0, max=1.0, help="Recall at --k the search setting is tuned to reach (measured as `similar` answers: the streamer itself left out).")] = 0.95,
    model: Annotated[Path | None, typer.Option(help="Refuse vectors not made by this run folder (default: no check).")] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100_000, help="Neighbours a lookup asks for, which the recall is tuned at (default: similar's and serve's 20).")] = SERVED_K,
) -> None:
    """Build an index; records its recall at --k, 10 and 50 against exact search."""
    from anchor_embed.serving.index import build_index

    build_index(vectors=vectors, out=out, memory_budget=memory_budget, kind=kind, model=model, min_recall=min_recall,
                k=k)


def similar(
    anchor_ids: Annotated[list[str] | None, typer.Argument(help="Streamer ids to look up.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100_000, help="Neighbours per streamer.")] = 20,
    index: Annotated[Path, typer.Option(envvar="ANCHOR_EMBED_INDEX", help="Index folder.")] = Path("index"),
    ids_file: Annotated[Path | None, typer.Option(help="More ids, one a line (default: none).")] = None,
    record: Annotated[Path | None, typer.Option(help="Records of streamers not in the index, embedded now; an id given too is answered from its record (default: none).")] = None,
    media_root: Annotated[Path | None, typer.Option(help="Root of the records' frame paths (default: their folder).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    explain: Annotated[bool, typer.Option(help="Per neighbour: cosine of text-only, frames-only, tags-only vectors "
                                          "and the shared tags.")] = False,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad --record row (default: skip and name it).")] = False,
) -> None:
    """Top-k similar streamers. A lookup by id never imports torch. Unknown ids are listed with close ones
    to try (exit code 1); the known ones are still answered."""
    from anchor_embed.cli.lookup import run_similar

    code = run_similar(list(anchor_ids or []), k, index, ids_file, record, media_root, as_json, explain, strict)
    if code:
        raise typer.Exit(code)


# dedup's options, shared with `spark dedup`
Threshold = Annotated[float, typer.Option(help="Cosine at or above which two streamers are duplicates.")]
Clusters = Annotated[int, typer.Option(help="SemDeDup-style: search within k-means clusters (0 = exact).")]
Assign = Annotated[int, typer.Option(help="With --clusters: nearest clusters each streamer joins.")]
Linkage = Annotated[Literal["single", "complete"], typer.Option(
    help="single: chains of close pairs join; complete: every pair in a group reaches the threshold.")]
MaxGroupSize = Annotated[int, typer.Option(help="Split larger groups by stricter complete linkage (0 = no limit).")]
Reviewed = Annotated[Path | None, typer.Option(help="Review log of the serve page: same-owner pairs always grouped, "
                                               "not-related never (default: none).")]


def dedup(
    vectors: Annotated[Path, typer.Argument(help="Vectors folder made by `embed`.")],
    threshold: Threshold = 0.95,
    out: Annotated[Path | None, typer.Option(help="Output JSONL (default VECTORS/dedup-T.jsonl, e.g. dedup-0.95.jsonl, dedup-minus0.5.jsonl).")] = None,
    clusters: Clusters = 0,
    assign: Assign = 2,
    linkage: Linkage = "single",
    max_group_size: MaxGroupSize = 0,
    reviewed: Reviewed = None,
    memory_budget: Annotated[str | None, typer.Option(help="e.g. 4GB: when exact search needs more, search "
                                                      "within k-means clusters (default: no limit).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out that is no dedup output.")] = False,
) -> None:
    """Groups of near-duplicate streamers with a representative each."""
    from anchor_embed.serving.dedup import dedup as run

    run(vectors=vectors, threshold=threshold, out=out, clusters=clusters, assign=assign, linkage=linkage,
        max_group_size=max_group_size, reviewed=reviewed, memory_budget=memory_budget, overwrite=overwrite)


class AssignByDefault(TyperGroup):
    """`scatter VEC --clusters K` means `scatter assign VEC --clusters K`; `scatter rerank ...` stays a subcommand."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["assign", *args]
        return super().parse_args(ctx, args)


def scatter_assign(
    vectors: Annotated[Path, typer.Argument(help="Vectors folder made by `embed`.")],
    clusters: Annotated[int, typer.Option(min=1, help="Number of clusters.")] = 100,
    out: Annotated[Path | None, typer.Option(help="Output JSONL (default VECTORS/clusters.jsonl).")] = None,
    seed: int = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out that is no scatter output.")] = False,
) -> None:
    """A cluster id per streamer (spherical k-means) with its distance to the centroid."""
    from anchor_embed.serving.scatter import assign_clusters

    assign_clusters(vectors=vectors, clusters=clusters, out=out, seed=seed, overwrite=overwrite)


def scatter_rerank(
    list_file: Annotated[Path, typer.Argument(help="Ranked streamer ids, one a line.")],
    clusters_file: Annotated[Path, typer.Option("--clusters", help="clusters.jsonl from `scatter assign`, or a `spark scatter` output folder.")],
    window: Annotated[int, typer.Option(min=1, help="No two within this many positions share a cluster.")] = 3,
) -> None:
    """Reorder a ranked list so that near items differ in cluster, keeping the order otherwise."""
    from anchor_embed.serving.scatter import rerank_file

    for a in rerank_file(list_file, clusters_file, window):
        print(a)


index_app = typer.Typer(no_args_is_help=True, help="faiss indexes over vectors.")
index_app.callback()(lambda: None)  # a group even with one subcommand: `index build`
index_app.command("build")(index_build)

scatter_app = typer.Typer(cls=AssignByDefault, no_args_is_help=True,
                          help="Cluster ids (`scatter VEC --clusters K`), and reranking so neighbours differ.")
scatter_app.command("assign")(scatter_assign)
scatter_app.command("rerank")(scatter_rerank)
