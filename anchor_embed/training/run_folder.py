"""Whether an --out folder may take a training run: a new or empty folder, or a run of the same stage, never a
folder of someone else's files (a user's notes, an `embed` vectors folder, an index) that the run would mix into
or overwrite (README.md and config.json are names a run writes too)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ValidationError

from anchor_embed.errors import AnchorEmbedError

# what a `transfer --choose` or `--members` OUT holds before its run.json is written (at its end), and a run's
# checkpoints (a run whose record was removed: the checks of `checkpoints.existing_run` say what to do)
PARTS = ("choice.json", "candidates", "members", "soup.json", "checkpoints")


def _reads_as(path: Path, config: type[BaseModel]) -> bool:
    """Whether `path` is a config.json of `config`'s kind (a user's own config.json is not)."""
    try:
        config.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, ValidationError):
        return False
    return True


def _stage_of(out: Path) -> str | None:
    """The stage run.json names ('' for a run.json naming none, None without a run.json that reads as an object)."""
    try:
        info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(info.get("stage") or "") if isinstance(info, dict) else None


def check_out(out: str | Path, stage: str, config: type[BaseModel]) -> None:
    """Refuse, before any work, an --out folder holding files `stage` did not write, naming a few of them, or a
    run of another stage. A missing or empty folder passes, and so does a run of `stage` (its --resume and
    'holds a run already' checks follow) or one stopped before its run.json (a config.json of `config`'s kind,
    a --choose or --members run's parts); dot-files (a lock) are not counted."""
    out = Path(out)
    if not out.is_dir():
        return
    made = _stage_of(out)
    if made == stage:
        return
    if made:
        raise AnchorEmbedError(f"--out {out}: holds a {made} run, not a {stage} run; give --out a folder of its own")
    ours = _reads_as(out / "config.json", config)
    if ours and (out / "run.json").exists():    # a run.json naming no stage, or damaged: the run's own checks say
        return
    foreign = sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and p.name not in PARTS
                     and not (ours and p.name == "config.json"))
    if foreign:
        raise AnchorEmbedError(f"--out {out}: holds files {stage} did not write ({', '.join(foreign[:3])}"
                               f"{', ...' if len(foreign) > 3 else ''}); give --out a folder of its own")
