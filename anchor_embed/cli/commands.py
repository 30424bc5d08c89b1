"""CLI commands. Heavy imports stay inside each command so start-up is cheap."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from anchor_embed.cli.app import app


@app.command()
def features(
    streamers: Annotated[Path, typer.Option(help="Streamer records (JSONL or Parquet).")],
    out: Annotated[Path, typer.Option(help="Cache folder (created; reused on later runs).")],
    media_root: Annotated[Path | None, typer.Option(help="Root of frame paths (default: the records' folder).")] = None,
    text_backbone: Annotated[str, typer.Option(help="'use', 'minilm', or a sentence-transformers name/path.")] = "use",
    image_backbone: Annotated[str, typer.Option(help="'efficientnet-lite0' or 'open_clip:MODEL[:TAG_OR_PATH]'.")] = "efficientnet-lite0",
    video_frames: Annotated[int, typer.Option(help="Frames sampled evenly from each video.")] = 4,
    max_texts: int = 16,
    max_frames: int = 8,
    max_tags: int = 16,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad row instead of skipping it.")] = False,
    threads: int = 2,
) -> None:
    """Run the frozen backbones once per distinct text, frame and tag; cache the features."""
    from anchor_embed.features import build_features

    build_features(streamers=streamers, out=out, media_root=media_root, text_backbone=text_backbone,
                   image_backbone=image_backbone, video_frames=video_frames, max_texts=max_texts,
                   max_frames=max_frames, max_tags=max_tags, strict=strict, threads=threads)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the sample and every artefact.")] = Path("demo-out"),
    n: Annotated[int, typer.Option(help="Streamers in the sample.")] = 300,
    seed: int = 0,
) -> None:
    """Make a small sample of streamers and run the whole job on it."""
    from anchor_embed.demo import run_demo

    run_demo(out=out, n=n, seed=seed)


@app.command()
def pretrain(
    features: Annotated[Path, typer.Option(help="Feature cache made by `anchor-embed features`.")],
    out: Annotated[Path, typer.Option(help="Run folder: config, metrics, checkpoints, model.")],
    config: Annotated[Path | None, typer.Option(help="JSON config; flags override it.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    temperature: float | None = None,
    learn_temperature: Annotated[bool | None, typer.Option("--learn-temperature/--fixed-temperature")] = None,
    max_overlap: Annotated[float | None, typer.Option(help="Cap on atoms shared by two views (default 0.2).")] = None,
    modality_drop: float | None = None,
    queue_size: Annotated[int | None, typer.Option(help="MoCo queue of momentum embeddings; 0 = off.")] = None,
    out_dim: int | None = None,
    d_model: int | None = None,
    layers: int | None = None,
    seed: int | None = None,
    threads: int | None = None,
) -> None:
    """Self-supervised pretraining: masked-modality views and symmetric InfoNCE."""
    from anchor_embed.pretrain import pretrain as run

    run(features=features, out=out, config=config, resume=resume, epochs=epochs, batch_size=batch_size, lr=lr,
        temperature=temperature, learn_temperature=learn_temperature, max_overlap=max_overlap,
        modality_drop=modality_drop, queue_size=queue_size, out_dim=out_dim, d_model=d_model, layers=layers,
        seed=seed, threads=threads)


@app.command()
def evaluate(
    features: Annotated[Path, typer.Option(help="Feature cache of the streamers.")],
    id_emb: Annotated[Path, typer.Option(help="ID embeddings (.npy + .keys.txt, .npz, .parquet).")],
    model: Annotated[list[Path] | None, typer.Option(help="A run folder to score; repeat for several.")] = None,
    id_keys: Annotated[Path | None, typer.Option(help="Keys file of a .npy (default: NAME.keys.txt).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for evaluation.json and evaluation.md.")] = None,
    holdout_frac: float = 0.2,
    seed: int = 0,
    frozen: Annotated[bool, typer.Option(help="Also score the frozen backbones alone.")] = True,
    ridge: Annotated[bool, typer.Option(help="Also score a ridge map of frozen features onto the ID embeddings.")] = False,
) -> None:
    """Recall@10/50, NDCG@10, alignment, uniformity of each model against behavioural neighbours."""
    from anchor_embed.evaluate import evaluate as run

    run(features=features, id_emb=id_emb, models=model, id_keys=id_keys, out=out, holdout_frac=holdout_frac,
        seed=seed, frozen=frozen, ridge=ridge)


@app.command()
def transfer(
    pretrained: Annotated[Path, typer.Option(help="Pretrained run folder (its start).")],
    id_emb: Annotated[Path, typer.Option(help="ID embeddings (.npy + .keys.txt, .npz, .parquet).")],
    out: Annotated[Path, typer.Option(help="Run folder for the transferred model.")],
    id_keys: Annotated[Path | None, typer.Option(help="Keys file of a .npy (default: NAME.keys.txt).")] = None,
    features: Annotated[Path | None, typer.Option(help="Feature cache (default: the pretrained run's).")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON config; flags override it.")] = None,
    resume: bool = False,
    method: Annotated[str | None, typer.Option(help="contrastive (default), feature, rkd, cluster.")] = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    temperature: float | None = None,
    k: Annotated[int | None, typer.Option(help="Behavioural neighbours mined per streamer.")] = None,
    filter: Annotated[str | None, typer.Option(help="content, text, nickname or none.")] = None,
    threshold: float | None = None,
    quantile: float | None = None,
    holdout_frac: float | None = None,
    aux_weight: Annotated[float | None, typer.Option(help="Weight of the self-supervised view loss (0 = off).")] = None,
    seed: int | None = None,
) -> None:
    """Teach a pretrained model with ID embeddings: mined, filtered positives (or a baseline method)."""
    from anchor_embed.transfer_run import transfer as run

    run(pretrained=pretrained, id_emb=id_emb, out=out, id_keys=id_keys, features=features, config=config,
        resume=resume, method=method, epochs=epochs, batch_size=batch_size, lr=lr, temperature=temperature, k=k,
        filter=filter, threshold=threshold, quantile=quantile, holdout_frac=holdout_frac, aux_weight=aux_weight,
        seed=seed)


@app.command()
def embed(
    model: Annotated[Path, typer.Option(help="Run folder (pretrain or transfer).")],
    streamers: Annotated[Path, typer.Option(help="Streamer records (JSONL or Parquet).")],
    out: Annotated[Path, typer.Option(help="Vectors folder.")],
    media_root: Path | None = None,
    dtype: Annotated[str, typer.Option(help="float32 or float16.")] = "float32",
    shard: Annotated[str, typer.Option(help="i/n: this shard of n; merged when all are done.")] = "0/1",
    strict: bool = False,
) -> None:
    """Vectors for every streamer, in resumable shards with done markers."""
    from anchor_embed.vectors import embed as run

    run(model=model, streamers=streamers, out=out, media_root=media_root, dtype=dtype, shard=shard, strict=strict)


index_app = typer.Typer(no_args_is_help=True, help="faiss indexes over vectors.")
app.add_typer(index_app, name="index")


@index_app.command("build")
def index_build(
    vectors: Annotated[Path, typer.Argument(help="Vectors folder made by `embed`.")],
    out: Annotated[Path, typer.Option(help="Index folder.")],
    memory_budget: Annotated[str, typer.Option(help="e.g. 512MB, 2GB: picks exact, IVF-Flat or IVF-PQ.")] = "2GB",
    kind: Annotated[str | None, typer.Option(help="Force flat, ivf_flat, hnsw or ivf_pq.")] = None,
    min_recall: Annotated[float, typer.Option(help="Recall@10 the search setting is tuned to reach.")] = 0.95,
    model: Annotated[Path | None, typer.Option(help="Refuse vectors not made by this run folder.")] = None,
) -> None:
    """Build an index; records Recall@10 against exact search."""
    from anchor_embed.index import build_index

    build_index(vectors=vectors, out=out, memory_budget=memory_budget, kind=kind, model=model, min_recall=min_recall)


@app.command()
def similar(
    anchor_ids: Annotated[list[str] | None, typer.Argument(help="Streamer ids to look up.")] = None,
    k: Annotated[int, typer.Option("-k", help="Neighbours per streamer.")] = 20,
    index: Annotated[Path, typer.Option(envvar="ANCHOR_EMBED_INDEX", help="Index folder.")] = Path("index"),
    ids_file: Annotated[Path | None, typer.Option(help="More ids, one a line.")] = None,
    record: Annotated[Path | None, typer.Option(help="Records of streamers not in the index (embedded now).")] = None,
    media_root: Annotated[Path | None, typer.Option(help="Root of the records' frame paths (default: their folder).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """Top-k similar streamers. A lookup by id never imports torch."""
    import json
    import sys

    from anchor_embed.errors import AnchorEmbedError
    from anchor_embed.similar import Lookup, similar_to_records
    from anchor_embed.similar import similar as by_id

    ids = list(anchor_ids or [])
    if ids_file:
        if not ids_file.is_file():
            raise AnchorEmbedError(f"{ids_file}: no such file")
        ids += [x.strip() for x in ids_file.read_text(encoding="utf-8").splitlines() if x.strip()]
    if not ids and not record:
        raise AnchorEmbedError("give anchor ids, --ids-file or --record")
    look = Lookup(index)  # opened once for the lookups and the labels of the table
    rows = by_id(ids, look, k) if ids else []
    if record:
        rows += similar_to_records(record, look, k, media_root=media_root)
    if as_json:
        sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for r in rows:
        me = look.label(r["anchor_id"])
        table = Table(title=f"{r['anchor_id']}  {me.get('nickname', '')}  {', '.join(me.get('tags', []))}")
        for col in ("#", "anchor_id", "nickname", "tags", "score"):
            table.add_column(col)
        for i, n in enumerate(r["neighbours"], 1):
            lab = look.label(n["anchor_id"])
            table.add_row(str(i), n["anchor_id"], lab.get("nickname", ""), ", ".join(lab.get("tags", [])),
                          f"{n['score']:.3f}")
        console.print(table)


@app.command()
def dedup(
    vectors: Annotated[Path, typer.Argument(help="Vectors folder made by `embed`.")],
    threshold: Annotated[float, typer.Option(help="Cosine at or above which two streamers are duplicates.")] = 0.95,
    out: Annotated[Path | None, typer.Option(help="Output JSONL (default VECTORS/dedup-T.jsonl).")] = None,
    clusters: Annotated[int, typer.Option(help="SemDeDup-style: search within k-means clusters (0 = exact).")] = 0,
    assign: Annotated[int, typer.Option(help="With --clusters: nearest clusters each streamer joins.")] = 2,
) -> None:
    """Groups of near-duplicate streamers with a representative each."""
    from anchor_embed.dedup import dedup as run

    run(vectors=vectors, threshold=threshold, out=out, clusters=clusters, assign=assign)


class _AssignByDefault(TyperGroup):
    """`scatter VEC --clusters K` means `scatter assign VEC --clusters K`; `scatter rerank ...` stays a subcommand."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["assign", *args]
        return super().parse_args(ctx, args)


scatter_app = typer.Typer(cls=_AssignByDefault, no_args_is_help=True,
                          help="Cluster ids (`scatter VEC --clusters K`), and reranking so neighbours differ.")
app.add_typer(scatter_app, name="scatter")


@scatter_app.command("assign")
def scatter_assign(
    vectors: Annotated[Path, typer.Argument(help="Vectors folder made by `embed`.")],
    clusters: Annotated[int, typer.Option(help="Number of clusters.")] = 100,
    out: Annotated[Path | None, typer.Option(help="Output JSONL (default VECTORS/clusters.jsonl).")] = None,
    seed: int = 0,
) -> None:
    """A cluster id per streamer (spherical k-means) with its distance to the centroid."""
    from anchor_embed.scatter import assign_clusters

    assign_clusters(vectors=vectors, clusters=clusters, out=out, seed=seed)


@scatter_app.command("rerank")
def scatter_rerank(
    list_file: Annotated[Path, typer.Argument(help="Ranked streamer ids, one a line.")],
    clusters_file: Annotated[Path, typer.Option("--clusters", help="clusters.jsonl from `scatter assign`.")],
    window: Annotated[int, typer.Option(help="No two within this many positions share a cluster.")] = 3,
) -> None:
    """Reorder a ranked list so that near items differ in cluster, keeping the order otherwise."""
    from anchor_embed.scatter import rerank_file

    for a in rerank_file(list_file, clusters_file, window):
        print(a)
