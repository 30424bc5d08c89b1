"""`anchor-embed transfer`: teach a pretrained fusion model with ID embeddings, by a method from the registry.

Held-out streamers (the split `evaluate` uses) are removed before mining, so no held-out ID embedding is
ever seen. Every method gets the same start, data and budget: `steps_per_epoch` x `epochs` batches.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field

from anchor_embed import atomic, checkpoints
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.evaluation import holdout_split
from anchor_embed.features import open_cache
from anchor_embed.fusion import Batcher, embed_all, frozen_vectors
from anchor_embed.id_embeddings import align_to_streamers, read_id_embeddings
from anchor_embed.losses import info_nce
from anchor_embed.mining import content_cosine, filter_pairs, mine, nickname_similarity
from anchor_embed.progress import make_progress, say


class TransferConfig(BaseModel):
    method: str = "contrastive"
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = 0.01
    temperature: float = Field(0.1, gt=0, description="InfoNCE temperature: 0.1 beat 0.05 on both benchmark datasets.")
    k: int = Field(10, ge=1, description="Behavioural neighbours mined per streamer.")
    filter: str = Field("content", description="content (pretrained vectors), text (frozen features), "
                                                "nickname (edit distance), none.")
    threshold: float | None = None
    quantile: float | None = Field(0.3, description="Per-query quantile of the content score to keep.")
    holdout_frac: float = Field(0.2, ge=0, lt=1)
    feature_loss: str = "cosine"
    rkd_distance_weight: float = 1.0
    rkd_angle_weight: float = 2.0
    n_clusters: int = 50
    aux_weight: float = Field(0.0, ge=0, description="Weight of the self-supervised view loss added each step.")
    aux_temperature: float = Field(0.07, gt=0)
    seed: int = 0
    threads: int = 2


def transfer(
    pretrained: str | Path,
    id_emb: str | Path,
    out: str | Path,
    id_keys: str | Path | None = None,
    features: str | Path | None = None,
    config: str | Path | None = None,
    resume: bool = False,
    **overrides,
) -> list[dict]:
    """Train RUN_DIR `out` from `pretrained` with the chosen method; returns per-epoch metrics."""
    from anchor_embed.config import resolve
    from anchor_embed.pretrain import epoch_seed, load_model, save_model, view_batches
    from anchor_embed.transfer import METHODS, TransferData

    cfg = resolve(TransferConfig, config, overrides)
    if cfg.method not in METHODS:
        raise AnchorEmbedError(f"--method {cfg.method!r}: unknown; choose from {sorted(METHODS)}")
    pretrained, out = Path(pretrained), Path(out)
    run_info = pretrained / "run.json"
    if features is None:
        if not run_info.is_file():
            raise AnchorEmbedError(f"{pretrained}: no run.json naming its feature cache; pass --features")
        features = json.loads(run_info.read_text())["features"]
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, cfg.threads))
    cache = open_cache(features)
    model, _ = load_model(pretrained)
    model.train()
    batcher = Batcher(cache, model.cfg.tag_vocab)
    ids, report = read_id_embeddings(id_emb, id_keys)
    ids = align_to_streamers(ids, cache.keys, report)
    say(f"[bold]transfer[/]: {report.summary()}")
    held = holdout_split(ids.keys, cfg.holdout_frac, cfg.seed)
    pos = cache.key_index()
    id_vectors = np.zeros((cache.n, ids.dim), np.float32)
    train_rows = []
    for k, v in zip(ids.keys, ids.vectors, strict=True):
        if k not in held:
            id_vectors[pos[k]] = v
            train_rows.append(pos[k])
    train_rows = np.array(sorted(train_rows), np.int64)

    q, n, s = mine(id_vectors, train_rows, cfg.k)
    if cfg.filter == "content":
        score = content_cosine(embed_all(model, batcher))
    elif cfg.filter == "text":
        score = content_cosine(frozen_vectors(cache))
    elif cfg.filter == "nickname":
        score = nickname_similarity(cache.nicknames())
    elif cfg.filter == "none":
        score = None
    else:
        raise AnchorEmbedError(f"--filter {cfg.filter!r}: choose content, text, nickname or none")
    pairs = filter_pairs(q, n, s, score, cfg.threshold, cfg.quantile if score is not None else None)
    kq, kn = pairs.kept_pairs()
    if len(kq) < 2:
        raise AnchorEmbedError("fewer than 2 mined pairs survive the filter; lower --quantile/--threshold")
    mining = {"mined": int(len(q)), "kept": int(len(kq)), "kept_share": round(len(kq) / max(len(q), 1), 4),
              "filter": cfg.filter, "threshold": cfg.threshold, "quantile": cfg.quantile,
              "train_streamers": int(len(train_rows)), "held_out": len(held)}
    say(f"[bold]transfer[/]: mined {mining['mined']} pairs, kept {mining['kept']} ({mining['kept_share']:.0%}) "
        f"by filter '{cfg.filter}'; {len(held)} streamers held out")

    data = TransferData(id_vectors, train_rows, kq, kn)
    method = METHODS[cfg.method](model.cfg.out_dim, data, cfg)
    params = list(model.parameters()) + list(method.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    ckpt = checkpoints.existing_run(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "config.json", cfg.model_dump())
    atomic.write_json(out / "run.json", {"stage": "transfer", "features": str(Path(features).resolve()),
                                         "pretrained": str(pretrained.resolve()), "id_emb": str(id_emb),
                                         "mining": mining})
    keys = cache.keys
    atomic.write_jsonl(out / "pairs.jsonl", (
        {"query": keys[a], "neighbour": keys[b], "id_score": round(float(c), 5),
         "content_score": None if np.isnan(d) else round(float(d), 5), "kept": bool(e)}
        for a, b, c, d, e in zip(pairs.query, pairs.neighbour, pairs.id_score, pairs.content_score, pairs.kept,
                                 strict=True)))
    start, history = 0, []
    if ckpt is not None:
        tensors, state = checkpoints.load(ckpt)
        model.load_state_dict(tensors["model"])
        method.load_state_dict(tensors["method"])
        checkpoints.restore_optimizer(opt, tensors.get("optimizer", {}), state["optimizer"])
        start = state["epoch"]
        history = checkpoints.history_until(out, start)
        say(f"[bold]transfer[/]: resuming {out} after epoch {start}")

    steps = max(1, len(train_rows) // cfg.batch_size)
    embed = lambda rows: model(batcher.make(list(map(int, rows))))  # noqa: E731
    views, noise, dropout = _view_settings(pretrained)
    with make_progress() as progress:
        task = progress.add_task(f"transfer:{cfg.method}", total=(cfg.epochs - start) * steps, info="")
        for epoch in range(start, cfg.epochs):
            torch.manual_seed(epoch_seed(cfg.seed, epoch))
            model.train()
            total, aux_total, t0 = 0.0, 0.0, time.perf_counter()
            for b in range(steps):
                rng = np.random.default_rng([cfg.seed, epoch, b])
                batch = method.sample(rng, cfg.batch_size)
                loss = method.loss(embed, batch)
                if cfg.aux_weight > 0:
                    rows = rng.choice(cache.n, size=min(cfg.batch_size, cache.n), replace=False).tolist()
                    za, zb = (model(v) for v in view_batches(batcher, rows, views, rng, noise, dropout))
                    aux = info_nce(za, zb, cfg.aux_temperature)
                    aux_total += aux.item()
                    loss = loss + cfg.aux_weight * aux
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item()
                progress.update(task, advance=1, info=f"epoch {epoch + 1} loss {loss.item():.3f}")
            row = {"epoch": epoch + 1, "loss": round(total / steps, 5), "aux_loss": round(aux_total / steps, 5),
                   "streamers_per_s": round(steps * cfg.batch_size / (time.perf_counter() - t0), 1)}
            history.append(row)
            flat, meta = checkpoints.optimizer_tensors(opt)
            checkpoints.save(out, epoch + 1, {"model": model.state_dict(), "method": method.state_dict(),
                                              "optimizer": flat}, {"epoch": epoch + 1, "optimizer": meta})
            save_model(out, model)
            atomic.write_jsonl(out / "metrics.jsonl", history)
            say(f"epoch {epoch + 1}: loss {row['loss']:.4f}  {row['streamers_per_s']:.0f} streamers/s")
    return history


def _view_settings(pretrained: Path):
    """The masked-view settings of the pretraining run behind `pretrained` (defaults if it has none)."""
    from anchor_embed.pretrain import PretrainConfig
    from anchor_embed.views import ViewConfig

    f = pretrained / "config.json"
    raw = json.loads(f.read_text()) if f.is_file() else {}
    fields = set(PretrainConfig.model_fields)
    p = PretrainConfig(**{k: v for k, v in raw.items() if k in fields})
    return ViewConfig(p.max_overlap, p.modality_drop, p.keep), p.noise, p.feature_dropout
