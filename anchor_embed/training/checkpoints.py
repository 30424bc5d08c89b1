"""Epoch checkpoints written as whole folders: temp folder, then rename, then `latest.json`; never half-written."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from anchor_embed import atomic
from anchor_embed.errors import AnchorEmbedError

CHECKPOINT_NAME = re.compile(r"epoch-\d{4,}")     # what `save` names a checkpoint folder


def save(run_dir: Path, epoch: int, tensors: dict[str, dict[str, torch.Tensor]], state: dict,
         keep: int = 2) -> Path:
    """Write checkpoints/epoch-NNNN/{name}.safetensors + state.json atomically; keep the last `keep`."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"epoch-{epoch:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        for name, sd in tensors.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(tmp / f"{name}.safetensors"))
        (tmp / "state.json").write_text(json.dumps({**state, "files": sorted(tensors)}, indent=2))
        for f in tmp.iterdir():
            atomic.give_usual_mode(f)
        atomic.give_usual_mode(tmp, folder=True)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic.write_json(root / "latest.json", {"epoch": epoch, "path": final.name})
    for old in sorted(root.glob("epoch-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


class Damaged(Exception):
    """A checkpoint file that is missing or does not read: the file and why (`unreadable` makes it one line)."""

    def __init__(self, file: Path, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file, self.reason = file, reason


def reason_of(exc: BaseException) -> str:
    """Why a file did not read, in a few words: the first line of `exc`, without safetensors' preamble."""
    text = (str(exc).splitlines() or [type(exc).__name__])[0].removeprefix("Error while deserializing header: ")
    if isinstance(exc, json.JSONDecodeError):
        text = f"not JSON: {text}"
    return text[:160]


def latest(run_dir: Path) -> Path | None:
    """The folder of the newest complete checkpoint, if any."""
    marker = run_dir / "checkpoints" / "latest.json"
    if not marker.is_file():
        return None
    try:
        name = json.loads(marker.read_text())["path"]
    except (ValueError, KeyError, TypeError) as exc:
        reason = reason_of(exc) if isinstance(exc, ValueError) else "no checkpoint folder named in it"
        raise unreadable(run_dir, marker, reason, None) from None
    if not isinstance(name, str) or not CHECKPOINT_NAME.fullmatch(name):
        raise unreadable(run_dir, marker, f"names {name!r}, not a checkpoint folder epoch-NNNN", None)
    path = run_dir / "checkpoints" / name
    if not (path / "state.json").is_file():
        raise unreadable(run_dir, path, "named by latest.json but missing or incomplete", path)
    return path


def _intact(run_dir: Path, bad: Path | None) -> str:
    """What to do when a checkpoint cannot be read: the newest other one that reads, named with how to use it."""
    for path in sorted((run_dir / "checkpoints").glob("epoch-*"), reverse=True):
        if path != bad and CHECKPOINT_NAME.fullmatch(path.name):
            try:
                load(path)
            except Exception:  # noqa: BLE001 - any damage: not the one to offer
                continue
            return (f"; {path.name} is intact: to continue from it, write {{\"epoch\": {int(path.name[6:])}, \"path\": "
                    f"\"{path.name}\"}} to {run_dir / 'checkpoints' / 'latest.json'} and --resume again")
    return "; no intact checkpoint to continue from: start a new --out"


def unreadable(run_dir: Path, file: Path, reason: str, checkpoint: Path | None) -> AnchorEmbedError:
    """One line for a checkpoint file that does not read (truncated, deleted, not JSON): which, why, and the
    newest other checkpoint of `run_dir` that is intact (`checkpoint` is the damaged one's folder)."""
    return AnchorEmbedError(f"{file}: unreadable ({reason}){_intact(run_dir, checkpoint)}")


def existing_run(out: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from; an existing run without `resume` is refused rather than overwritten."""
    ckpt = latest(out) if out.exists() else None
    if ckpt is not None and not resume:
        raise AnchorEmbedError(f"{out}: holds a run already; pass --resume to continue it or choose another --out")
    if ckpt is None and out.is_dir() and not never_trained(out) and (
            (out / "model.safetensors").is_file() or any((out / "checkpoints").glob("epoch-*"))):
        # a run whose checkpoints (or their latest.json) were removed: neither overwritten nor restarted silently
        raise AnchorEmbedError(f"{out}: holds a run without checkpoints/latest.json to resume from; choose another "
                               "--out (or remove the folder to start over)")
    return ckpt


def never_trained(out: Path) -> bool:
    """True for a run stopped before its first epoch ended: config.json but no metrics, checkpoint or outcome (a
    warm start's model.safetensors aside, made again by a new start), so starting over loses nothing."""
    return (out / "config.json").is_file() and not any(
        (out / f).exists() for f in ("metrics.jsonl", "outcome.json", "checkpoints"))


def history_until(out: Path, epoch: int) -> list[dict]:
    """metrics.jsonl rows of the epochs a resumed run keeps."""
    path = out / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()[:epoch]] if path.is_file() else []


def load(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """A checkpoint's tensors by file stem and its state.json; `Damaged` names a file missing or unreadable."""
    state_file = path / "state.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError) as exc:
        raise Damaged(state_file, reason_of(exc)) from None
    if not isinstance(state, dict):
        raise Damaged(state_file, "not a JSON object")
    tensors = {}
    for name in _expected_files(path, state):
        f = path / f"{name}.safetensors"
        if not f.is_file():
            raise Damaged(f, "missing")
        try:
            tensors[name] = load_file(str(f))
        except (SafetensorError, OSError, ValueError) as exc:
            raise Damaged(f, reason_of(exc)) from None
    return tensors, state


def _expected_files(path: Path, state: dict) -> list[str]:
    """The tensor files a checkpoint must hold: as its state.json lists them (`save`), or, in a checkpoint written
    before that list, those present plus the optimizer's when its state names tensors."""
    if isinstance(state.get("files"), list):
        return [str(x) for x in state["files"]]
    names = {p.stem for p in path.glob("*.safetensors")}
    opt = state.get("optimizer")
    if isinstance(opt, dict) and any("tensor" in st.values() for st in opt.get("state", {}).values()
                                     if isinstance(st, dict)):
        names.add("optimizer")
    return sorted(names)


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into flat tensors (safetensors) and a JSON-able rest."""
    sd = opt.state_dict()
    flat, meta = {}, {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        meta["state"][str(pid)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                flat[f"{pid}.{k}"] = v
                meta["state"][str(pid)][k] = "tensor"
            else:
                meta["state"][str(pid)][k] = v
    return flat, meta


def restore_optimizer(opt: torch.optim.Optimizer, flat: dict[str, torch.Tensor], meta: dict) -> None:
    state = {}
    for pid, st in meta["state"].items():
        state[int(pid)] = {k: (flat[f"{pid}.{k}"] if v == "tensor" else v) for k, v in st.items()}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
