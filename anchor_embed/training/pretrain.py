"""Self-supervised pretraining of the fusion model: masked-modality views, symmetric InfoNCE, optional MoCo queue."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.features.cache import FeatureCache, open_cache
from anchor_embed.losses import alignment, info_nce, top1_accuracy, uniformity
from anchor_embed.model.batcher import Batcher
from anchor_embed.model.fusion import FusionConfig, FusionModel, TokenBatch, tag_vocabulary
from anchor_embed.model.views import ViewConfig, split_views
from anchor_embed.progress import say
from anchor_embed.training.config import PretrainConfig
from anchor_embed.training.fit import Task, fit, resolve_settings, training_run


def build_model(cache: FeatureCache, cfg: PretrainConfig) -> FusionModel:
    """A fresh fusion model for the cache's feature widths, with the config's architecture and input limits
    (`input_limits`)."""
    limits = input_limits(cache, cfg)
    fcfg = FusionConfig(text_dim=cache.dim("text"), image_dim=cache.dim("frame"), out_dim=cfg.out_dim,
                        d_model=cfg.d_model, layers=cfg.layers, heads=cfg.heads, dropout=cfg.dropout,
                        tag_vocab=tag_vocabulary(cache, cfg.tag_min_count), **limits)
    return FusionModel(fcfg)


def input_limits(cache: FeatureCache, cfg: PretrainConfig) -> dict[str, int]:
    """The model's max_texts/max_frames/max_tags: the config's, but no more than the cache holds per streamer
    (its own caps, which also cut every later streamer `embed` encodes for the model), so the model config
    says what the model reads (`--max-texts 64` on a cache cut at 16 recorded 64); a lowered one is said."""
    limits = {}
    for key in ("max_texts", "max_frames", "max_tags"):
        want, have = getattr(cfg, key), cache.meta.get(key)
        limits[key] = want if have is None or want <= have else int(have)
        if limits[key] != want:
            say(f"[yellow]pretrain[/]: --{key.replace('_', '-')} {want}, but the feature cache holds at most "
                f"{have} per streamer (its features were cut there); the model reads {have}")
    return limits


def view_batch(batcher: Batcher, ids: list[int], views: ViewConfig, rng: np.random.Generator,
               noise: float, feature_dropout: float) -> TokenBatch:
    """Two masked views of each streamer in `ids` as one model batch: rows [0, n) hold the first views, rows
    [n, 2n) the second, so one forward embeds both (pretraining, and transfer's auxiliary term); split the
    vectors with `two_views`. One pass instead of two is about a tenth faster per step on CPU."""
    pairs = [split_views(batcher.all_atoms(i), views, rng) for i in ids]
    return batcher.make(ids + ids, [a for a, _ in pairs] + [b for _, b in pairs], noise=noise,
                        feature_dropout=feature_dropout, rng=rng)


def view_rows(n: int, mine: slice) -> slice | np.ndarray:
    """Rows of a `view_batch` of n streamers holding both views of the streamers `mine` (a rank's share)."""
    if mine == slice(None) or (mine.start, mine.stop) == (0, n):
        return slice(None)
    part = np.arange(n)[mine]
    return np.concatenate([part, n + part])


def two_views(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first views, second views) of the vectors of a `view_batch` (or of rows picked by `view_rows`)."""
    return z[:len(z) // 2], z[len(z) // 2:]


def validation_split(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) positions of n streamers; validation is empty when it would hold under 2."""
    order = np.random.default_rng([seed, 7919]).permutation(n)
    n_val = int(round(frac * n))
    if n_val < 2 or n - n_val < 2:
        return np.arange(n), np.arange(0)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class PretrainTask(Task):
    """Two masked views of each streamer of a batch must find each other (InfoNCE), optionally against a queue."""

    label = "pretrain"

    def __init__(self, cache: FeatureCache, cfg: PretrainConfig) -> None:
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(max(1, cfg.threads))
        self.cache, self.cfg = cache, cfg
        self.model = build_model(cache, cfg)
        self.batcher = Batcher.for_model(self.model, cache)
        self.log_t = torch.nn.Parameter(torch.tensor(float(np.log(cfg.temperature))),
                                        requires_grad=cfg.learn_temperature)
        self.momentum_model = copy.deepcopy(self.model).requires_grad_(False) if cfg.queue_size else None
        self.queue = torch.zeros(0, cfg.out_dim)
        self.queue_ids = torch.zeros(0, dtype=torch.long)  # the streamer of each queued key: never its own negative
        self.views = cfg.views()
        self.train_rows, self.val_rows = validation_split(cache.n, cfg.val_frac, cfg.seed)
        self.bs = min(cfg.batch_size, len(self.train_rows))
        self.perm = self.train_rows
        self._keys: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None
        self._val_batches = None

    def modules(self) -> dict:
        mods = {"model": self.model}
        if self.momentum_model is not None:
            mods["momentum_model"] = self.momentum_model
        return mods

    def parameters(self) -> list:
        return list(self.model.parameters()) + ([self.log_t] if self.cfg.learn_temperature else [])

    def to(self, device: torch.device) -> None:
        super().to(device)
        with torch.no_grad():
            self.log_t.data = self.log_t.data.to(device)
        self.queue, self.queue_ids = self.queue.to(device), self.queue_ids.to(device)

    def extra_tensors(self) -> dict:
        return {"log_t": self.log_t.detach().clone(), "queue": self.queue.clone(), "queue_ids": self.queue_ids.clone()}

    def load_extra_tensors(self, tensors: dict) -> None:
        with torch.no_grad():
            self.log_t.copy_(tensors["log_t"])
        self.queue = tensors["queue"].to(self.device)
        self.queue_ids = tensors.get("queue_ids", torch.full((len(self.queue),), -1, dtype=torch.long)).to(self.device)

    def steps_per_epoch(self) -> int:
        return len(self.train_rows) // self.bs  # drop the ragged tail: a tiny last batch gives a noisy loss

    def batch_size(self) -> int:
        return self.bs

    def start_epoch(self, epoch: int) -> None:
        self.perm = self.train_rows[np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.train_rows))]

    def chance_candidates(self) -> int:
        return self.bs + (self.cfg.queue_size if self.momentum_model is not None else 0)

    monitor = "loss"
    higher_is_better = False

    def validate(self) -> dict[str, float] | None:
        """The view task on held-aside streamers, with views fixed once: loss, view top-1, alignment, uniformity."""
        if len(self.val_rows) < 2:
            return None
        if self._val_batches is None:
            rng = np.random.default_rng([self.cfg.seed, 1 << 20])
            self._val_batches = view_batch(self.batcher, self.val_rows.tolist(), self.views, rng, 0.0, 0.0)
        za, zb = two_views(self.model(self._val_batches))
        whole = self.model(self.batcher.make(self.val_rows.tolist()))
        za, zb, whole = za.float(), zb.float(), whole.float()
        return {"loss": float(info_nce(za, zb, self.temperature())), "view_top1": float(top1_accuracy(za, zb)),
                "alignment": float(alignment(za, zb)), "uniformity": float(uniformity(whole))}

    def temperature(self) -> torch.Tensor:
        return self.log_t.exp().clamp(min=self.cfg.min_temperature)

    def loss(self, epoch: int, step: int, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ids = self.perm[step * self.bs:(step + 1) * self.bs].tolist()
        # every rank draws the views of the whole batch (the same draws), then embeds its own share
        batch = view_batch(self.batcher, ids, self.views, rng, self.cfg.noise, self.cfg.feature_dropout)
        rows = view_rows(len(ids), self.dist.share(len(ids)) if self.dist else slice(None))
        gather = self.dist.gather if self.dist else (lambda x: x)
        za, zb = (gather(z) for z in two_views(self.net(batch[rows])))
        t = self.temperature()
        if self.momentum_model is None:
            loss = info_nce(za, zb, t)
        else:
            with torch.no_grad():
                ka, kb = (gather(k) for k in two_views(self.momentum_model(batch[rows])))
            queue = self.queue if len(self.queue) else None
            own = torch.as_tensor(ids, device=za.device)[:, None] == self.queue_ids[None, :] if queue is not None else None
            loss = (info_nce(za, kb, t, queue, symmetric=False, extra_not_negative=own)
                    + info_nce(zb, ka, t, queue, symmetric=False, extra_not_negative=own)) / 2
            self._keys = (ka, kb, ids)
        with torch.no_grad():
            za, zb = za.detach(), zb.detach()
            stats = {"loss": loss.detach(), "view_top1": top1_accuracy(za, zb), "alignment": alignment(za, zb),
                     "uniformity": uniformity(za)}
        return loss, stats

    def after_step(self) -> None:
        if self.momentum_model is None:
            return
        with torch.no_grad():
            m = self.cfg.momentum
            for p_m, p in zip(self.momentum_model.parameters(), self.model.parameters(), strict=True):
                p_m.mul_(m).add_(p.detach(), alpha=1 - m)
            ka, kb, ids = self._keys
            self.queue = torch.cat([ka, kb, self.queue])[: self.cfg.queue_size]
            ids_t = torch.as_tensor(ids, dtype=torch.long, device=self.queue.device)
            self.queue_ids = torch.cat([ids_t, ids_t, self.queue_ids])[: self.cfg.queue_size]

    def epoch_extra(self) -> dict[str, float]:
        return {"temperature": round(float(self.temperature()), 5)}


def pretrain(
    features: str | Path,
    out: str | Path,
    config: str | Path | None = None,
    resume: bool = False,
    **overrides,
) -> list[dict]:
    """Pretrain on a feature cache into RUN_DIR `out`; returns the per-epoch metrics."""

    from anchor_embed.training.run_folder import check_out

    out = Path(out)
    check_out(out, "pretrain", PretrainConfig)      # a user's, embed's or index folder: refused before any work
    cfg = resolve_settings(PretrainConfig, "pretrain", out, config, resume, overrides)
    cache = open_cache(features)
    if cache.n < 2:
        raise AnchorEmbedError(f"{features}: pretraining needs at least 2 streamers, found {cache.n}")
    from anchor_embed.fingerprint import cache_digest
    from anchor_embed.training.distributed import Dist

    dist = Dist.from_env()
    info = {"stage": "pretrain", "features": str(Path(features).resolve()), "feature_meta": cache.meta,
            "inputs": {"features": cache_digest(features)}, "processes": dist.world}
    with training_run(out, cfg, resume, info, "pretrain run", dist) as ckpt:
        return fit(PretrainTask(cache, cfg), out, cfg, ckpt, dist)
