"""Quality runs of one dataset: every registered method, the references and the ablation rows, over seeds.

Per seed: one pretraining run (it never reads ID embeddings, so every variant shares it); per ID variant
(clean, noisy rows, sparse behaviour) every method of the registry from that start with evaluate's
hold-out given explicitly, then one evaluate table (frozen rows, RidgeCV, content-kNN averaging, the
teaching ID embeddings themselves, every model). On the clean variant the ablation rows of the default
method are trained too, each changing one lever. Every run picks its epoch on its own validation share of
the training streamers; the hold-out is read only by evaluate.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.id_variants import noisy_ids, sparse_ids, user_counts

HOLDOUT = 0.2

# record meta fields of the shared datasets, as tags (`features --meta-tags`): what a platform knows of every
# streamer besides texts and frames. Twitch's `followers_in_matrix` is left out: it is counted from the very
# interactions the ID embeddings (and the truth) are learned from.
META_TAGS = {"twitch-streamers": "total_followers:log,total_views:log,avg_viewers_3m:log,partnered,mature_content",
             "movielens-100k": "year:5,language"}

# one lever each, against the default transfer (contrastive with its defaults): name -> transfer settings
ABLATIONS: dict[str, dict] = {
    "pairs (the original objective)": {"params": {"batches": "pairs"}},
    "neighbourhoods of 4": {"params": {"group": 4}},
    "one positive per seed": {"params": {"positives": "pair"}},
    "no soft targets": {"params": {"soft_weight": 0.0}},
    "soft targets only": {"params": {"soft_weight": 1.0}},
    "hard negatives (2 filtered-out a seed)": {"params": {"hard_negatives": 2}},
    "ID-regression head (weight 0.5)": {"params": {"id_head_weight": 0.5}},
    "learned temperature": {"params": {"learn_temperature": True}},
    "no filter": {"filter": "none"},
    "text filter": {"filter": "text"},
    "content filter, keep half": {"quantile": 0.5},
    "from scratch (no pretraining)": {"init": "scratch"},
    "+ self-supervised view loss (0.3)": {"aux_weight": 0.3},
    "reliability weights (tanh of user counts, as aldi)": {"params": {"weights_file": "{user_counts}"}},
    "weight average (EMA 0.97 a step)": {"weight_average": 0.97},
    "fp32 throughout (no bf16 autocast)": {"precision": "fp32"},
    "no input dropout": {"input_dropout": 0.0},
    "no map (the fusion vector alone)": {"linear_share": 0.0},
    "linear map only (--map linear)": {"map": "linear"},
    "kernel map only (--map kernel)": {"map": "kernel"},
    "residual map only (--map residual)": {"map": "residual"},
    "aldi given the same maps (0.5, chosen on validation)": {"method": "aldi", "linear_share": 0.5},
}


@dataclass
class Budget:
    """Caps of the runs (validation picks the epoch below them) and the variants to run."""

    pretrain_epochs: int = 30
    transfer_epochs: int = 100
    patience: int = 10
    noise_share: float = 0.3
    sparse_frac: float = 0.2
    ablations: bool = True
    ablation_seeds: int | None = None     # ablation rows on the first this many seeds (None: every seed)
    variants: tuple[str, ...] = ("clean", "noisy", "sparse")
    extra: dict = field(default_factory=dict)


VARIANT_TITLES = {"clean": "clean ID embeddings", "noisy": "30% of the ID rows replaced by noise",
                  "sparse": "sparse behaviour: ID embeddings from 20% of the interactions"}


def _merge(base: dict, change: dict, user_counts: Path) -> dict:
    """Settings of an ablation row: the base with its change, `{user_counts}` standing for the counts file."""
    out = {**base, **{k: v for k, v in change.items() if k != "params"}}
    out["params"] = {**base.get("params", {}), **{k: str(user_counts) if v == "{user_counts}" else v
                                                  for k, v in change.get("params", {}).items()}}
    return out


def _settled(run: Path, config_cls: type, overrides: dict, features_digest: str | None = None) -> bool:
    """Whether RUN finished with exactly the settings these overrides give today (defaults included, a method's
    params resolved), by today's code and, given `features_digest` (`cache_digest` of the cache, taken once
    per dataset), from that cache as it is now; a run made with other settings, older defaults, other code or
    another cache is removed, never reused silently."""
    import shutil

    from anchor_embed.config import read_saved, resolve
    from anchor_embed.training.fit import RESUMABLE, made_by_other_code, run_info

    if not (run / "outcome.json").is_file() and not (run / "config.json").is_file():
        return False
    stale = "other code" if made_by_other_code(run) else \
        "another feature cache" if features_digest is not None and \
        run_info(run).get("inputs", {}).get("features") != features_digest else None
    if stale:
        print(f"[bench] {run}: made by {stale}; training it again", file=sys.stderr, flush=True)
        shutil.rmtree(run)
        return False

    def norm(cfg) -> dict:
        d = cfg.model_dump(exclude=RESUMABLE - {"epochs"})      # hardware may differ; the budget may not
        if "method" in d:
            from anchor_embed.transfer.methods import METHODS

            d["params"] = METHODS.load(cfg.method).Params.model_validate(cfg.params or {}).model_dump()
        return d
    try:
        same = norm(read_saved(config_cls, run / "config.json")) == norm(resolve(config_cls, None, overrides))
    except Exception:  # an unreadable or older config: not the same run
        same = False
    if not same:
        print(f"[bench] {run}: made with other settings; training it again", file=sys.stderr, flush=True)
        shutil.rmtree(run)
        return False
    return (run / "outcome.json").is_file()


def _transfer(pre: Path, ids: Path, run: Path, seed: int, budget: Budget, settings: dict, features_digest: str,
              failed: list[str]) -> Path | None:
    """The finished run (trained now or reused), or None when training refused or stopped (a collapse, say):
    the reason goes to `failed` and the report, and the bench goes on with the other runs."""
    from anchor_embed.errors import AnchorEmbedError
    from anchor_embed.transfer.config import TransferConfig
    from anchor_embed.transfer.run import transfer

    fixed = {"seed": seed, "holdout_frac": HOLDOUT, "epochs": budget.transfer_epochs, "patience": budget.patience}
    if not _settled(run, TransferConfig, {**settings, **fixed}, features_digest):
        try:
            transfer(pre, ids, run, resume=(run / "checkpoints" / "latest.json").is_file(), **fixed, **settings)
        except AnchorEmbedError as exc:
            failed.append(f"{'/'.join(run.parts[-3:])}: {exc}")
            print(f"[bench] {run}: failed, left out of the tables: {exc}", file=sys.stderr, flush=True)
            return None
    return run


def run_dataset(data: Path, out: Path, seeds: int, budget: Budget, tools: Path) -> dict:
    """Tables {variant: {row: [evaluate rows by seed]}}, the ablation {row: [...]} and pretraining curves."""
    from anchor_embed.evaluation.evaluate import evaluate
    from anchor_embed.features.build import build_features
    from anchor_embed.fingerprint import cache_digest
    from anchor_embed.training.config import PretrainConfig
    from anchor_embed.training.pretrain import pretrain
    from anchor_embed.transfer.methods import METHODS

    root = out / data.name
    cache = root / "features"
    build_features(data / "streamers.jsonl", cache, media_root=data, meta_tags=META_TAGS.get(data.name))
    digest = cache_digest(cache)
    truth = data / "ids.npy"
    variant_ids = {
        "clean": (truth, user_counts(data, root / "ids-clean")),
        "noisy": (noisy_ids(truth, root / "ids-noisy" / "ids.npy", budget.noise_share, 0),
                  user_counts(data, root / "ids-clean")),
        "sparse": (sparse_ids(data, root / "ids-sparse", budget.sparse_frac, 0, tools / "id_embeddings.py"),
                   user_counts(data, root / "ids-sparse", budget.sparse_frac, 0)),
    }
    tables: dict[str, dict[str, list]] = {v: {} for v in budget.variants}
    ablation: dict[str, list] = {}
    failed: list[str] = []
    curves = []
    for seed in range(seeds):
        pre = root / "pretrain" / f"seed{seed}"
        fixed = {"epochs": budget.pretrain_epochs, "seed": seed, "patience": budget.patience}
        if not _settled(pre, PretrainConfig, fixed, digest):
            pretrain(cache, pre, resume=(pre / "checkpoints" / "latest.json").is_file(), **fixed)
        if seed == 0:
            curves = [json.loads(x) for x in (pre / "metrics.jsonl").read_text().splitlines()]
        for variant in budget.variants:
            ids, counts = variant_ids[variant]
            vdir = root / variant / f"seed{seed}"
            runs = [pre]
            for m in METHODS.names():
                settings = {"method": m, **({"params": {"weights_file": str(counts)}} if m == "aldi" else {})}
                runs.append(_transfer(pre, ids, vdir / m, seed, budget, settings, digest, failed))
            runs = [r for r in runs if r is not None]
            rows = evaluate(cache, truth, models=runs, seed=seed, holdout_frac=HOLDOUT, out=vdir / "evaluation",
                            ridge=True, knn_average=True, train_id_emb=None if variant == "clean" else ids)
            for r in rows:
                label = "pretrained (no ID embeddings)" if r["model"] == pre.name else r["model"]
                tables[variant].setdefault(label, []).append({**r, "seed": seed})
            if variant == "clean" and budget.ablations and seed < (budget.ablation_seeds or seeds):
                named = [("default (contrastive)", vdir / "contrastive" if vdir / "contrastive" in runs else None)]
                for i, (name, change) in enumerate(ABLATIONS.items()):
                    named.append((name, _transfer(pre, ids, vdir / "ablation" / f"a{i:02d}", seed, budget,
                                                  _merge({"method": "contrastive"}, change, counts), digest, failed)))
                names, abl_runs = zip(*[(n, r) for n, r in named if r is not None], strict=True)
                rows = evaluate(cache, truth, models=list(abl_runs), seed=seed, holdout_frac=HOLDOUT, frozen=False,
                                out=vdir / "ablation" / "evaluation")
                for name, r in zip(names, rows, strict=True):
                    ablation.setdefault(name, []).append({**r, "seed": seed})
    return {"tables": tables, "ablation": ablation, "curves": curves, "failed": failed}
