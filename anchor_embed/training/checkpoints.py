"""Epoch checkpoints written as whole folders: temp folder, then rename, then `latest.json`; never half-written."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from anchor_embed import atomic
from anchor_embed.errors import AnchorEmbedError


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
        (tmp / "state.json").write_text(json.dumps(state, indent=2))
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


def latest(run_dir: Path) -> Path | None:
    """The folder of the newest complete checkpoint, if any."""
    marker = run_dir / "checkpoints" / "latest.json"
    if not marker.is_file():
        return None
    try:
        path = run_dir / "checkpoints" / json.loads(marker.read_text())["path"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AnchorEmbedError(f"{marker}: unreadable ({type(exc).__name__}: {exc}){_other(run_dir, None)}") from None
    if not (path / "state.json").is_file():
        raise AnchorEmbedError(f"{path}: checkpoint named by latest.json is incomplete{_other(run_dir, path)}")
    return path


def _other(run_dir: Path, bad: Path | None) -> str:
    """What to do when a checkpoint cannot be read: the newest other one that reads, named with how to use it."""
    for path in sorted((run_dir / "checkpoints").glob("epoch-*"), reverse=True):
        if path != bad:
            try:
                load(path)
            except Exception:  # noqa: BLE001 - any damage: not the one to offer
                continue
            return (f"; {path.name} reads: to continue from it, write {{\"epoch\": {int(path.name[6:])}, \"path\": "
                    f"\"{path.name}\"}} to {run_dir / 'checkpoints' / 'latest.json'} and --resume again")
    return "; no other checkpoint reads: start a new --out"


def unreadable(run_dir: Path, path: Path, exc: Exception) -> AnchorEmbedError:
    """One line for a checkpoint whose files do not load (truncated, deleted, not JSON), naming what to do."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, KeyError):
        reason = f"no tensor {exc} (a file of it is missing)"
    return AnchorEmbedError(f"{path}: checkpoint unreadable ({type(exc).__name__}: {reason[:160]}){_other(run_dir, path)}")


def existing_run(out: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from; an existing run without `resume` is refused rather than overwritten."""
    ckpt = latest(out) if out.exists() else None
    if ckpt is not None and not resume:
        raise AnchorEmbedError(f"{out}: holds a run already; pass --resume to continue it or choose another --out")
    if ckpt is None and out.is_dir() and ((out / "model.safetensors").is_file()
                                          or any((out / "checkpoints").glob("epoch-*"))):
        # a run whose checkpoints (or their latest.json) were removed: neither overwritten nor restarted silently
        raise AnchorEmbedError(f"{out}: holds a run without checkpoints/latest.json to resume from; choose another "
                               "--out (or remove the folder to start over)")
    return ckpt


def history_until(out: Path, epoch: int) -> list[dict]:
    """metrics.jsonl rows of the epochs a resumed run keeps."""
    path = out / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()[:epoch]] if path.is_file() else []


def load(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    tensors = {p.stem: load_file(str(p)) for p in path.glob("*.safetensors")}
    return tensors, json.loads((path / "state.json").read_text())


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
