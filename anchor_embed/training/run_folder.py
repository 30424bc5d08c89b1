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
# the names a run writes (its model, record, card, adapter patch): such a file in a folder that is no run is
# someone else's, and the run would replace it
RUN_NAMES = {"README.md", "config.json", "run.json", "model.safetensors", "model_config.json", "metrics.jsonl",
             "outcome.json", "pairs.jsonl", "seen_ids.txt", "evaluation.json", "evaluation.md", "adapter.json",
             "patch.safetensors", "head.safetensors"}


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


def _a(stage: str) -> str:
    """'a pretrain', 'an adapt': the stage with its article."""
    return f"{'an' if stage[:1] in 'aeiou' else 'a'} {stage}"


def check_out(out: str | Path, stage: str, config: type[BaseModel]) -> None:
    """Refuse, before any work, an --out folder whose files a `stage` run would replace or mix into: a run of
    another stage, an `embed` vectors folder, an index folder, or a folder holding a file of a run's names (a
    user's README.md or config.json) that is not a run of `stage`. A missing or empty folder passes, so do a run
    of `stage` (its --resume and 'holds a run already' checks follow), one stopped before its run.json (a
    config.json of `config`'s kind, a --choose or --members run's parts) and files no run writes (a log the
    user's script sends there)."""
    out = Path(out)
    if not out.is_dir():
        return
    made = _stage_of(out)
    if made == stage:
        return
    if made:
        raise AnchorEmbedError(f"--out {out}: holds {_a(made)} run, not {_a(stage)} run; give --out a folder of its own")
    from anchor_embed.serving.vectors import folder_kind

    kind = folder_kind(out)
    if kind:
        raise AnchorEmbedError(f"--out {out}: {'an index' if kind == 'index' else 'an `embed` vectors'} folder; give "
                               f"the {stage} run a folder of its own")
    if _reads_as(out / "config.json", config) or any((out / p).exists() for p in ("choice.json", "soup.json")):
        return                      # ours, stopped before its run.json
    clash = sorted(p.name for p in out.iterdir() if p.name in RUN_NAMES)
    if clash:
        raise AnchorEmbedError(f"--out {out}: holds files {_a(stage)} run would replace ({', '.join(clash[:3])}"
                               f"{', ...' if len(clash) > 3 else ''}) and is no {stage} run; give --out a folder "
                               "of its own")
