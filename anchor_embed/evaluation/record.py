"""What an evaluation (or probe) file holds besides its rows: the inputs that made them, so a table never
silently mixes runs. A rerun on the same inputs adds its rows to the earlier ones (a row scored again is
replaced, one not scored again is kept: `evaluate --no-frozen` after `--ridge` keeps the ridge rows); a rerun
on other inputs replaces them and says what it replaces."""

from __future__ import annotations

import json
from pathlib import Path

from rich.markup import escape

from anchor_embed import atomic
from anchor_embed.progress import counted, say


def changed_inputs(before: dict, now: dict) -> list[str]:
    """The inputs that differ between two records, by name (a path with other content counts as changed)."""
    keys = [k for k in now if k.endswith("_digest") or f"{k}_digest" not in now]
    return [k.removesuffix("_digest") for k in keys if before.get(k) != now.get(k)]


def merge_rows(path: Path, inputs: dict, rows: list[dict], key: str = "model",
               this_run: str | None = None) -> tuple[list[dict], list[str]]:
    """`rows` with the rows of the record at `path` that were made from the same `inputs` and not made again
    (matched by `key`; the record's own run's row counts as made when `this_run` names it, whatever its label
    was), and the names of the kept ones. Another record's rows are not kept: its inputs differ, its figures do
    not compare (said in one line)."""
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        return rows, []
    if not isinstance(before, dict) or not isinstance(before.get("rows"), list):
        return rows, []
    if before.get("inputs") != inputs:
        why = (f"{', '.join(changed_inputs(before['inputs'], inputs))} differ" if before.get("inputs")
               else "its inputs were not recorded")
        say(f"[yellow]{escape(str(path))}[/]: replaced an evaluation of other inputs ({why}; it had {counted(len(before['rows']), 'row')})")
        return rows, []
    made = {r.get(key) for r in rows} | ({before.get("this_run")} if this_run else set())
    runs = {r["run"] for r in rows if r.get("run")}
    now = {r.get(key): r.get("run") for r in rows}
    old = [r for r in before["rows"] if isinstance(r, dict)]
    for r in old:                     # one name, another run folder: the earlier row goes, said
        if r.get(key) in now and r.get("run") and now[r.get(key)] and r["run"] != now[r.get(key)]:
            say(f"[yellow]{escape(str(path))}[/]: the row {escape(repr(r.get(key)))} of {escape(r['run'])} replaced "
                f"by that of {escape(now[r.get(key)])} (the same name)")
    kept = [r for r in old if r.get(key) not in made and not (r.get("run") and r["run"] in runs)]
    return rows + kept, [str(r.get(key)) for r in kept]


def earlier_runs(path: Path, inputs: dict) -> dict[str, str]:
    """Run folder -> row name of the model rows of the record at `path`, when it was made from `inputs` (so a
    new row can take a name none of them has, and a run scored again keeps its name)."""
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(before, dict) or before.get("inputs") != inputs or not isinstance(before.get("rows"), list):
        return {}
    return {r["run"]: str(r.get("model")) for r in before["rows"] if isinstance(r, dict) and isinstance(r.get("run"), str)}


def write(path: Path, inputs: dict, rows: list[dict], key: str = "model", **extra) -> list[dict]:
    """Write {"rows", "inputs", **extra} to `path`, merged with an earlier record of the same inputs; returns the
    rows written."""
    merged, kept = merge_rows(path, inputs, rows, key, extra.get("this_run"))
    if kept:
        say(f"[bold]{escape(str(path))}[/]: kept {len(kept)} row(s) of the earlier evaluation of the same inputs, not "
            f"scored this time ({escape(', '.join(kept[:4]))}{', ...' if len(kept) > 4 else ''})")
    atomic.write_json(path, {"rows": merged, "inputs": inputs, **extra})
    return merged


def inputs_line(inputs: dict) -> str:
    """The inputs in words (paths and settings, not digests), for a model card."""
    return ", ".join(f"{k} {v}" for k, v in inputs.items() if not k.endswith("_digest"))
