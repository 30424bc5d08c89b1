"""Self-supervised pretraining of the fusion model: masked-modality views, symmetric InfoNCE, optional MoCo queue.

Every random draw of a step comes from (seed, epoch, batch), and the torch RNG is reseeded at each epoch
start, so a run resumed from the last epoch checkpoint replays the interrupted epoch exactly.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field
from safetensors.torch import load_file, save_file

from anchor_embed import atomic, checkpoints
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.features import FeatureCache, open_cache
from anchor_embed.fusion import Batcher, FusionConfig, FusionModel, tag_vocabulary
from anchor_embed.losses import alignment, info_nce, top1_accuracy, uniformity
from anchor_embed.progress import make_progress, say
from anchor_embed.views import ViewConfig, split_views


class PretrainConfig(BaseModel):
    """Everything that shapes a pretraining run; saved as RUN_DIR/config.json."""

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    temperature: float = Field(0.07, gt=0, description="Initial (or fixed) softmax temperature.")
    learn_temperature: bool = False
    min_temperature: float = Field(0.01, gt=0, description="Clamp of a learned temperature (CLIP: 1/100).")
    max_overlap: float = Field(0.2, ge=0, le=1, description="Cap on shared atoms over the union of two views.")
    modality_drop: float = Field(0.2, ge=0, le=1)
    keep: float = Field(0.9, gt=0, le=1)
    noise: float = Field(0.02, ge=0, description="Gaussian noise on input features of each view.")
    feature_dropout: float = Field(0.1, ge=0, lt=1)
    queue_size: int = Field(0, ge=0, description="MoCo queue of momentum-encoder embeddings; 0 = off.")
    momentum: float = Field(0.99, ge=0, le=1)
    out_dim: int = 256
    d_model: int = 256
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    tag_min_count: int = 3
    max_texts: int = 16
    max_frames: int = 8
    max_tags: int = 16
    seed: int = 0
    threads: int = 2


def build_model(cache: FeatureCache, cfg: PretrainConfig) -> FusionModel:
    fcfg = FusionConfig(text_dim=cache.dim("text"), image_dim=cache.dim("frame"), out_dim=cfg.out_dim,
                        d_model=cfg.d_model, layers=cfg.layers, heads=cfg.heads, dropout=cfg.dropout,
                        tag_vocab=tag_vocabulary(cache, cfg.tag_min_count))
    return FusionModel(fcfg)


def save_model(run_dir: Path, model: FusionModel, extra: dict | None = None) -> None:
    """The run's current model: model.safetensors + model_config.json (what `embed` and `transfer` load)."""
    atomic.write_json(run_dir / "model_config.json", {**model.cfg.to_dict(), **(extra or {})})
    with atomic.atomic_path(run_dir / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))


def load_model(run_dir: str | Path) -> tuple[FusionModel, dict]:
    """Load a run's model; refuses a folder without one."""
    run_dir = Path(run_dir)
    cfg_path, weights = run_dir / "model_config.json", run_dir / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise AnchorEmbedError(f"{run_dir}: no model here (expected model_config.json and model.safetensors)")
    raw = json.loads(cfg_path.read_text())
    fields = set(FusionConfig.__dataclass_fields__)
    model = FusionModel(FusionConfig(**{k: v for k, v in raw.items() if k in fields}))
    model.load_state_dict(load_file(str(weights)))
    return model.eval(), raw


def epoch_seed(seed: int, epoch: int) -> int:
    """The torch seed of one epoch: a resumed run replays the epoch it lost."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def view_batches(batcher: Batcher, ids: list[int], views: ViewConfig, rng: np.random.Generator,
                 noise: float, feature_dropout: float) -> tuple[dict, dict]:
    """Two masked views of each streamer in `ids` as model batches (pretraining, and transfer's auxiliary term)."""
    pairs = [split_views(batcher.all_atoms(i), views, rng) for i in ids]
    kw = {"noise": noise, "feature_dropout": feature_dropout, "rng": rng}
    return batcher.make(ids, [a for a, _ in pairs], **kw), batcher.make(ids, [b for _, b in pairs], **kw)


class Trainer:
    """One pretraining run: model, optional momentum encoder and queue, optimizer, RNG discipline."""

    def __init__(self, cache: FeatureCache, cfg: PretrainConfig) -> None:
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(max(1, cfg.threads))
        self.cache, self.cfg = cache, cfg
        self.model = build_model(cache, cfg)
        self.batcher = Batcher(cache, self.model.cfg.tag_vocab, cfg.max_texts, cfg.max_frames, cfg.max_tags)
        self.log_t = torch.nn.Parameter(torch.tensor(float(np.log(cfg.temperature))),
                                        requires_grad=cfg.learn_temperature)
        params = list(self.model.parameters()) + ([self.log_t] if cfg.learn_temperature else [])
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.momentum_model = copy.deepcopy(self.model).requires_grad_(False) if cfg.queue_size else None
        self.queue = torch.zeros(0, cfg.out_dim)
        self.views = ViewConfig(cfg.max_overlap, cfg.modality_drop, cfg.keep)

    def temperature(self) -> torch.Tensor:
        return self.log_t.exp().clamp(min=self.cfg.min_temperature)

    def state_tensors(self) -> tuple[dict, dict]:
        opt_flat, opt_meta = checkpoints.optimizer_tensors(self.opt)
        tensors = {"model": self.model.state_dict(), "optimizer": opt_flat,
                   "extra": {"log_t": self.log_t.detach().clone(), "queue": self.queue.clone()}}
        if self.momentum_model is not None:
            tensors["momentum_model"] = self.momentum_model.state_dict()
        return tensors, {"optimizer": opt_meta}

    def restore(self, tensors: dict, state: dict) -> None:
        self.model.load_state_dict(tensors["model"])
        checkpoints.restore_optimizer(self.opt, tensors.get("optimizer", {}), state["optimizer"])
        with torch.no_grad():
            self.log_t.copy_(tensors["extra"]["log_t"])
        self.queue = tensors["extra"]["queue"]
        if self.momentum_model is not None:
            self.momentum_model.load_state_dict(tensors["momentum_model"])

    def step(self, ids: list[int], rng: np.random.Generator) -> dict[str, float]:
        """One optimisation step on two views of each streamer in `ids`."""
        batch_a, batch_b = view_batches(self.batcher, ids, self.views, rng, self.cfg.noise, self.cfg.feature_dropout)
        za, zb = self.model(batch_a), self.model(batch_b)
        t = self.temperature()
        if self.momentum_model is None:
            loss = info_nce(za, zb, t)
        else:
            with torch.no_grad():
                ka, kb = self.momentum_model(batch_a), self.momentum_model(batch_b)
            queue = self.queue if len(self.queue) else None
            loss = (info_nce(za, kb, t, queue, symmetric=False) + info_nce(zb, ka, t, queue, symmetric=False)) / 2
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.momentum_model is not None:
            with torch.no_grad():
                m = self.cfg.momentum
                for p_m, p in zip(self.momentum_model.parameters(), self.model.parameters(), strict=True):
                    p_m.mul_(m).add_(p.detach(), alpha=1 - m)
                self.queue = torch.cat([ka, kb, self.queue])[: self.cfg.queue_size]
        with torch.no_grad():
            za, zb = za.detach(), zb.detach()
            return {"loss": float(loss), "view_top1": float(top1_accuracy(za, zb)),
                    "alignment": float(alignment(za, zb)), "uniformity": float(uniformity(za))}


def pretrain(
    features: str | Path,
    out: str | Path,
    config: str | Path | None = None,
    resume: bool = False,
    **overrides,
) -> list[dict]:
    """Pretrain on a feature cache into RUN_DIR `out`; returns the per-epoch metrics."""
    out = Path(out)
    cfg = _resolve_config(config, overrides)
    cache = open_cache(features)
    if cache.n < 2:
        raise AnchorEmbedError(f"{features}: pretraining needs at least 2 streamers, found {cache.n}")
    ckpt = checkpoints.existing_run(out, resume)
    if resume and ckpt is not None:
        saved = PretrainConfig.model_validate_json((out / "config.json").read_text())
        if saved.model_dump(exclude={"epochs"}) != cfg.model_dump(exclude={"epochs"}):
            raise AnchorEmbedError(f"{out}: --resume with a config that differs from the saved one (only epochs may change)")
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "config.json", {**cfg.model_dump()})
    atomic.write_json(out / "run.json", {"stage": "pretrain", "features": str(Path(features).resolve()),
                                         "feature_meta": cache.meta})
    trainer = Trainer(cache, cfg)
    start, history = 0, []
    if ckpt is not None:
        tensors, state = checkpoints.load(ckpt)
        trainer.restore(tensors, state)
        start = state["epoch"]
        history = checkpoints.history_until(out, start)
        say(f"[bold]pretrain[/]: resuming {out} after epoch {start}")
    n, bs = cache.n, min(cfg.batch_size, cache.n)
    n_batches = n // bs  # drop the ragged tail: a tiny last batch gives a noisy contrastive loss
    with make_progress() as progress:
        task = progress.add_task("pretrain", total=(cfg.epochs - start) * n_batches, info="")
        for epoch in range(start, cfg.epochs):
            torch.manual_seed(epoch_seed(cfg.seed, epoch))
            perm = np.random.default_rng([cfg.seed, epoch]).permutation(n)
            trainer.model.train()
            sums: dict[str, float] = {}
            t0 = time.perf_counter()
            for b in range(n_batches):
                rng = np.random.default_rng([cfg.seed, epoch, b])
                stats = trainer.step(perm[b * bs:(b + 1) * bs].tolist(), rng)
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                progress.update(task, advance=1, info=f"epoch {epoch + 1} loss {stats['loss']:.3f}")
            secs = time.perf_counter() - t0
            row = {"epoch": epoch + 1, **{k: round(v / n_batches, 5) for k, v in sums.items()},
                   "streamers_per_s": round(n_batches * bs / secs, 1),
                   "extra": {"temperature": round(float(trainer.temperature()), 5)}}
            history.append(row)
            tensors, state = trainer.state_tensors()
            checkpoints.save(out, epoch + 1, tensors, {"epoch": epoch + 1, **state})
            save_model(out, trainer.model)
            atomic.write_jsonl(out / "metrics.jsonl", history)
            say(f"epoch {epoch + 1}: loss {row['loss']:.4f}  view top-1 {row['view_top1']:.3f}  "
                f"alignment {row['alignment']:.3f}  uniformity {row['uniformity']:.3f}  "
                f"{row['streamers_per_s']:.0f} streamers/s")
    return history


def _resolve_config(config: str | Path | None, overrides: dict) -> PretrainConfig:
    from anchor_embed.config import resolve

    return resolve(PretrainConfig, config, overrides)
