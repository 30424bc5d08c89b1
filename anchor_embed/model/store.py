"""A run folder's model on disk: model.safetensors + model_config.json, written atomically, read back strictly.

model_config.json holds the fusion architecture and everything that shapes its input (tag vocabulary, atom
limits), so every consumer rebuilds exactly the model and the batcher that training used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from anchor_embed import atomic
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.model.fusion import FusionConfig, FusionModel


def save_model(run_dir: Path, model: FusionModel, extra: dict | None = None) -> None:
    """The run's current model: model.safetensors + model_config.json (what `embed` and `transfer` load)."""
    atomic.write_json(run_dir / "model_config.json", {**model.cfg.to_dict(), **(extra or {})})
    with atomic.atomic_path(run_dir / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))


def require_model(run_dir: str | Path) -> None:
    """Refuse, in one line, a folder that holds no model (before anything else is asked of it)."""
    if not isinstance(run_dir, (str, Path)):
        raise AnchorEmbedError(f"run: expected a run folder's path, got {type(run_dir).__name__} {run_dir!r}")
    run_dir = Path(run_dir)
    if not (run_dir / "model_config.json").is_file() or not (run_dir / "model.safetensors").is_file():
        raise AnchorEmbedError(f"{run_dir}: no model here (expected model_config.json and model.safetensors)")


def load_model(run_dir: str | Path) -> tuple[FusionModel, dict]:
    """Load a run's model in eval mode, with its saved config; refuses a folder without one."""
    run_dir = Path(run_dir)
    require_model(run_dir)
    config = run_dir / "model_config.json"
    raw = atomic.read_json_object(config, "the run's model cannot be rebuilt")
    fields = set(FusionConfig.__dataclass_fields__)
    try:
        model = FusionModel(FusionConfig(**{k: v for k, v in raw.items() if k in fields}))
    except (TypeError, ValueError, KeyError) as exc:
        raise AnchorEmbedError(f"{config}: not a model config this version reads ({exc})") from None
    weights = run_dir / "model.safetensors"
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise AnchorEmbedError(f"{weights}: unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                               "); the file is damaged (truncated?)") from None
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise AnchorEmbedError(f"{weights}: does not fit {config} ({str(exc).splitlines()[0][:160]})") from None
    return model.eval(), raw


def model_hash(run_dir: Path) -> str:
    """sha1 of the model weights: what vectors and indexes are checked against."""
    h = hashlib.sha1()
    with open(Path(run_dir) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
