"""Commands of the training pipeline: features, pretrain, transfer, evaluate, demo.

Plain functions (registered on the app by `anchor_embed.cli.app`); heavy imports stay inside each command
so start-up is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from anchor_embed.cli.config_flags import config_flags
from anchor_embed.config import parse_value
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.training.config import AdaptConfig, PretrainConfig
from anchor_embed.transfer.config import TransferConfig


def parse_columns(text: str | None, id_column: str | None) -> dict[str, str] | None:
    """`--columns nickname=nick,profile=bio` (+ `--id-column uid`) as {record field: table column}."""
    out = {}
    for part in (text or "").split(","):
        if part.strip():
            field, sep, column = part.partition("=")
            if not sep or not field.strip() or not column.strip():
                raise AnchorEmbedError(f"--columns {text!r}: expected field=column pairs, e.g. profile=bio,tags=labels")
            out[field.strip()] = column.strip()
    if id_column:
        out["anchor_id"] = id_column
    return out or None


# options several commands share
Device = Annotated[Literal["auto", "cpu", "cuda", "mps"], typer.Option(help="Where to compute (auto: CUDA when present).")]
Columns = Annotated[str | None, typer.Option(help="Record fields from other column names: field=column,... "
                                             "(e.g. profile=bio,tags=labels); default: the field names.")]
IdColumn = Annotated[str | None, typer.Option(help="Column holding the anchor_id in Parquet input (default anchor_id).")]
IdEmb = Annotated[Path, typer.Option(help="ID embeddings (.npy + .keys.txt, .npz, .parquet).")]
IdKeys = Annotated[Path | None, typer.Option(help="Keys file of a .npy (default: NAME.keys.txt).")]
Config = Annotated[Path | None, typer.Option(help="JSON or TOML config; flags override it (default: none).")]
Resume = Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")]


def features(
    streamers: Annotated[Path, typer.Option(help="Streamer records (JSONL or Parquet).")],
    out: Annotated[Path, typer.Option(help="Cache folder (created; reused on later runs).")],
    media_root: Annotated[Path | None, typer.Option(help="Root of frame paths (default: the records' folder).")] = None,
    text_backbone: Annotated[str, typer.Option(help="'use', 'minilm', or a sentence-transformers name/path.")] = "use",
    image_backbone: Annotated[str, typer.Option(help="'efficientnet-lite0' or 'open_clip:MODEL[:TAG_OR_PATH]'.")] = "efficientnet-lite0",
    video_frames: Annotated[int, typer.Option(help="Frames sampled evenly from each video.")] = 4,
    max_texts: Annotated[int, typer.Option(help="Text atoms cached per streamer.")] = 16,
    max_frames: Annotated[int, typer.Option(help="Frames cached per streamer.")] = 8,
    max_tags: Annotated[int, typer.Option(help="Tags cached per streamer.")] = 16,
    max_text_chars: Annotated[int, typer.Option(help="Texts are cut to this many characters before encoding.")] = 2000,
    id_column: IdColumn = None,
    columns: Columns = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad row or missing frame instead of skipping it.")] = False,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads of the backbones.")] = 2,
    device: Device = "auto",
    meta_tags: Annotated[str | None, typer.Option(
        help="Record meta fields as tags: 'field' (its value), 'field:log' (half-decades of a count), "
        "'field:WIDTH' (buckets), comma-separated, e.g. 'language,total_followers:log,year:5' (default: none).")] = None,
    reuse: Annotated[Path | None, typer.Option(help="Another cache to copy already-encoded features from, when made "
                                               "by the same backbones (default: none).")] = None,
) -> None:
    """Run the frozen backbones once per distinct text, frame and tag; cache the features."""
    from anchor_embed.features.build import build_features

    if reuse is not None:
        from anchor_embed.features.cache import open_cache

        open_cache(reuse)           # a donor that is not a cache would be ignored and everything encoded again
    build_features(streamers=streamers, out=out, media_root=media_root, text_backbone=text_backbone,
                   image_backbone=image_backbone, video_frames=video_frames, max_texts=max_texts,
                   max_frames=max_frames, max_tags=max_tags, strict=strict, threads=threads,
                   max_text_chars=max_text_chars, columns=parse_columns(columns, id_column), device=device,
                   meta_tags=meta_tags, strict_frames=strict, reuse=reuse)


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the sample and every artefact.")] = Path("demo-out"),
    n: Annotated[int, typer.Option(help="Streamers in the sample (a few near-duplicates of them are added for dedup).")] = 300,
    seed: int = 0,
) -> None:
    """Make a small sample of streamers and run the whole job on it."""
    from anchor_embed.demo.run import run_demo

    run_demo(out=out, n=n, seed=seed)


@config_flags(PretrainConfig, "epochs", "batch_size", "lr", "weight_decay", "schedule", "warmup", "patience",
              "val_frac", "weight_average", "temperature", "max_overlap",
              "modality_drop", "queue_size", "out_dim", "d_model", "layers", "heads", "max_texts", "max_frames",
              "max_tags", "seed", "threads", "device", "precision")
def pretrain(
    features: Annotated[Path, typer.Option(help="Feature cache made by `anchor-embed features`.")],
    out: Annotated[Path, typer.Option(help="Run folder: config, metrics, checkpoints, model.")],
    config: Config = None,
    resume: Resume = False,
    learn_temperature: Annotated[bool | None, typer.Option("--learn-temperature/--fixed-temperature",
                                                           help="Learn the temperature (default fixed).")] = None,
    overrides: dict | None = None,
) -> None:
    """Self-supervised pretraining: masked-modality views and symmetric InfoNCE."""
    from anchor_embed.training.pretrain import pretrain as run

    run(features=features, out=out, config=config, resume=resume, learn_temperature=learn_temperature,
        **(overrides or {}))


def evaluate(
    features: Annotated[Path, typer.Option(help="Feature cache of the streamers.")],
    id_emb: IdEmb,
    model: Annotated[list[Path] | None, typer.Option(help="A run folder to score; repeat for several (default: none, references only). Its model card (README.md) and evaluation.json get this table.")] = None,
    id_keys: IdKeys = None,
    out: Annotated[Path | None, typer.Option(help="Folder for evaluation.json and evaluation.md (default: print only).")] = None,
    holdout_frac: Annotated[float, typer.Option(help="Share of the streamers with ID embeddings held out as queries.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the hold-out (transfer's --seed for the same split).")] = 0,
    frozen: Annotated[bool, typer.Option(help="Also score the frozen backbones, all and one modality at a time.")] = True,
    ridge: Annotated[bool, typer.Option(help="Also score RidgeCV, kernel ridge, and RidgeCV + kernel ridge of its residuals (the residual map in closed form), from frozen features + one-hot tags to the ID embeddings.")] = False,
    knn_average: Annotated[bool, typer.Option(help="Also score content-kNN averaging of training ID embeddings.")] = False,
    train_id_emb: Annotated[Path | None, typer.Option(help="ID embeddings the models were taught with, if not --id-emb (noisy, sparse; default: --id-emb).")] = None,
    id_column: Annotated[str, typer.Option(help="Column holding the anchor_id in Parquet ID embeddings.")] = "anchor_id",
    device: Device = "auto",
    card: Annotated[bool, typer.Option(help="Write the table into each --model run's card (README.md) and evaluation.json; --no-card leaves the runs as they are (a shared or read-only run).")] = True,
) -> None:
    """Recall@10/50, NDCG@10, alignment, uniformity of each model against behavioural neighbours."""
    from anchor_embed.evaluation.evaluate import evaluate as run

    run(features=features, id_emb=id_emb, models=model, id_keys=id_keys, out=out, holdout_frac=holdout_frac,
        seed=seed, frozen=frozen, ridge=ridge, knn_average=knn_average, train_id_emb=train_id_emb,
        id_column=id_column, device=device, card=card)


def probe(
    vectors: Annotated[list[str], typer.Option(help="A vector set, NAME=PATH or PATH: an embed folder, a feature "
                                               "cache (frozen) or ID embeddings; repeat for several.")],
    labels: Annotated[Path, typer.Option(help="CSV or Parquet with anchor_id and the target column.")],
    target: Annotated[str, typer.Option(help="The label column.")],
    kind: Annotated[Literal["classify", "regress"], typer.Option(help="Classes or numbers.")] = "classify",
    folds: Annotated[int, typer.Option(min=2, help="Outer cross-validation folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the folds.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Folder for probe.json and probe.md (default: print only).")] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first bad label row.")] = False,
) -> None:
    """Linear probe (CV-regularised) of frozen vectors on a downstream label: one table, every set alike."""
    from anchor_embed.evaluation.probe import probe as run

    run(vectors=vectors, labels=labels, target=target, kind=kind, folds=folds, seed=seed, out=out, strict=strict)


@config_flags(AdaptConfig, "target", "kind", "mode", "rank", "alpha", "epochs", "batch_size", "lr", "patience",
              "val_frac", "holdout_frac", "head_refit", "seed", "threads", "device", "precision")
def adapt(
    pretrained: Annotated[Path, typer.Option(help="The trained run to adapt (pretrain or transfer).")],
    labels: Annotated[Path, typer.Option(help="CSV or Parquet with anchor_id and the --target column.")],
    out: Annotated[Path, typer.Option(help="Run folder for the patch (or the model, with --mode full).")],
    features: Annotated[Path | None, typer.Option(help="Feature cache (default: the run's).")] = None,
    config: Config = None,
    resume: Resume = False,
    overrides: dict | None = None,
) -> None:
    """A new task by a small patch: low-rank adapters + a head, the base model left as it is."""
    from anchor_embed.training.adapt import adapt as run

    run(pretrained=pretrained, labels=labels, out=out, features=features, config=config, resume=resume,
        **(overrides or {}))


def parse_params(items: list[str] | None) -> dict | None:
    """`--param key=value` pairs as a dict; a value is read as JSON when it parses (numbers, true, null)."""
    if not items:
        return None
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AnchorEmbedError(f"--param {item!r}: expected key=value, e.g. --param n_clusters=20")
        out[key.strip()] = parse_value(value)
    return out


@config_flags(TransferConfig, "method", "epochs", "batch_size", "lr", "weight_decay", "schedule", "warmup",
              "patience", "val_frac", "weight_average", "k", "exact_mining_up_to", "filter", "threshold",
              "quantile", "mutual", "teacher_share", "holdout_frac", "init", "input_dropout", "linear_share", "map", "map_refit", "map_landmarks", "select_on", "aux_weight",
              "members", "seed", "threads", "device", "precision")
def transfer(
    pretrained: Annotated[Path, typer.Option(help="Pretrained run folder (its start).")],
    id_emb: IdEmb,
    out: Annotated[Path, typer.Option(help="Run folder for the transferred model.")],
    id_keys: IdKeys = None,
    features: Annotated[Path | None, typer.Option(help="Feature cache (default: the pretrained run's).")] = None,
    config: Config = None,
    resume: Resume = False,
    param: Annotated[list[str] | None, typer.Option(help="A setting of the method, key=value; repeat for several (default: the method's own).")] = None,
    temperature: Annotated[float | None, typer.Option(help="The method's temperature (= --param temperature=T; default: the method's).")] = None,
    id_column: Annotated[str, typer.Option(help="Column holding the anchor_id in Parquet ID embeddings.")] = "anchor_id",
    choose: Annotated[list[str] | None, typer.Option(
        help="Train one run per value, KEY=V1,V2 (a run setting, or params.NAME; repeat for a grid), into "
             "OUT/candidates, and keep the best on validation (default: one run).")] = None,
    overrides: dict | None = None,
) -> None:
    """Teach a pretrained model with ID embeddings: mined, filtered positives (or a baseline method)."""
    from anchor_embed.transfer.choose import choose as choose_runs
    from anchor_embed.transfer.choose import parse_choices, saved_choices
    from anchor_embed.transfer.run import transfer as run

    params = parse_params(param)
    if temperature is not None:
        params = {**(params or {}), "temperature": temperature}
    common = dict(id_keys=id_keys, features=features, config=config, resume=resume, params=params,
                  id_column=id_column, **(overrides or {}))
    choices = parse_choices(choose) or (saved_choices(out) if resume else {})
    if choices:
        choose_runs(pretrained, id_emb, out, choices, **common)
    else:
        run(pretrained=pretrained, id_emb=id_emb, out=out, **common)
