"""The one training loop: every stage (pretraining, every transfer method) is a `Task` run by `fit()`.

A task supplies its modules, the number of steps of an epoch and the loss of one step; `fit` owns the
rest: optimizer, epochs, progress, per-epoch metrics, checkpoints every epoch, resume, and the validation
hook that keeps the best model and stops early.

Every random draw of a step comes from (seed, epoch, step), and the torch RNG is reseeded at each epoch
start, so a run resumed from the last epoch checkpoint replays the interrupted epoch exactly.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from anchor_embed import atomic
from anchor_embed.config import read_saved, resolve
from anchor_embed.errors import AnchorEmbedError, TrainingCollapsed
from anchor_embed.model.fusion import FusionModel
from anchor_embed.model.store import save_model
from anchor_embed.progress import make_progress, say
from anchor_embed.training import checkpoints
from anchor_embed.training.averaging import WeightAverage
from anchor_embed.training.config import TrainingConfig

RESUMABLE = {"epochs", "threads", "device", "precision"}  # what a resumed run may change: budget and hardware
HARDWARE = ("threads", "device", "precision")               # of those, what a resume takes from this machine
T = TypeVar("T", bound=TrainingConfig)


class Task(ABC):
    """One training objective over a fusion model, as `fit` needs it.

    `fit` sets `net` (the model, or its DDP wrapper: forward passes go through it), `device` and `dist`
    before the first step; a task embeds only its rank's share of a batch and gathers the rest (`dist`).
    """

    label: str = "train"
    model: FusionModel
    net: torch.nn.Module | None = None
    device: torch.device = torch.device("cpu")
    dist = None

    def to(self, device: torch.device) -> None:
        """Move the task's modules and state tensors to `device`."""
        for m in self.modules().values():
            m.to(device)
        self.model.to(device)
        self.device = device

    def modules(self) -> dict[str, nn.Module]:
        """Checkpointed modules by name; their trainable parameters are optimised."""
        return {"model": self.model}

    def parameters(self) -> list[nn.Parameter]:
        """What the optimizer updates (by default every trainable parameter of `modules()`)."""
        return [p for m in self.modules().values() for p in m.parameters() if p.requires_grad]

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """State beside the modules that a resumed run needs (a learned temperature, a queue)."""
        return {}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what `extra_tensors` saved."""
        return None

    @abstractmethod
    def steps_per_epoch(self) -> int:
        """Optimisation steps in one epoch."""

    @abstractmethod
    def batch_size(self) -> int:
        """Streamers a step reads (for the throughput figure)."""

    def start_epoch(self, epoch: int) -> None:
        """Prepare an epoch (e.g. its permutation); called after the torch RNG is seeded for it."""
        return None

    @abstractmethod
    def loss(self, epoch: int, step: int, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one step and the figures to average over the epoch (its 'loss' entry included)."""

    def after_step(self) -> None:
        """Work after the optimizer step (momentum encoder, queue)."""
        return None

    def epoch_extra(self) -> dict[str, float]:
        """Figures of the state at the end of an epoch, for the metrics row's `extra`."""
        return {}

    # validation: the figure `monitor` names picks the best epoch (its model is the run's) and stops early
    monitor: str | None = None          # a key of validate()'s result
    higher_is_better: bool = True

    def validate(self) -> dict[str, float] | None:
        """Figures on the run's validation streamers after an epoch (eval mode, no gradients), or None."""
        return None

    def chance_candidates(self) -> int | None:
        """How many entries the task's InfoNCE chooses among (for the collapse guard), or None if not InfoNCE."""
        return None

    def save_best(self, out: Path) -> None:
        """Write the run's model for a new best epoch (a patch-only task writes just its patch)."""
        save_model(out, self.model)

    def finish(self, out: Path) -> None:
        """After the last epoch, on the main process, before outcome.json: a last change to the saved model
        (none by default)."""
        return None


def start_seed(draws: list[int]) -> int:
    """The torch seed a run starts from: its seed, or one drawn from all of `draws` (a soup member's)."""
    return int(draws[0]) if len(draws) == 1 else int(np.random.SeedSequence(draws).generate_state(1)[0])


def epoch_seed(draws: list[int], epoch: int) -> int:
    """The torch seed of one epoch from the config's `draws()`: a resumed run replays the epoch it lost."""
    return int(np.random.SeedSequence([*draws, epoch]).generate_state(1)[0])


def resolve_settings(model: type[T], stage: str, out: str | Path, config: str | Path | None, resume: bool,
                     overrides: dict) -> T:
    """A stage's settings: defaults < `config` < the flags given. On --resume without `config`, the run's own
    saved config.json stands in for it, so a resume takes the settings it was started with and the flags given
    change only what they name (a resume had to repeat every flag, or was refused as other settings); the
    hardware ones (threads, device, precision) are this machine's defaults unless given. A folder another stage
    made is not read (its own checks refuse it)."""
    saved = Path(out) / "config.json"
    if config is None and resume and saved.is_file() and run_info(Path(out)).get("stage", stage) == stage:
        try:
            return resolve(model, saved, overrides, ignore=HARDWARE)
        except AnchorEmbedError:
            # a flag that changes the run, named as every other such change is (not the saved params another
            # --method does not take: "unknown key 'params.temperature'")
            refuse_changed(out, atomic.read_json_object(saved), overrides, "run")
            raise
    return resolve(model, config, overrides)


def changed_flags(saved: dict, overrides: dict) -> list[str]:
    """The flags given that a resume may not change and whose value differs from the saved config's, each as
    'KEY: saved X, asked Y' (a method's params by their dotted name)."""
    out = []
    for key, asked in overrides.items():
        if asked is None or key in RESUMABLE:
            continue
        had = saved.get(key)
        pairs = ([(f"{key}.{k}", had.get(k), v) for k, v in asked.items()]
                 if isinstance(asked, dict) and isinstance(had, dict) else [(key, had, asked)])
        out += [f"{name}: saved {a!r}, asked {b!r}" for name, a, b in pairs if a != b]
    return out


def refuse_changed(out: str | Path, saved: dict, asked: dict, what: str) -> None:
    """One line naming the flags given that differ from the saved `what` (run, choice) where a resume may not
    change them (`changed_flags`); nothing when none does."""
    changed = changed_flags(saved, asked)
    if changed:
        raise AnchorEmbedError(f"{out}: --resume with settings that differ from the saved {what} ("
                               f"{'; '.join(changed)}); only {', '.join(sorted(RESUMABLE))} may change") from None


def resumable_change(saved: dict, new: dict) -> bool:
    """Whether settings `new` differ from `saved` at most in what a resume may change (RESUMABLE): then a soup or a
    choice records them as its own, so a later --resume alone goes on with the longer budget its runs have."""
    return {k: v for k, v in saved.items() if k not in RESUMABLE} == {k: v for k, v in new.items() if k not in RESUMABLE}


def check_resumable(out: Path, cfg: TrainingConfig, resume: bool) -> Path | None:
    """The checkpoint `out` would resume from; refuses a run without --resume, one past `cfg.epochs`, or one
    made with other settings. Reads only, so a stage can call it before its slow set-up (transfer's mining)."""
    ckpt = checkpoints.existing_run(out, resume)
    if ckpt is not None:
        done = int(ckpt.name[6:])
        if done > cfg.epochs:           # continuing would write epochs N into config.json beside more epochs run
            raise AnchorEmbedError(f"{out}: --resume --epochs {cfg.epochs}, but the run is already past it ({done} "
                                   f"epochs trained); pass --epochs {done} or more to continue it, or leave it as it is")
        saved = read_saved(type(cfg), out / "config.json")
        old, new = saved.model_dump(exclude=RESUMABLE), cfg.model_dump(exclude=RESUMABLE)
        if old != new:
            diff = sorted(_differing(old, new))
            raise AnchorEmbedError(f"{out}: --resume with settings that differ from the saved run ({', '.join(diff)});"
                                   f" only {', '.join(sorted(RESUMABLE))} may change")
    return ckpt


def check_same_inputs(out: Path, inputs: dict) -> None:
    """Refuse to resume run `out` with other inputs (`inputs`: content digests) than it recorded in run.json."""
    had = run_info(out).get("inputs", {})
    changed = sorted(k for k, v in inputs.items() if k in had and had[k] != v)
    if changed:
        raise AnchorEmbedError(f"{out}: --resume with other inputs than the saved run ({', '.join(changed)} "
                               "changed by content); start a new --out")


def finished(out: Path, cfg: TrainingConfig, ckpt: Path | None) -> dict | None:
    """The outcome.json of run `out` when resuming it from `ckpt` would train nothing more (it finished, and ran
    all of `cfg.epochs` or was stopped by patience, which a resume cannot change); else None."""
    f = out / "outcome.json"
    if ckpt is None or not f.is_file():
        return None
    outcome = atomic.read_json_object(f)
    done = int(ckpt.name[6:])
    ended = done >= cfg.epochs or outcome.get("stopped_by") == "patience"
    return outcome if outcome.get("complete") is True and ended else None


def open_run(out: Path, cfg: TrainingConfig, resume: bool, info: dict) -> Path | None:
    """Prepare RUN `out`: refuse to overwrite a run, or to resume one made with other settings, other inputs
    (`info["inputs"]`: content digests) or already past `cfg.epochs`; save the config and `info` with the digest
    of the code that trains. Returns the checkpoint to resume from, if any."""
    from anchor_embed.training.run_folder import check_out

    if "stage" in info:             # the stages check it before their set-up; this is for any other caller
        check_out(out, info["stage"], type(cfg))
    ckpt = check_resumable(out, cfg, resume)
    if ckpt is None and resume:         # scripts pass --resume always; a mistyped --out should still be seen
        say(f"[yellow]{out}[/]: " + ("no epoch finished in this run, nothing to resume; starting it over"
                                     if (out / "config.json").is_file() else "no run here to resume; starting a new one"))
    if ckpt is not None:
        check_same_inputs(out, info.get("inputs", {}))
    from anchor_embed.fingerprint import code_digest

    code, earlier = code_digest(), []
    if ckpt is not None:      # resumed by other code: the digests of the code that trained earlier epochs stay
        had = run_info(out)
        earlier = [c for c in [*had.get("earlier_code", []), had.get("code")] if c and c != code]
        if earlier:
            say(f"[yellow]{out}[/]: resumed by other code than trained its earlier epochs; run.json keeps both")
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "config.json", cfg.model_dump(mode="json"))
    atomic.write_json(out / "run.json", {**info, "code": code, **({"earlier_code": earlier} if earlier else {})})
    return ckpt


def _differing(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The keys whose values differ, a nested dict's by their dotted path ('params.temperature')."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differing(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


@contextmanager
def training_run(out: Path, cfg: TrainingConfig, resume: bool, info: dict, what: str, dist=None) -> Iterator[Path | None]:
    """The run folder for the duration of training: locked and opened by rank 0 (`open_run`), followed by the
    other ranks once it is ready; yields the checkpoint to resume from."""
    from anchor_embed.locks import exclusive

    if dist is None or dist.is_main:
        with exclusive(out, what):
            ckpt = open_run(out, cfg, resume, info)
            if dist is not None:
                dist.barrier()
            yield ckpt
    else:
        dist.barrier()
        yield checkpoints.latest(out) if resume else None


def _state(task: Task, opt: torch.optim.Optimizer, average: WeightAverage | None) -> tuple[dict, dict]:
    opt_flat, opt_meta = checkpoints.optimizer_tensors(opt)
    tensors = {name: m.state_dict() for name, m in task.modules().items()}
    tensors["optimizer"] = opt_flat
    if average is not None:
        tensors["weight_average"] = average.state()
    extra = task.extra_tensors()
    if extra:
        tensors["extra"] = extra
    return tensors, {"optimizer": opt_meta}


def _restore(task: Task, opt: torch.optim.Optimizer, ckpt: Path, average: WeightAverage | None) -> dict:
    """Load checkpoint `ckpt` into the task, optimizer and weight average; returns its state.json."""
    tensors, state = checkpoints.load(ckpt)
    for name, m in task.modules().items():
        if name not in tensors:
            raise checkpoints.Damaged(ckpt / f"{name}.safetensors", "missing")
        m.load_state_dict(tensors[name])
    if average is not None:
        average.load(tensors["weight_average"])
    checkpoints.restore_optimizer(opt, tensors.get("optimizer", {}), state["optimizer"])
    task.load_extra_tensors(tensors.get("extra", {}))
    return state


def _line(row: dict) -> str:
    shown = {**{k: v for k, v in row.items() if isinstance(v, float) and k not in ("streamers_per_s", "lr")},
             **{f"val {k}": v for k, v in row.get("validation", {}).items()}}
    figures = "  ".join(f"{k} {v:.4f}" for k, v in shown.items())
    best = "  (best)" if row.get("best") and "validation" in row else ""     # without validation: no selection
    return f"epoch {row['epoch']}: {figures}  {row['streamers_per_s']:.0f} streamers/s{best}"


def make_optimizer(task: Task, cfg: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW over the task's trainable parameters, with the run's learning rate and weight decay; torch's fused
    kernel on CPU and CUDA (one pass over all parameters: a quarter of the per-tensor loop's time here)."""
    params = list(task.parameters())
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


class Selection:
    """Best-epoch bookkeeping: which epoch's model is the run's, and whether patience has run out."""

    def __init__(self, task: Task, patience: int, state: dict | None = None) -> None:
        self.task, self.patience = task, patience
        state = state or {}
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch", 0)
        self.start_figure = state.get("start_figure")   # a warm start's figure: epoch 0 of the selection

    def update(self, epoch: int, validation: dict[str, float] | None) -> bool:
        """Record an epoch's validation; True when it is the best so far (every epoch is, without validation)."""
        if validation is None or self.task.monitor is None:
            self.best_epoch = epoch
            return True
        value = validation[self.task.monitor]
        better = self.best is None or (value > self.best if self.task.higher_is_better else value < self.best)
        if better:
            self.best, self.best_epoch = value, epoch
        return better

    def should_stop(self, epoch: int) -> bool:
        return self.patience > 0 and self.task.monitor is not None and epoch - self.best_epoch >= self.patience

    def kept(self) -> str:
        """Which model is the run's, in words."""
        return "the model it started from (epoch 0)" if self.best_epoch == 0 else f"epoch {self.best_epoch}"

    def state(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch,
                **({"start_figure": self.start_figure} if self.start_figure is not None else {})}


def _sum_gradients(state, bucket):
    """DDP communication hook: sum the ranks' gradients (each flowed through its own share of the batch into
    the same global loss), so the update equals one process's on the concatenated batch."""
    import torch.distributed as torch_dist

    fut = torch_dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def _attach(task: Task, cfg: TrainingConfig, dist) -> torch.device:
    """Put the task on its device and, with several processes, wrap its model in DDP."""
    from anchor_embed.training.device import resolve_device

    device = resolve_device(cfg.device, dist.local_rank)
    task.to(device)
    task.dist = dist
    if dist.world > 1 and any(p.requires_grad for p in task.model.parameters()):
        from torch.nn.parallel import DistributedDataParallel

        # a batch may lack a modality (data without frames, views that drop one): its projection gets no
        # gradient in that step, which DDP must be told to expect
        task.net = DistributedDataParallel(task.model, device_ids=[device.index] if device.type == "cuda" else None,
                                           find_unused_parameters=True)
        task.net.register_comm_hook(None, _sum_gradients)
    else:
        task.net = task.model
    return device


@contextmanager
def _stop_says_how_to_resume(out: Path, label: str, dist) -> Iterator[None]:
    """Ctrl-C or SIGTERM (a scheduler's stop) during training: one line saying which epoch's checkpoint stays
    and how to continue, then the interruption goes on as before (the CLI exits 130)."""
    import signal
    import threading

    def term(signum, frame):
        raise KeyboardInterrupt

    own = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, term) if own else None
    try:
        yield
    except KeyboardInterrupt:
        if dist is None or dist.is_main:
            try:
                ckpt = checkpoints.latest(out)
            except AnchorEmbedError:
                ckpt = None
            say(f"[yellow]{label}[/]: stopped; " + _how_to_continue(out, ckpt))
        raise
    finally:
        if own:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


def _how_to_continue(out: Path, ckpt: Path | None) -> str:
    """After a stop: the checkpoint that stays and --resume, or, before any, how to start over."""
    if ckpt is not None:
        return (f"{out} keeps the checkpoint of epoch {int(ckpt.name[6:])}: run the same command with --resume to "
                "continue from it")
    try:
        checkpoints.existing_run(out, True)
    except AnchorEmbedError:
        return f"no epoch checkpoint was saved, nothing to resume; remove {out} to start over"
    return "no epoch finished, nothing to resume; run the same command to start over"


def fit(task: Task, out: Path, cfg: TrainingConfig, ckpt: Path | None = None, dist=None,
        start_figure: float | None = None) -> list[dict]:
    """`_fit`, saying how to continue when it is stopped."""
    with _stop_says_how_to_resume(out, task.label, dist):
        return _fit(task, out, cfg, ckpt, dist, start_figure)


def _fit(task: Task, out: Path, cfg: TrainingConfig, ckpt: Path | None = None, dist=None,
         start_figure: float | None = None) -> list[dict]:
    """Train `task` for at most `cfg.epochs` epochs into RUN `out` (resuming from `ckpt`); returns the metrics rows.

    Each epoch ends with validation, a `metrics.jsonl` row and a checkpoint (what `--resume` continues). The
    run's model (model.safetensors) is the epoch with the best validation figure; training stops when it has
    not improved for `cfg.patience` epochs, and with one clear error when the model collapses. RUN/outcome.json,
    written last, says which epoch was kept and why training ended: a run without it did not finish. With
    several processes (`dist`), rank 0 validates and writes; the others follow its verdicts. `start_figure` is
    the validation figure of the model as it starts, already saved as the run's by the caller (a warm start):
    it is epoch 0 of the selection, so training keeps it unless an epoch beats it.
    """
    from anchor_embed.training.device import autocast, resolve_precision
    from anchor_embed.training.distributed import Dist
    from anchor_embed.training.guard import collapse_reason
    from anchor_embed.training.schedule import lr_at

    dist = dist or Dist()
    device = _attach(task, cfg, dist)
    precision = resolve_precision(device, cfg.precision)
    opt = make_optimizer(task, cfg)
    average = WeightAverage(task.model, cfg.weight_average) if cfg.weight_average > 0 else None
    scored = average.applied if average is not None else nullcontext
    start, history, state = 0, [], None
    if ckpt is not None:
        try:
            state = _restore(task, opt, ckpt, average)
            start = int(state["epoch"])
        except checkpoints.Damaged as exc:       # truncated, deleted, not JSON
            raise checkpoints.unreadable(out, exc.file, exc.reason, ckpt) from None
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:      # reads, but not as this run's state
            reason = f"{type(exc).__name__}: {checkpoints.reason_of(exc)}"
            raise checkpoints.unreadable(out, ckpt, reason, ckpt) from None
        history = checkpoints.history_until(out, start)
        say(f"[bold]{task.label}[/]: resuming {out} after epoch {start}" + (
            f"; it has run all {cfg.epochs} epochs of --epochs: nothing more to train (a larger --epochs continues "
            "it)" if start >= cfg.epochs else ""))
    if dist.is_main:        # after the checkpoint read: a finished run whose resume fails stays marked finished
        (out / "outcome.json").unlink(missing_ok=True)
    if state is None and start_figure is not None:
        state = {"best": start_figure, "best_epoch": 0, "start_figure": start_figure}
    selection = Selection(task, cfg.patience, state)
    steps = task.steps_per_epoch()
    total, warmup = cfg.epochs * steps, int(round(cfg.warmup * cfg.epochs * steps))
    stopped = "epochs"
    with make_progress() as progress:
        bar = progress.add_task(task.label, total=(cfg.epochs - start) * steps, info="")
        for epoch in range(start, cfg.epochs):
            if selection.should_stop(epoch):
                stopped = "patience"
                break
            torch.manual_seed(epoch_seed(cfg.draws(), epoch))
            task.start_epoch(epoch)
            for m in task.modules().values():
                m.train()
            sums: dict[str, torch.Tensor | float] = {}
            t0 = time.perf_counter()
            for step in range(steps):
                lr = lr_at(epoch * steps + step, total, cfg.lr, warmup, cfg.schedule)
                for group in opt.param_groups:
                    group["lr"] = lr
                rng = np.random.default_rng([*cfg.draws(), epoch, step])
                with autocast(device, precision):
                    loss, stats = task.loss(epoch, step, rng)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if average is not None:
                    average.update()
                task.after_step()
                for k, v in stats.items():             # kept on the device: no sync per step
                    sums[k] = sums.get(k, 0.0) + (v.detach() if torch.is_tensor(v) else v)
                shown = {"info": f"epoch {epoch + 1} loss {float(stats['loss']):.3f}"} if step % 10 == 0 else {}
                progress.update(bar, advance=1, **shown)   # the loss is read (a device sync) every 10 steps
            secs = time.perf_counter() - t0
            row = {"epoch": epoch + 1, **{k: round(float(v) / steps, 5) for k, v in sums.items()},
                   "streamers_per_s": round(steps * task.batch_size() / secs, 1), "precision": precision, "lr": lr,
                   "extra": task.epoch_extra()}
            for m in task.modules().values():
                m.eval()
            validation = None
            if dist.is_main:
                with torch.no_grad(), scored():
                    validation = task.validate()
            if validation is not None:
                row["validation"] = {k: round(v, 5) for k, v in validation.items()}
            spread = (validation or {}).get("uniformity", row.get("uniformity"))
            previous = history[-1].get("loss") if history else None
            reason = collapse_reason(row.get("loss"), task.chance_candidates(), spread, previous) if dist.is_main else None
            best = reason is None and selection.update(epoch + 1, validation) if dist.is_main else False
            flags = dist.broadcast_flags(float(best), float(reason is not None), float(selection.best_epoch),
                                         float("nan") if selection.best is None else float(selection.best))
            row["best"], collapsed = bool(flags[0]), bool(flags[1])
            selection.best_epoch = int(flags[2])
            selection.best = None if math.isnan(flags[3]) else flags[3]
            history.append(row)
            if dist.is_main:
                atomic.write_jsonl(out / "metrics.jsonl", history)
                say(_line(row))
            if collapsed:
                kept = f"{selection.kept()} stays in {out}" \
                    if selection.best_epoch or selection.start_figure is not None else "no model was saved"
                reason = reason or "rank 0 saw it collapse"
                say(f"[yellow]{task.label}[/]: epoch {epoch + 1} looks collapsed: {reason}")
                hint = ("Check the inputs for NaN or huge values (a weights file, the ID embeddings), or try a lower "
                        "--lr" if "NaN or infinite" in reason else
                        "Try a lower --lr, a larger --batch-size or a higher --temperature")
                raise TrainingCollapsed(f"{out}: training collapsed at epoch {epoch + 1} ({reason}); {kept}. {hint}")
            if dist.is_main:
                if row["best"]:
                    with scored():
                        task.save_best(out)
                tensors, ckpt_state = _state(task, opt, average)
                checkpoints.save(out, epoch + 1, tensors, {"epoch": epoch + 1, **ckpt_state, **selection.state()})
            dist.barrier()
    if stopped == "patience":
        say(f"[bold]{task.label}[/]: no better {task.monitor} for {cfg.patience} epochs; "
            f"stopped after epoch {len(history)}, keeping {selection.kept()}")
    if dist.is_main:
        task.finish(out)
        atomic.write_json(out / "outcome.json", {
            "complete": True, "epochs_run": len(history), "stopped_by": stopped,
            **selection.state(), "monitor": task.monitor if selection.best is not None else None})
        from anchor_embed.training.card import write_card

        write_card(out)
    dist.barrier()
    return history


def saved_config(run: Path, model: type[TrainingConfig]) -> TrainingConfig | None:
    """The config a run was made with (None for a folder without one)."""
    f = Path(run) / "config.json"
    return read_saved(model, f) if f.is_file() else None


def run_info(run: Path) -> dict:
    """A run's run.json (what it read), or {} when absent; one line naming it when it is no JSON object (a
    truncated file, or another command's output written over it)."""
    f = Path(run) / "run.json"
    return atomic.read_json_object(f, "the run's record of what it read is damaged") if f.is_file() else {}


def made_by_other_code(run: Path) -> bool:
    """True when run.json names other code than this installed package's as the code that trained `run`."""
    from anchor_embed.fingerprint import code_digest

    return run_info(run).get("code") != code_digest()


def warn_if_unfinished(run: Path) -> None:
    """A line on stderr when a training run was stopped before it finished (it has no outcome.json)."""
    run = Path(run)
    if (run / "config.json").is_file() and not (run / "outcome.json").is_file():
        say(f"[yellow]warning[/]: {run} did not finish training (no outcome.json): its model is the best epoch "
            "so far, and the run may still be going or need --resume")
