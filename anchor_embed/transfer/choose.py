"""`transfer --choose KEY=V1,V2`: one run per setting, the one with the best validation figure kept.

The same selection every run makes for its epoch, one level up: settings whose best value depends on the data
(input dropout: 0.2 on movielens, 0 on twitch; docs/tuning.md, seventh round) are chosen per run on the
transfer's own validation streamers, never on evaluate's hold-out. Candidates train into OUT/candidates/ and
stay there; the winner's files are copied into OUT, and OUT/choice.json (and run.json) record every
candidate's figure. choice.json is first written at the start with the grid and the settings, so `--resume`
alone goes on with the same candidates from the same settings.
"""

from __future__ import annotations

import filecmp
import itertools
import json
import shutil
from pathlib import Path

from anchor_embed import atomic
from anchor_embed.config import merge_given, parse_value, resolve
from anchor_embed.errors import AnchorEmbedError, TrainingCollapsed
from anchor_embed.progress import say
from anchor_embed.transfer.config import TransferConfig

CHOICE = "choice.json"
# settings that change the yardstick (which streamers validate, which figure) cannot be chosen by it
NOT_CHOOSABLE = {"seed", "holdout_frac", "val_frac", "select_on", "threads", "device", "members", "member"}
RUN_FILES = ("model.safetensors", "model_config.json", "config.json", "metrics.jsonl", "outcome.json",
             "pairs.jsonl", "seen_ids.txt", "soup.json")      # soup.json: a candidate trained with --members
CARD_FILES = ("README.md", "evaluation.json")     # written by evaluate too: they belong to the model they score


def parse_choices(specs: list[str] | None) -> dict[str, list]:
    """`KEY=V1,V2` items (a run setting, or `params.NAME` for the method's own) as {key: [values]}."""
    out: dict[str, list] = {}
    for spec in specs or []:
        key, sep, values = spec.partition("=")
        key = key.strip()
        texts = [v.strip() for v in values.split(",") if v.strip()]
        vals = [parse_value(v) for v in texts]
        if not sep or not key or len(vals) < 2:
            raise AnchorEmbedError(f"--choose {spec!r}: expected KEY=V1,V2[,...] with two values or more, "
                                   "e.g. --choose input_dropout=0,0.2")
        own = key.startswith("params.") and len(key) > len("params.")
        if not own and key not in TransferConfig.model_fields:
            known = sorted(set(TransferConfig.model_fields) - NOT_CHOOSABLE - {"params"})
            raise AnchorEmbedError(f"--choose {spec!r}: unknown setting {key!r} (choose among {', '.join(known)}, "
                                   "or params.NAME)")
        if not own and (key in NOT_CHOOSABLE or key == "params"):
            raise AnchorEmbedError(f"--choose {spec!r}: {key!r} is not a setting validation can choose "
                                   f"(a run setting other than {', '.join(sorted(NOT_CHOOSABLE))}, or params.NAME)")
        if key in out:
            raise AnchorEmbedError(f"--choose {spec!r}: {key!r} given twice")
        again = next((i for i, v in enumerate(vals) if v in vals[:i]), None)     # 0.2,0.2 or 0,0.0: one setting
        if again is not None:
            first = texts[vals.index(vals[again])]
            raise AnchorEmbedError(f"--choose {key}: value {first} given twice" + (
                f" ({first} and {texts[again]} are the same)" if first != texts[again] else "")
                + "; give each candidate value once")
        out[key] = vals
    return out


def candidates(choices: dict[str, list]) -> list[dict]:
    """Every combination of the chosen values (a grid), as {key: value} in the order given."""
    keys = list(choices)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(choices[k] for k in keys))]


def label(candidate: dict) -> str:
    """The candidate's folder name under OUT/candidates, e.g. `input_dropout=0.2`."""
    return ",".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in candidate.items())


def _settings(candidate: dict, overrides: dict) -> dict:
    """The transfer overrides of one candidate: run settings replace, `params.NAME` merge into params."""
    out = dict(overrides)
    params = dict(out.get("params") or {})
    for key, value in candidate.items():
        if key.startswith("params."):
            params[key.removeprefix("params.")] = value
        else:
            out[key] = value
    if params:
        out["params"] = params
    return out


def best_candidate(rows: list[dict], tolerance: float = 1e-9) -> dict:
    """The first row (in the order given) whose validation figure is the highest: figures equal but for float
    rounding (a recall summed in another order) are a tie, and a tie keeps the earlier candidate."""
    top = max(r["validation"] for r in rows)
    return next(r for r in rows if r["validation"] >= top - tolerance)


def take(src: Path, out: Path) -> bool:
    """Copy run `src`'s files into OUT. The card and its evaluation stay when OUT already holds the same model
    (a resumed choice); otherwise they come from `src` or go, so no table of an earlier winner is left. True when
    OUT held the same model (its card was kept)."""
    same = (out / "model.safetensors").is_file() and filecmp.cmp(src / "model.safetensors",
                                                                 out / "model.safetensors", shallow=False)
    for name in RUN_FILES + (() if same else CARD_FILES):
        if (src / name).is_file():
            with atomic.atomic_path(out / name) as tmp:
                shutil.copyfile(src / name, tmp)
        else:
            (out / name).unlink(missing_ok=True)
    return same


def saved_choices(out: str | Path) -> dict[str, list]:
    """The grid a --choose run in `out` was started with ({} when `out` holds none): `--resume` alone goes on
    with it instead of training a single run beside the candidates."""
    f = Path(out) / CHOICE
    return dict(atomic.read_json_object(f).get("choices") or {}) if f.is_file() else {}


def _started_settings(out: Path, config: str | Path | None, kwargs: dict) -> dict:
    """The run settings of a resumed choice: those it was started with (OUT/choice.json), the flags given now
    on top, the hardware this machine's unless given (as `fit.resolve_settings` does for a single run)."""
    from anchor_embed.training.fit import HARDWARE

    f = out / CHOICE
    saved = atomic.read_json_object(f).get("settings") if f.is_file() and config is None else None
    if not saved:
        return kwargs
    return merge_given({k: v for k, v in saved.items() if k not in HARDWARE}, kwargs)


def choose(pretrained: str | Path, id_emb: str | Path, out: str | Path, choices: dict[str, list],
           resume: bool = False, **kwargs) -> dict:
    """Train one transfer run per candidate under OUT/candidates, keep the best by its own validation figure."""
    from anchor_embed.training.run_folder import check_out
    from anchor_embed.transfer.run import transfer

    out = Path(out)
    check_out(out, "transfer", TransferConfig)
    if (out / "model.safetensors").is_file() and not resume:
        raise AnchorEmbedError(f"{out}: holds a run already; pass --resume to continue it or choose another --out")
    fields = set(TransferConfig.model_fields)
    given = {k: v for k, v in kwargs.items() if k in fields}
    rest = {k: v for k, v in kwargs.items() if k not in fields}
    asked = given
    if resume:
        given = _started_settings(out, rest.get("config"), given)
    try:
        base = resolve(TransferConfig, rest.get("config"), given).model_dump(mode="json")
    except AnchorEmbedError as e:
        from anchor_embed.training.fit import refuse_changed

        if resume and (out / CHOICE).is_file():    # another --method: named as such, not as the params it lacks
            refuse_changed(out, atomic.read_json_object(out / CHOICE).get("settings") or {}, asked, "choice")
        raise AnchorEmbedError(f"--choose: {e}") from None
    # every candidate trains from the full settings of the start, so one not started when the choice stopped
    # trains like the others on --resume alone (it took the defaults'), and the start is recorded for it
    kwargs = {**rest, "config": None, **base}
    grid = [(cand, _settings(cand, kwargs)) for cand in candidates(choices)]
    for cand, settings in grid:        # every candidate's settings valid before the first one trains
        try:
            cfg = resolve(TransferConfig, None, {k: v for k, v in settings.items() if k in fields})
            if "map" not in cand and cfg.map != "auto" and cfg.map_share() == 0:
                # a grid over the share (or the method) with --map: the kind is the other candidates'
                say(f"[bold]transfer --choose[/]: candidate {label(cand)} blends no map; --map {cfg.map} is "
                    "the other candidates'")
                settings["map"] = "auto"
            else:
                cfg.refuse_ignored_map()
        except AnchorEmbedError as e:
            raise AnchorEmbedError(f"--choose {label(cand)}: {e}") from None
    from anchor_embed.training.fit import resumable_change

    started = atomic.read_json_object(out / CHOICE) if resume and (out / CHOICE).is_file() else None
    if started is None:
        out.mkdir(parents=True, exist_ok=True)
        atomic.write_json(out / CHOICE, {"choices": choices, "settings": base})
    elif resumable_change(started.get("settings") or {}, base):     # more --epochs: what a later resume goes on with
        atomic.write_json(out / CHOICE, {**started, "choices": choices, "settings": base})
    rows = []
    for cand, settings in grid:
        run = out / "candidates" / label(cand)
        say(f"[bold]transfer --choose[/]: candidate {label(cand)} -> {run}")
        try:
            transfer(pretrained, id_emb, run, resume=resume, **settings)
        except TrainingCollapsed as e:       # a collapsed candidate is reported and left out, not fatal
            say(f"[yellow]transfer --choose[/]: candidate {label(cand)} failed: {e}")
            rows.append({"settings": cand, "run": str(run), "failed": str(e)})
            continue
        outcome = json.loads((run / "outcome.json").read_text())
        rows.append({"settings": cand, "run": str(run), "validation": outcome.get("best"),
                     "monitor": outcome.get("monitor"), "best_epoch": outcome.get("best_epoch")})
    scored = [r for r in rows if r.get("validation") is not None]
    if not scored:
        raise AnchorEmbedError(f"{out}: no --choose candidate finished with a validation figure "
                               "(is --val-frac 0, or too small to validate?); see " + str(out / "candidates"))
    best = best_candidate(scored)
    src = Path(best["run"])
    take(src, out)
    record = {"kept": best["settings"], "monitor": best["monitor"], "candidates": rows, "choices": choices,
              "settings": base}
    info = json.loads((src / "run.json").read_text())
    atomic.write_json(out / "run.json", {**info, "choice": record})
    atomic.write_json(out / CHOICE, record)
    table = ", ".join(f"{label(r['settings'])}: {r['validation']:.4f}" if "validation" in r
                      else f"{label(r['settings'])}: failed" for r in rows)
    say(f"[bold]transfer --choose[/]: kept {label(best['settings'])} (validation {best['monitor']}: {table})")
    return record
