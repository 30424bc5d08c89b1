"""CLI commands. Heavy imports stay inside each command so start-up is cheap."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
