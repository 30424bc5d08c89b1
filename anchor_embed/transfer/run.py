"""`anchor-embed transfer`: teach a pretrained fusion model with ID embeddings, by a method from the registry.

With `holdout_frac` > 0, evaluate's held-out streamers are removed before anything else, so no held-out ID
embedding is ever seen; a validation share of the rest picks the best epoch. Every method gets the same
start, data, budget (`steps_per_epoch` x at most `epochs` batches) and selection, in the one training loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from anchor_embed import atomic
from anchor_embed.data.id_embeddings import align_to_streamers, read_id_embeddings
from anchor_embed.data.input_report import InputReport
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.evaluation.neighbour_recall import NeighbourRecall
from anchor_embed.features.cache import FeatureCache, open_cache
from anchor_embed.losses import info_nce
from anchor_embed.model.batcher import Batcher
from anchor_embed.model.fusion import FusionModel
from anchor_embed.model.store import load_model, require_model
from anchor_embed.model.views import ViewConfig
from anchor_embed.progress import counted, say
from anchor_embed.training import checkpoints
from anchor_embed.training.fit import (
    Task,
    check_resumable,
    check_same_inputs,
    finished,
    fit,
    resolve_settings,
    run_info,
    saved_config,
    start_seed,
    training_run,
)
from anchor_embed.training.run_folder import check_out
from anchor_embed.transfer.config import TransferConfig
from anchor_embed.transfer.filters import FILTERS
from anchor_embed.transfer.methods import METHODS
from anchor_embed.transfer.methods.base import TransferData, TransferMethod
from anchor_embed.transfer.mining import Pairs
from anchor_embed.transfer.split import SEEN_IDS, TransferSplit, read_seen, split_streamers
from anchor_embed.transfer.validation import (
    blended_figures,
    map_vectors,
    split_validation,
    validation_figures,
)

# how each map kind is fitted, as the progress line names it
MAP_FITS = {"kernel": "kernel ridge", "linear": "RidgeCV", "residual": "RidgeCV + kernel ridge of its residuals"}


class TransferTask(Task):
    """One method's loss on sampled batches, plus the optional self-supervised view loss; validated by the
    Recall@10 of the validation streamers' content neighbours against their ID neighbours (alone, or averaged
    with the new-vs-new figure: `select_on`)."""

    def __init__(self, model, batcher: Batcher, method: TransferMethod, cfg: TransferConfig, steps: int,
                 views: tuple[ViewConfig, float, float], validation: NeighbourRecall | None,
                 maps: dict | None = None, share: float = 0.0, final=None) -> None:
        self.model, self.batcher, self.method, self.cfg = model, batcher, method, cfg
        # the candidate maps (kind -> LinearMap), their vectors of the validation streamers (they never change),
        # and the one the latest validation picked: the model trains without a map, and is saved with that one
        self.maps, self.share = dict(maps or {}), share
        self.map_vectors = (map_vectors(self.maps, batcher, validation.candidates)
                            if self.maps and validation is not None else {})
        self.chosen = next(iter(self.maps), None)
        self.final = final     # (model, kind) -> (map, record) | None: the kept map after training (finish)
        self.label = f"transfer:{cfg.method}"
        self.steps = steps
        self.views, self.noise, self.feature_dropout = views
        self.validation = validation
        self.rng: np.random.Generator | None = None
        self.input_dropout = method_default(cfg, method, "input_dropout")
        self.monitor = cfg.select_on

    def modules(self) -> dict:
        return {"model": self.model, "method": self.method}

    def steps_per_epoch(self) -> int:
        return self.steps

    def batch_size(self) -> int:
        return self.cfg.batch_size

    def chance_candidates(self) -> int | None:
        return self.method.chance_candidates(self.cfg.batch_size) if self.cfg.aux_weight == 0 else None

    def embed(self, rows: np.ndarray) -> torch.Tensor:
        """Vectors of `rows` (a global batch): this rank embeds its share, the others' arrive gathered."""
        rows = np.asarray(rows)
        if self.dist is not None and self.dist.world > 1:
            rows = rows[self.dist.share(len(rows))]
        z = self.net(self.batcher.make(rows.tolist(), feature_dropout=self.input_dropout, rng=self.rng),
                     linear=False)
        return z if self.dist is None or self.dist.world == 1 else self.dist.gather(z)

    def loss(self, epoch: int, step: int, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        from anchor_embed.training.pretrain import two_views, view_batch

        self.rng = rng             # the input dropout of this step's batches
        loss = self.method.loss(self.embed, self.method.sample(rng, self.cfg.batch_size))
        aux_value = 0.0
        if self.cfg.aux_weight > 0:
            n = self.batcher.cache.n
            rows = rng.choice(n, size=min(self.cfg.batch_size, n), replace=False).tolist()
            za, zb = two_views(self.net(view_batch(self.batcher, rows, self.views, rng, self.noise,
                                                   self.feature_dropout), linear=False))
            aux = info_nce(za, zb, self.cfg.aux_temperature)
            aux_value = aux.detach()
            loss = loss + self.cfg.aux_weight * aux
        return loss, {"loss": loss.detach(), "aux_loss": aux_value}

    def validate(self) -> dict[str, float] | None:
        if self.validation is None:
            return None
        if not self.maps:
            return validation_figures(self.model, self.batcher, self.validation)
        figures, self.chosen = blended_figures(self.model, self.batcher, self.validation, self.map_vectors,
                                               self.share, self.monitor)
        return figures

    def finish(self, out: Path) -> None:
        """The saved model's map as `final` makes it after training (linear_fit.final_map: the residual map's
        alpha chosen again beside the trained model, the map fitted again on the training and validation
        streamers with `--map-refit`); run.json records what changed."""
        if self.final is None or not (out / "model.safetensors").is_file():
            return
        from anchor_embed.model.store import save_model

        model, _ = load_model(out)
        if model.linear_map is None:
            return
        kind = model.linear_map.kind
        made = self.final(model, kind)
        if made is None:
            return
        linear, record = made
        model.set_linear_map(linear, model.cfg.linear_share)
        save_model(out, model)
        info = run_info(out)
        info["linear_map"] = {**info.get("linear_map", {}), **record}
        atomic.write_json(out / "run.json", info)
        if "blend_alpha" in record:
            say(f"[bold]transfer[/]: the residual map's alpha chosen again beside the trained model: "
                f"{record['blend_alpha']['alpha']:g} (by {record['blend_alpha']['alpha_by']})")
        if "refit" in record:
            say(f"[bold]transfer[/]: the kept {kind} map fitted again on {record['refit']['fitted_on']} training "
                "and validation streamers (the validation figures are of the map before)")

    def save_best(self, out: Path) -> None:
        """The model with the map this epoch's validation picked (none for a method without one)."""
        if self.chosen is None:
            return super().save_best(out)
        self.model.set_linear_map(self.maps[self.chosen], self.share)
        try:
            super().save_best(out)
        finally:
            self.model.set_linear_map(None, 0.0)


def read_split(cache: FeatureCache, cfg: TransferConfig, id_emb: str | Path, id_keys: str | Path | None,
               id_column: str) -> tuple[TransferSplit, InputReport]:
    """The ID embeddings read, aligned to the cache and split by the config's shares and seed (the one split
    a run trains and validates on, and a soup validates its averaged model on); with the reading's report."""
    ids, report = read_id_embeddings(id_emb, id_keys, id_column=id_column)
    return split_streamers(cache, align_to_streamers(ids, cache.keys, report), cfg.holdout_frac, cfg.val_frac,
                           cfg.seed), report


def method_default(cfg: TransferConfig, method: TransferMethod, key: str) -> float:
    """The run's `key` (input_dropout, linear_share): the flag when given, else the method's own default."""
    given = getattr(cfg, key)
    return getattr(method, key) if given is None else given


def _write_pairs(out: Path, keys: list[str], pairs: Pairs, id_vectors: np.ndarray, blended: bool) -> None:
    """pairs.jsonl: every mined pair with its ID-embedding cosine (`id_score`), the filter's score and verdict;
    when the teacher was `blended` (teacher_share < 1) the pairs were mined, and are ranked for the method, by
    their cosine in the blended space (`pairs.mined_score`), written beside it as `mining_score`."""
    from anchor_embed.vectorspace import normalise_rows

    if blended:
        unit = normalise_rows(id_vectors)
        id_score = np.einsum("ij,ij->i", unit[pairs.query], unit[pairs.neighbour])
    else:
        id_score = pairs.mined_score            # mined in the ID embeddings' own space: the same cosine
    atomic.write_jsonl(out / "pairs.jsonl", (
        {"query": keys[a], "neighbour": keys[b], "id_score": round(float(c), 5),
         **({"mining_score": round(float(m), 5)} if blended else {}),
         "content_score": None if np.isnan(d) else round(float(d), 5), "kept": bool(e)}
        for a, b, c, m, d, e in zip(pairs.query, pairs.neighbour, id_score, pairs.mined_score, pairs.content_score,
                                    pairs.kept, strict=True)))


def pretrain_views(pretrained: Path) -> tuple[ViewConfig, float, float]:
    """The masked-view settings of the pretraining run behind `pretrained` (defaults if it has none)."""
    from anchor_embed.training.pretrain import PretrainConfig

    seen: set[Path] = set()
    while run_info(pretrained).get("stage") == "transfer" and pretrained.resolve() not in seen:
        seen.add(pretrained.resolve())          # a transfer run taught further: its own pretraining's views
        pretrained = Path(run_info(pretrained).get("pretrained", ""))
    p = (saved_config(pretrained, PretrainConfig) if pretrained.is_dir() else None) or PretrainConfig()
    return p.views(), p.noise, p.feature_dropout


def transfer(
    pretrained: str | Path,
    id_emb: str | Path,
    out: str | Path,
    id_keys: str | Path | None = None,
    features: str | Path | None = None,
    config: str | Path | None = None,
    resume: bool = False,
    id_column: str = "anchor_id",
    **overrides,
) -> list[dict]:
    """Train RUN_DIR `out` from `pretrained` with the chosen method; returns per-epoch metrics."""
    from anchor_embed.transfer.filters.base import FilterInputs
    from anchor_embed.transfer.mining import filter_pairs, mine, mutual_pairs

    check_out(out, "transfer", TransferConfig)     # a user's, embed's or index folder: refused before any work
    cfg = resolve_settings(TransferConfig, "transfer", out, config, resume, overrides)
    cfg.refuse_ignored_map()
    if cfg.members > 1 and cfg.member is None:
        from anchor_embed.transfer.soup import soup

        return soup(pretrained, id_emb, out, id_keys=id_keys, features=features, config=config, resume=resume,
                    id_column=id_column, **overrides)
    pretrained, out = Path(pretrained), Path(out)
    require_model(pretrained)             # not a run: said so, not 'pass --features'
    ckpt = check_resumable(out, cfg, resume)     # before the ID embeddings are read and mined, not after
    if features is None:
        features = run_info(pretrained).get("features")
        if features is None:
            raise AnchorEmbedError(f"{pretrained}: no run.json naming its feature cache; pass --features")
    from anchor_embed.fingerprint import cache_digest, file_digest, input_digest

    inputs = {"features": cache_digest(features), "id_emb": input_digest(id_emb),
              "pretrained": file_digest(pretrained / "model.safetensors")}
    done = finished(out, cfg, ckpt) if resume else None
    if done is not None:     # a finished candidate or member of a resumed --choose/--members: no mining, no refit
        check_same_inputs(out, inputs)
        say(f"[bold]transfer[/]: {out} finished already ({counted(int(done.get('epochs_run') or 0), 'epoch')}, stopped by "
            f"{done.get('stopped_by')}); nothing to redo" + (" (a larger --epochs continues it)"
                                                            if done.get("stopped_by") == "epochs" else ""))
        return checkpoints.history_until(out, int(ckpt.name[6:]))
    torch.manual_seed(start_seed(cfg.draws()))
    torch.set_num_threads(max(1, cfg.threads))
    cache = open_cache(features)
    from anchor_embed.evaluation.evaluate import check_feature_spec
    from anchor_embed.serving.encoder import feature_settings

    try:
        feature_settings(pretrained)
    except AnchorEmbedError:        # a run recording no spec whose cache moved: nothing to compare it with
        pass
    else:
        check_feature_spec(pretrained, features, cache.meta, "teach it with", "transfer")   # other backbones, tags
    model, _ = load_model(pretrained)
    if cfg.init == "scratch":  # the same architecture, vocabulary and input limits, fresh weights
        model = FusionModel(model.cfg)
    model.train()
    batcher = Batcher.for_model(model, cache)
    split, report = read_split(cache, cfg, id_emb, id_keys, id_column)
    report.say("transfer")
    id_vectors, train_rows, held = split.id_vectors, split.train_rows, split.held_out
    if len(train_rows) < 2:
        raise AnchorEmbedError(f"{id_emb}: {len(train_rows)} streamer(s) left to train on after the hold-out "
                               "and validation shares; lower --holdout-frac/--val-frac")
    # the method's own inputs (a weights file) read, a bad one refused, before mining; the method gets what was read
    checked = METHODS.load(cfg.method).check_inputs(cfg.params, cache.keys, train_rows)

    search: dict = {}
    from anchor_embed.transfer.teacher_blend import mining_space

    space = mining_space(cache, id_vectors, train_rows, cfg.teacher_share, cfg.seed)
    q, n, s = mine(space, train_rows, cfg.k, cfg.exact_mining_up_to, seed=cfg.seed, report=search)
    score = FILTERS.load(cfg.filter)(FilterInputs(cache, model, batcher))
    pairs = filter_pairs(q, n, s, score, cfg.threshold, cfg.quantile if score is not None else None)
    if cfg.mutual:
        pairs.kept &= mutual_pairs(q, n)
    kq, kn = pairs.kept_pairs()
    if len(kq) < 2:
        raise AnchorEmbedError("fewer than 2 mined pairs survive the filter; lower --quantile/--threshold")
    mining = {"mined": int(len(q)), "kept": int(len(kq)), "kept_share": round(len(kq) / max(len(q), 1), 4),
              "filter": cfg.filter, "threshold": cfg.threshold, "quantile": cfg.quantile, "mutual": cfg.mutual,
              "teacher_share": cfg.teacher_share,
              "train_streamers": int(len(train_rows)), "validation_streamers": int(len(split.val_rows)),
              "held_out": len(held), **search}
    if search["search"] == "ivf":
        say(f"[bold]transfer[/]: mined by IVF (nprobe {search['nprobe']} of {search['nlist']} lists): Recall@{cfg.k} "
            f"{search[f'recall_at_{min(cfg.k, len(train_rows) - 1)}']:.3f} against exact search on "
            f"{search['recall_sample']} queries")
    say(f"[bold]transfer[/]: mined {mining['mined']} pairs, kept {mining['kept']} ({mining['kept_share']:.0%}) "
        f"by filter '{cfg.filter}'; {len(train_rows)} streamers to train on, {len(split.val_rows)} to validate "
        f"on, {len(held)} held out")

    data = TransferData(space, train_rows, kq, kn, pairs.mined_score[pairs.kept],
                        pairs.query[~pairs.kept], pairs.neighbour[~pairs.kept], cache.keys, checked)
    method = METHODS.load(cfg.method)(model.cfg.out_dim, data, cfg.params, cfg.seed)
    from anchor_embed.transfer.linear_fit import final_map, fit_maps, map_kinds

    share = method_default(cfg, method, "linear_share")
    validation = split_validation(split)
    kinds = map_kinds(cfg.map) if validation is not None else map_kinds(cfg.map)[:1]   # no choice to make
    if validation is None:
        say_no_validation(split, cfg.val_frac, kinds[0] if share > 0 and len(map_kinds(cfg.map)) > 1 else None)
    maps = fit_maps(model, batcher, id_vectors, train_rows, kinds, cfg.seed,
                    cfg.map_landmarks, validation) if share > 0 else {}
    model.set_linear_map(None, 0.0)     # training and its checkpoints: the fusion model; the saved model: + a map
    for kind, (_, fitted) in maps.items():
        say(f"[bold]transfer[/]: {kind} map of {fitted['inputs']} pooled features fitted on {len(train_rows)} "
            f"streamers ({MAP_FITS[kind]}, alpha {fitted['alpha']:g} by {fitted.get('alpha_by', 'leave-one-out')}), "
            f"weight {share:g} in the output's cosine")
    if len(maps) > 1:
        say("[bold]transfer[/]: the saved model keeps the map whose blend scores best on validation at its epoch"
            + (" (the residual map only with a lead beyond one standard error)" if "residual" in maps else ""))
    linear = {"share": share if maps else 0.0, **{kind: fitted for kind, (_, fitted) in maps.items()}}
    say_other_cache(pretrained, features, inputs["features"], cache.meta)
    from anchor_embed.training.distributed import Dist

    dist = Dist.from_env()
    info = {"stage": "transfer", "features": str(Path(features).resolve()), "pretrained": str(pretrained.resolve()),
            "id_emb": str(Path(id_emb).resolve()), "mining": mining, "inputs": inputs, "processes": dist.world,
            "input_dropout": method_default(cfg, method, "input_dropout"), "linear_map": linear}
    with training_run(out, cfg, resume, info, "transfer run", dist) as ckpt:
        if dist.is_main:
            _write_pairs(out, cache.keys, pairs, id_vectors, cfg.teacher_share < 1)
            atomic.write_lines(out / SEEN_IDS, sorted(set(split.seen_keys(cache.keys)) | read_seen(pretrained)))
        steps = max(1, len(train_rows) // cfg.batch_size)
        final = None
        if maps and cfg.member is None:     # a soup's members: the soup makes its map (transfer/soup.py)
            def final(trained, kind: str):
                return final_map(trained, batcher, split, validation, kind, maps[kind][1]["alpha"], share,
                                 cfg.map_refit, cfg.seed, cfg.map_landmarks)
        task = TransferTask(model, batcher, method, cfg, steps, pretrain_views(pretrained),
                            validation if dist.is_main else None,
                            {kind: m for kind, (m, _) in maps.items()}, share, final)
        return fit(task, out, cfg, ckpt, dist)


def say_no_validation(split: TransferSplit, val_frac: float, kept_map: str | None) -> None:
    """One line when no streamers validate: nothing is chosen on validation, so say what is kept instead (the
    last epoch; of --map auto's maps, `kept_map`, its first) rather than claim a choice that does not happen."""
    from anchor_embed.transfer.split import no_validation_reason

    say(f"[yellow]transfer[/]: no validation streamers ({no_validation_reason(split, val_frac)}): no epoch "
        "selection or early stop, the last epoch is kept" + (
            f"; of --map auto's maps only the {kept_map} map is fitted and kept (choosing among them needs "
            "validation)" if kept_map else ""))


def say_other_cache(pretrained: Path, features: str | Path, digest: str, meta: dict) -> None:
    """One line when `features` is not the cache the pretrained run was trained on (its streamers or their atom
    lists changed since, e.g. a features rerun; `digest` and `meta` are that cache's), naming the settings that
    differ: legitimate (a larger catalogue), but a user should know the base saw other inputs."""
    try:
        info = run_info(pretrained)
    except AnchorEmbedError:
        return
    then = (info.get("inputs") or {}).get("features")
    if then is None or then == digest:
        return
    before, now = info.get("feature_meta") or {}, meta
    from anchor_embed.features.cache import FEATURE_SPEC, STREAMER_CAPS

    keys = STREAMER_CAPS + FEATURE_SPEC
    changed = [f"{k} {before.get(k)} -> {now.get(k)}" for k in keys if before.get(k) != now.get(k)]
    say(f"[yellow]transfer[/]: {features} is not the cache {pretrained} was pretrained on ("
        + ("; ".join(changed) if changed else "its streamers or their features changed since") + ")")
