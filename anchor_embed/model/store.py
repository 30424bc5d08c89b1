"""A run folder's model on disk: model.safetensors + model_config.json, written atomically, read back strictly.

model_config.json holds the fusion architecture and everything that shapes its input (tag vocabulary, atom
limits), so every consumer rebuilds exactly the model and the batcher that training used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

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
    run_dir = Path(run_dir)
    if not (run_dir / "model_config.json").is_file() or not (run_dir / "model.safetensors").is_file():
        raise AnchorEmbedError(f"{run_dir}: no model here (expected model_config.json and model.safetensors)")


def load_model(run_dir: str | Path) -> tuple[FusionModel, dict]:
    """Load a run's model in eval mode, with its saved config; refuses a folder without one."""
    run_dir = Path(run_dir)
    require_model(run_dir)
    raw = json.loads((run_dir / "model_config.json").read_text())
    fields = set(FusionConfig.__dataclass_fields__)
    model = FusionModel(FusionConfig(**{k: v for k, v in raw.items() if k in fields}))
    model.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    return model.eval(), raw


def model_hash(run_dir: Path) -> str:
    """sha1 of the model weights: what vectors and indexes are checked against."""
    h = hashlib.sha1()
    with open(Path(run_dir) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
