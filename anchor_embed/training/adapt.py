"""`anchor-embed adapt`: teach a trained model a new task by a small patch, the base left as it is.

The task is a label (a class or a number per streamer, from a CSV or Parquet keyed by anchor_id) learned
by a head on the streamer vector. Two modes share the training loop, the data and the selection: `adapter`
(low-rank deltas on the fusion transformer plus the head; only they train and only they are saved) and
`full` (every weight, a whole new model), both starting from the closed-form head; a validation share picks
the epoch. `head` (the head alone on frozen vectors, a linear model) is that closed-form fit itself: ridge or
logistic regression, its regularisation picked on the same validation share. With --holdout-frac a test
share is scored once at the end (outcome.json, test.json).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from anchor_embed import atomic
from anchor_embed.data.input_report import is_number
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.features.cache import open_cache
from anchor_embed.model.adapter import add_patch, load_patch, patch_tensors
from anchor_embed.model.batcher import Batcher, embed_rows
from anchor_embed.model.store import load_model, model_hash, require_model
from anchor_embed.progress import say
from anchor_embed.training.config import AdaptConfig
from anchor_embed.training.fit import Task, fit, resolve_settings, run_info, training_run

PATCH, HEAD, ADAPTER = "patch.safetensors", "head.safetensors", "adapter.json"


def _splits(keys: list[str], frac_test: float, frac_val: float, seed: int) -> tuple[list[str], list[str], list[str]]:
    from anchor_embed.evaluation.metrics import holdout_split

    test = holdout_split(keys, frac_test, seed, salt="adapt-test") if frac_test else set()
    rest = [k for k in keys if k not in test]
    val = holdout_split(rest, frac_val, seed, salt="adapt-val") if frac_val else set()
    return [k for k in rest if k not in val], sorted(val), sorted(test)


class AdaptTask(Task):
    """A head on the (patched, fully trained, or frozen) fusion model's vector, for one label."""

    monitor = "score"

    def __init__(self, model, batcher: Batcher, cfg: AdaptConfig, rows: dict[str, np.ndarray], y: dict[str, np.ndarray],
                 classes: list[str]) -> None:
        self.model, self.batcher, self.cfg = model, batcher, cfg
        self.label = f"adapt:{cfg.mode}"
        self.rows, self.y, self.classes = rows, y, classes
        out = len(classes) if cfg.kind == "classify" else 1
        self.head = nn.Linear(model.dim, out)
        self.deltas = add_patch(model, cfg.rank, cfg.alpha) if cfg.mode == "adapter" else {}
        self.patch = nn.ModuleDict({p.replace(".", "__"): d for p, d in self.deltas.items()})

    def modules(self) -> dict:
        mods = {"head": self.head}
        if self.cfg.mode == "adapter":
            mods["patch"] = self.patch
        elif self.cfg.mode == "full":
            mods["model"] = self.model
        return mods

    def trainable(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def steps_per_epoch(self) -> int:
        return max(1, len(self.rows["train"]) // self.cfg.batch_size)

    def batch_size(self) -> int:
        return self.cfg.batch_size

    def start_epoch(self, epoch: int) -> None:
        self.model.train()          # `head` never reaches the loop: it is fitted in closed form (fit_head)

    def _logits(self, rows: np.ndarray) -> torch.Tensor:
        return self.head((self.net or self.model)(self.batcher.make(rows.tolist())))

    def _loss(self, logits: torch.Tensor, y: np.ndarray) -> torch.Tensor:
        if self.cfg.kind == "classify":
            return F.cross_entropy(logits, torch.from_numpy(y).to(logits.device))
        return F.mse_loss(logits[:, 0], torch.from_numpy(y).to(logits.device))

    def loss(self, epoch: int, step: int, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        n = len(self.rows["train"])
        pick = rng.choice(n, size=min(self.cfg.batch_size, n), replace=False)
        loss = self._loss(self._logits(self.rows["train"][pick]), self.y["train"][pick])
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def predict(self, part: str) -> np.ndarray:
        was = self.model.training
        self.model.eval()
        rows = self.rows[part]
        out = [self._logits(rows[s:s + 512]).float().cpu().numpy() for s in range(0, len(rows), 512)]
        self.model.train(was)
        return np.concatenate(out) if out else np.zeros((0, 1))

    def score(self, part: str) -> dict[str, float]:
        """macro-F1 (classes) or R² (numbers) of a split: the selection figure."""
        from sklearn.metrics import f1_score, r2_score

        pred, y = self.predict(part), self.y[part]
        if self.cfg.kind == "classify":
            return {"score": float(f1_score(y, pred.argmax(1), average="macro"))}
        return {"score": float(r2_score(y, pred[:, 0]))}

    def validate(self) -> dict[str, float] | None:
        return {"score": self.score("val")["score"]} if len(self.rows["val"]) >= 2 else None

    def save_head(self, out: Path) -> None:
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(out / HEAD))

    def save_best(self, out: Path) -> None:
        self.save_head(out)
        if self.cfg.mode == "adapter":
            save_file(patch_tensors(self.deltas), str(out / PATCH))
        elif self.cfg.mode == "full":
            from anchor_embed.model.store import save_model

            save_model(out, self.model)


def adapt(pretrained: str | Path, labels: str | Path, out: str | Path, features: str | Path | None = None,
          config: str | Path | None = None, resume: bool = False, **overrides) -> dict:
    """Train RUN `out` on a label task from the run `pretrained`; returns outcome with sizes and test scores."""
    from anchor_embed.evaluation.probe import read_labels, say_left_out
    from anchor_embed.training.run_folder import check_out

    check_out(out, "adapt", AdaptConfig)            # a user's, embed's or index folder: refused before any work
    cfg = resolve_settings(AdaptConfig, "adapt", out, config, resume, overrides)
    pretrained, out = Path(pretrained), Path(out)
    require_model(pretrained)             # not a run: said so, not 'pass --features'
    features = features or run_info(pretrained).get("features")
    if features is None:
        raise AnchorEmbedError(f"{pretrained}: no run.json naming its feature cache; pass --features")
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, cfg.threads))
    cache = open_cache(features)
    y_of, report = read_labels(labels, cfg.target, cfg.kind)
    report.say("adapt")
    pos = cache.key_index()
    keys = sorted(k for k in y_of if k in pos)
    say_left_out("adapt", y_of, keys, "are not in the feature cache")
    if len(keys) < 10:
        raise AnchorEmbedError(f"{labels}: only {len(keys)} labelled streamers are in the feature cache {features}")
    counts = Counter(str(y_of[k]) for k in keys) if cfg.kind == "classify" else Counter()
    classes = sorted(counts)
    if len(classes) > NUMBER_CLASSES and all(is_number(c) for c in classes):
        say(f"[yellow]adapt[/]: '{cfg.target}' gives {len(classes)} classes, every one a number; if they are "
            "quantities, --kind regress fits them as numbers")
    lone = sum(1 for n in counts.values() if n == 1)
    if lone > len(classes) / 2:
        raise AnchorEmbedError(f"{labels}: '{cfg.target}' has {len(classes)} classes among {len(keys)} labelled "
                               f"streamers, {lone} of them with a single streamer: nothing a head can learn "
                               "(an id column? or pass --kind regress for numbers)")
    values = np.array([y_of[k] for k in keys], np.float64) if cfg.kind == "regress" else None
    if values is not None and values.min() == values.max():      # read_labels checks the file; these are the cached
        raise AnchorEmbedError(f"{labels}: '{cfg.target}' is {values[0]:g} for every one of the {len(keys)} labelled "
                               f"streamers in the feature cache {features}; nothing to predict")
    mean, sd = (float(values.mean()), float(values.std() or 1.0)) if values is not None else (0.0, 1.0)
    parts = dict(zip(("train", "val", "test"), _splits(keys, cfg.holdout_frac, cfg.val_frac, cfg.seed), strict=True))
    rows = {p: np.array([pos[k] for k in ks], np.int64) for p, ks in parts.items()}
    y = {p: (np.array([classes.index(str(y_of[k])) for k in ks], np.int64) if cfg.kind == "classify"
             else np.array([(y_of[k] - mean) / sd for k in ks], np.float32)) for p, ks in parts.items()}
    # refused here, before the run folder exists: failing inside it left a folder `predict` called unfinished,
    # and --resume failed the same way
    if cfg.kind == "classify":
        check_training_classes(labels, cfg.target, classes, counts, y["train"])
    if cfg.mode != "head":                  # the closed-form head runs where it is; training needs the device
        from anchor_embed.training.device import resolve_device

        resolve_device(cfg.device)
    model, _ = load_model(pretrained)
    model.train()
    task = AdaptTask(model, Batcher.for_model(model, cache), cfg, rows, y, classes)
    total = sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in task.head.parameters())
    from anchor_embed.fingerprint import cache_digest, fingerprint, input_digest

    base_hash = model_hash(pretrained)      # one read of the base's weights for the three records below
    # what --resume checks by content: another base, labels file or class list would mix runs part-way
    inputs = {"pretrained": base_hash, "labels": input_digest(labels), "features": cache_digest(features),
              "classes": fingerprint(classes=classes)}
    info = {"stage": "adapt", "features": str(Path(features).resolve()), "pretrained": str(pretrained.resolve()),
            "labels": str(labels), "base_hash": base_hash, "classes": classes, "target_mean": mean,
            "target_sd": sd, "inputs": inputs}
    with training_run(out, cfg, resume, info, "adapt run") as ckpt:
        chosen = None           # the warm start's regularisation, when chosen here (not on a resume)
        if cfg.mode == "head":
            fit_head(task, out)
        else:
            start = None
            if ckpt is None:    # the loop starts from the best head of the vectors as they are, which stays
                figure, chosen = closed_form_head(task)     # the run's (epoch 0) unless an epoch beats it
                start = figure if len(rows["val"]) >= 2 else None     # what `task.validate()` scores
                task.save_best(out)
            fit(task, out, cfg, ckpt, start_figure=start)
        restore_best(task, out)
        warm_start_kept = cfg.mode != "head" and refit_kept_warm_start(task, out, chosen)
        test = task.score("test") if len(rows["test"]) >= 2 else None
        size = sum((out / f).stat().st_size for f in (PATCH, HEAD, "model.safetensors") if (out / f).is_file())
        summary = {"mode": cfg.mode, "rank": cfg.rank if cfg.mode == "adapter" else None, "base": str(pretrained.resolve()),
                   "base_hash": base_hash, "target": cfg.target, "kind": cfg.kind, "classes": classes,
                   "alpha": task.deltas[next(iter(task.deltas))].scale * cfg.rank if task.deltas else None,
                   "trainable_params": task.trainable(), "total_params": total,
                   "trainable_share": round(task.trainable() / total, 5), "patch_bytes": size,
                   "test_score": None if test is None else round(test["score"], 4),
                   "test_metric": None if test is None else ("macro_f1" if cfg.kind == "classify" else "r2")}
        atomic.write_json(out / ADAPTER, summary)
        from anchor_embed.training.card import write_card

        write_card(out)                          # with the test score
    say(f"[bold]adapt[/]: {cfg.mode}: {summary['trainable_params']} trainable parameters "
        f"({summary['trainable_share']:.2%} of {total}), {size} bytes saved"
        + (f"; test {summary['test_metric']} {summary['test_score']}" if test else ""))
    if warm_start_kept:         # the saved patch is the starting one: nothing trained is used
        say(f"[yellow]adapt[/]: no epoch beat the closed-form head on validation, so the run is that head on the "
            f"base's vectors: its {cfg.mode} weights are the starting ones (try --mode head, or a lower --lr)")
    return summary


NUMBER_CLASSES = 20     # more classes than this, all numbers: likely quantities given without --kind regress


def check_training_classes(labels: str | Path, target: str, classes: list[str], counts: Counter,
                           train: np.ndarray) -> None:
    """Refuse labels whose training streamers hold one class (a head needs two): one in the whole file, or the
    others all drawn into the validation and test shares."""
    if len(set(train.tolist())) >= 2:
        return
    if len(classes) == 1:
        raise AnchorEmbedError(f"{labels}: '{target}' is {classes[0]!r} for all {counts[classes[0]]} labelled "
                               "streamers in the feature cache; a head needs two classes")
    only = classes[int(train[0])] if len(train) else None
    others = [c for c in classes if c != only]
    raise AnchorEmbedError(f"{labels}: the training streamers of '{target}' hold one class ({only!r}): the "
                           f"validation and test shares took every streamer of {', '.join(map(repr, others[:5]))} "
                           f"({sum(counts[c] for c in others)}); label more of them, or lower --val-frac and "
                           "--holdout-frac")


# regularisation grids of a head fitted in closed form (`fit_head`): ridge alpha, logistic C
HEAD_ALPHAS = tuple(10.0 ** np.arange(-3, 4))
HEAD_CS = tuple(10.0 ** np.arange(-3, 4))


def fit_head(task: AdaptTask, out: Path) -> None:
    """`--mode head`: the head alone on the frozen vectors is a linear model, so it is fitted in closed form
    (`closed_form_head`) instead of by SGD, which at an adapter's learning rate and epochs stays far below a
    linear probe of the same vectors (docs/tuning.md, eighteenth round)."""
    from anchor_embed.training.card import write_card

    figure, c = closed_form_head(task)
    chosen_by = "validation" if len(task.rows["val"]) >= 2 else "cross-validation"    # as closed_form_head chose
    refit = task.cfg.head_refit and len(task.rows["val"]) > 0
    if refit:
        refit_head(task, c)
    task.save_best(out)
    say(f"[bold]adapt[/]: head fitted in closed form ({'logistic C' if task.cfg.kind == 'classify' else 'ridge alpha'}"
        f" {c:g} by {chosen_by} score {figure:.4f}" + (", then again on training + validation streamers)" if refit
                                                       else ")"))
    atomic.write_json(out / "outcome.json", {"complete": True, "epochs_run": 0, "stopped_by": "closed form",
                                             "best_epoch": None, "monitor": task.monitor, "best": figure,
                                             "regularisation": c, "chosen_by": chosen_by, "head_refit": refit})
    write_card(out)


def refit_kept_warm_start(task: AdaptTask, out: Path, chosen: float | None = None) -> bool:
    """When an adapter/full run keeps its warm start (epoch 0: no epoch beat it on validation), fit that
    closed-form head again on the training and validation streamers, as `--mode head` does (`refit_head`); a
    kept trained epoch keeps the head it trained. The warm start's regularisation is `chosen` when this process
    chose it, else chosen again (a resumed run: the vectors are the base model's, so it is the same choice).
    Recorded in outcome.json (`head_refit`). Returns whether the warm start was kept."""
    outcome = json.loads((out / "outcome.json").read_text())
    refit = task.cfg.head_refit and outcome.get("best_epoch") == 0 and len(task.rows["val"]) > 0
    if refit:
        c = chosen if chosen is not None else closed_form_head(task)[1]
        refit_head(task, c)
        task.save_head(out)
        say(f"[bold]adapt[/]: the kept warm start's head fitted again on training + validation streamers "
            f"({'logistic C' if task.cfg.kind == 'classify' else 'ridge alpha'} {c:g})")
    atomic.write_json(out / "outcome.json", {**outcome, "head_refit": refit})
    from anchor_embed.training.card import write_card

    write_card(out)
    return outcome.get("best_epoch") == 0


def closed_form_head(task: AdaptTask) -> tuple[float, float]:
    """Install in the head the ridge (numbers) or logistic (classes) fit of the model's current vectors of the
    training streamers, standardised, the scaler folded in; its regularisation (HEAD_ALPHAS / HEAD_CS) the one
    scoring best on the validation share. Returns (that validation score, the regularisation)."""
    x = embed_rows(task.model, task.batcher, task.rows["train"])
    if task.cfg.kind == "classify" and len(np.unique(task.y["train"])) < 2:
        raise AnchorEmbedError(f"{task.cfg.target}: one class among the training streamers; a head needs two")
    grid = HEAD_CS if task.cfg.kind == "classify" else HEAD_ALPHAS
    if len(task.rows["val"]) < 2:               # no validation share (--val-frac 0): choose by CV on the training one
        figure, c = max(((_cv_figure(task, x, c), c) for c in grid), key=lambda t: t[0])   # the first of equals
        say(f"[bold]adapt[/]: no validation share; the head's regularisation chosen by {HEAD_FOLDS}-fold "
            f"cross-validation on the training streamers ({figure:.4f})")
    else:
        best = None
        for c in grid:
            _fit_install(task, x, task.y["train"], c)
            figure = task.score("val")["score"]
            if best is None or figure > best[0]:
                best = (figure, c)
        figure, c = best
    _fit_install(task, x, task.y["train"], c)
    return figure, c


HEAD_FOLDS = 5


def _cv_figure(task: AdaptTask, x: np.ndarray, c: float) -> float:
    """Mean held-out score (macro-F1 or R², as `AdaptTask.score`) of the closed-form head at regularisation `c`
    over (stratified) folds of the training streamers: the choice when there is no validation share."""
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = task.y["train"]
    classify = task.cfg.kind == "classify"
    folds = min(HEAD_FOLDS, int(np.unique(y, return_counts=True)[1].min()) if classify else len(y))
    if folds < 2:
        return 0.0                              # a class of one streamer: no fold can score it; keep the grid order
    split = (StratifiedKFold if classify else KFold)(folds, shuffle=True, random_state=task.cfg.seed)
    model = make_pipeline(StandardScaler(), _linear_model(task, c))
    return float(np.mean(cross_val_score(model, x, y, cv=split, scoring="f1_macro" if classify else "r2")))


def refit_head(task: AdaptTask, c: float) -> None:
    """Fit the closed-form head again at regularisation `c` on the training and validation streamers, once
    validation has chosen `c` (as `--map-refit` does for a transfer's map): the saved head then learns from every
    labelled streamer outside the test share."""
    rows = np.concatenate([task.rows["train"], task.rows["val"]])
    _fit_install(task, embed_rows(task.model, task.batcher, rows), np.concatenate([task.y["train"], task.y["val"]]), c)


def _fit_install(task: AdaptTask, x: np.ndarray, y: np.ndarray, c: float) -> None:
    """Fit scikit-learn's ridge (alpha `c`) or logistic regression (C `c`) on the standardised `x` and install it
    in the head (`_install`)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    m = _linear_model(task, c).fit(scaler.transform(x), y)
    _install(task, m, scaler, np.unique(y) if task.cfg.kind == "classify" else None)


def _linear_model(task: AdaptTask, c: float):
    """An unfitted scikit-learn logistic regression (classes, C `c`) or ridge (numbers, alpha `c`): the head's
    closed form, one definition for the fit and for cross-validation."""
    from sklearn.linear_model import LogisticRegression, Ridge

    return LogisticRegression(C=c, max_iter=2000) if task.cfg.kind == "classify" else Ridge(alpha=c)


def _install(task: AdaptTask, m, scaler, present: np.ndarray | None) -> None:
    """Copy a fitted sklearn linear model into the head, the scaler folded in: w / s, b - (w / s) . mean. A
    binary logistic model scores class 1 against a zero row; classes absent from the rows it was fitted on get a
    score that never wins."""
    coef, intercept = np.atleast_2d(m.coef_), np.atleast_1d(m.intercept_)
    w, b = coef / scaler.scale_, intercept - (coef / scaler.scale_) @ scaler.mean_
    weight = torch.zeros_like(task.head.weight)
    bias = torch.zeros_like(task.head.bias)
    if present is None:
        weight[:], bias[:] = torch.from_numpy(w).float(), torch.from_numpy(b).float()
    else:
        bias[:] = -1e4
        if len(present) == 2:
            w, b = np.vstack([np.zeros_like(w), w]), np.concatenate([[0.0], b])
        weight[present], bias[present] = torch.from_numpy(w).float(), torch.from_numpy(b).float()
    with torch.no_grad():
        task.head.weight.copy_(weight)
        task.head.bias.copy_(bias)


def restore_best(task: AdaptTask, out: Path) -> None:
    """Put the saved (best-epoch) weights back into the task, to score its test share."""
    task.head.load_state_dict(load_file(str(out / HEAD)))
    if task.cfg.mode == "adapter":
        t = load_file(str(out / PATCH))
        with torch.no_grad():
            for p, d in task.deltas.items():
                d.A.copy_(t[f"{p}.A"])
                d.B.copy_(t[f"{p}.B"])
    elif task.cfg.mode == "full":
        task.model.load_state_dict(load_model(out)[0].state_dict())


def adapter_info(patch_dir: str | Path) -> dict:
    """An adapt run's adapter.json (mode, base path and hash, rank); one line when the folder is no adapt run."""
    f = Path(patch_dir) / ADAPTER
    if not f.is_file():
        if run_info(Path(patch_dir)).get("stage") == "adapt":     # stopped before its end wrote adapter.json
            raise AnchorEmbedError(f"{patch_dir}: the adapt run did not finish (no {ADAPTER}); "
                                   + how_to_finish(Path(patch_dir)))
        raise AnchorEmbedError(f"{patch_dir}: not an adapt run (no {ADAPTER})")
    info = atomic.read_json_object(f)
    need = ("mode", "base", "base_hash", "target", "kind") + (("rank", "alpha") if info.get("mode") == "adapter" else ())
    missing = [k for k in need if not isinstance(info.get(k), (str, int, float)) or isinstance(info.get(k), bool)]
    bad = [f"{k} {info[k]!r}" for k, ok in (("mode", ("head", "adapter", "full")), ("kind", ("classify", "regress")))
           if not missing and info[k] not in ok]
    if missing or bad:
        what = f"no usable {missing[0]!r}" if missing else bad[0]
        raise AnchorEmbedError(f"{f}: {what}; the file is written by `anchor-embed adapt` (run it again)")
    return info


def how_to_finish(run: Path) -> str:
    """What finishes an adapt run that stopped: --resume from its latest epoch checkpoint; with none (a head
    fitted in closed form saves none, and a run stopped on an error before its first epoch ended), a resume
    would only start over, so running it again (the folder is started over) is what is said."""
    from anchor_embed.training import checkpoints

    try:
        ckpt = checkpoints.latest(run)
    except AnchorEmbedError:            # a damaged latest.json: the resume names it
        return "run the same `anchor-embed adapt` with --resume to finish it"
    if ckpt is not None:
        return f"run the same `anchor-embed adapt` with --resume to finish it from its {ckpt.name} checkpoint"
    return ("it stopped before any checkpoint (on the error it printed, if any), so there is nothing to resume: "
            "run the same `anchor-embed adapt` again")


def load_adapted(patch_dir: str | Path, base: str | Path | None = None):
    """The fusion model of an adapt run: its base with the patch applied (adapter), or its own (full/head).
    `base` is where the base model lies (default: where it lay when adapt ran); it must hold the same weights."""
    patch_dir = Path(patch_dir)
    info = adapter_info(patch_dir)
    base = Path(base) if base is not None else Path(info["base"])
    if info["mode"] != "full" and (not (base / "model.safetensors").is_file()
                                   or model_hash(base) != info["base_hash"]):
        raise AnchorEmbedError(f"{patch_dir}: its base model {base} is gone or changed (hash {info['base_hash']})")
    return _applied(patch_dir, info, base), info


def _applied(patch_dir: Path, info: dict, base: Path):
    """The model of adapt run `patch_dir` (`info`: its adapter.json) on the base model at `base`, checked."""
    if info["mode"] == "full":
        return load_model(patch_dir)[0]
    model, _ = load_model(base)
    if info["mode"] == "adapter":
        load_patch(model, load_file(str(patch_dir / PATCH)), info["rank"], info["alpha"])
    return model.eval()


def load_adapted_of(patch_dir: str | Path, model: str | Path):
    """`load_adapted` on the run `model` as its base, refusing one whose weights are not the base's the patch
    was trained from, compared by content (a copy or a moved base is the same base; a full fine-tune of another
    base was taken with any --model, its vectors then built with that model's feature settings)."""
    info = adapter_info(patch_dir)
    have = model_hash(Path(model))
    if have != info["base_hash"]:
        raise AnchorEmbedError(f"{patch_dir}: a patch of the model {info['base_hash']} ({info['base']}), not of "
                               f"--model {model} ({have})")
    return _applied(Path(patch_dir), info, Path(model)), info


def adapted_hash(base_hash: str, patch_dir: str | Path) -> str:
    """The identity of vectors made by the model of hash `base_hash` with the patch of `patch_dir`: vectors,
    indexes and servers are checked against it, so patched vectors never pass for the base's (a full
    fine-tune's vectors have a mean cosine of .13 with its base's)."""
    import hashlib

    from anchor_embed.fingerprint import adapter_digest

    return hashlib.sha1(f"{base_hash}+{adapter_digest(patch_dir)}".encode()).hexdigest()[:16]
