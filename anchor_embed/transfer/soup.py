"""`transfer --members K`: K runs from the same start and split, their weights averaged into one model.

A uniform model soup (Wortsman et al. 2022, "Model soups: averaging weights of multiple fine-tuned models
improves accuracy without increasing inference time"): runs fine-tuned from one pretrained start stay in one
basin, so the mean of their weights is a model, and it errs less than the average member. Why here: two
transfer runs on the same split and settings differ only in their batches and dropout, yet their hold-out
Recall@10 differs by up to .0125 (docs/tuning.md, eighth round). Members train into OUT/members/member{i}
(member 0 draws exactly as a single run does; the split, the mining and the maps come from the seed
alone, so every member shares them; the soup keeps the map its own validation picks); OUT holds the soup,
validated like any run, and soup.json (and run.json) every member's figure and the soup's. Serving reads one
model as before; training costs K runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from anchor_embed import atomic
from anchor_embed.errors import AnchorEmbedError, TrainingCollapsed
from anchor_embed.progress import say
from anchor_embed.transfer.config import TransferConfig

SOUP = "soup.json"
MEMBERS = "members"
# what OUT takes from member 0 besides the averaged weights (its metrics.jsonl stays with member 0: OUT is no epoch of it)
SHARED_FILES = ("pairs.jsonl", "seen_ids.txt")


def _without_map(model_config: dict) -> dict:
    """A saved model config without the fields of its map, which members may choose differently."""
    return {k: v for k, v in model_config.items()
            if k not in ("linear_dim", "linear_share", "map_landmarks", "map_gamma", "map_mean")}


def average_members(models: list) -> tuple:
    """The members' fusion weights averaged into the first member's model (left without a map), and the maps
    they kept, {kind: map}: every member fits the same maps from the seed and keeps the one its own validation
    picked, so the soup chooses among those with its own."""
    maps = {}
    for m in models:
        if m.linear_map is not None:
            maps.setdefault(m.linear_map.kind, m.linear_map)
    states = [{k: v for k, v in m.state_dict().items() if not k.startswith("linear_map.")} for m in models]
    model = models[0]
    model.set_linear_map(None, 0.0)
    model.load_state_dict(average_weights(states))
    return model, maps


def average_weights(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the states' float tensors (in float64, cast back); any other tensor (a tag id,
    a mask) must be equal in every state, and every state must have the same names and shapes."""
    if not states:
        raise AnchorEmbedError("no weights to average")
    first = states[0]
    for i, s in enumerate(states[1:], 1):
        if s.keys() != first.keys() or any(s[k].shape != first[k].shape for k in first):
            raise AnchorEmbedError(f"soup member {i} has other weights than member 0 (another architecture)")
    out = {}
    for name, value in first.items():
        if value.is_floating_point():
            out[name] = (sum(s[name].double() for s in states) / len(states)).to(value.dtype)
        elif all(torch.equal(s[name], value) for s in states[1:]):
            out[name] = value.clone()
        else:
            raise AnchorEmbedError(f"soup members disagree on {name!r}, which cannot be averaged")
    return out


def soup(pretrained: str | Path, id_emb: str | Path, out: str | Path, id_keys: str | Path | None = None,
         features: str | Path | None = None, config: str | Path | None = None, resume: bool = False,
         id_column: str = "anchor_id", **overrides) -> list[dict]:
    """Train the members under OUT/members, average their weights into OUT, validate the soup; returns every
    member's per-epoch metrics (each row marked with its member)."""
    from anchor_embed.features.cache import open_cache
    from anchor_embed.model.batcher import Batcher
    from anchor_embed.model.store import load_model, save_model
    from anchor_embed.training.card import write_card
    from anchor_embed.training.distributed import Dist
    from anchor_embed.training.fit import resolve_settings, resumable_change, run_info
    from anchor_embed.transfer.choose import take
    from anchor_embed.transfer.run import read_split, transfer
    from anchor_embed.transfer.validation import (
        blended_figures,
        map_vectors,
        split_validation,
        validation_figures,
    )

    out = Path(out)
    cfg = resolve_settings(TransferConfig, "transfer", out, config, resume, overrides)
    if (out / "model.safetensors").is_file() and not resume:
        raise AnchorEmbedError(f"{out}: holds a run already; pass --resume to continue it or choose another --out")
    if (out / "model.safetensors").is_file() and not (out / SOUP).is_file():
        raise AnchorEmbedError(f"{out}: holds a single run, not a soup; choose another --out for --members")
    saved = out / "config.json"
    if not resume or not saved.is_file() or resumable_change(atomic.read_json_object(saved), cfg.model_dump(mode="json")):
        # the soup's own settings from its start: a resume before the soup is made reads them (its split, seed
        # and map refit were the defaults' when only the members kept theirs) and knows the folder is a soup; a
        # resume with more --epochs records them (the members, given the soup's settings, were held to the old
        # budget by a later --resume alone); another change is left to the members' own refusal
        out.mkdir(parents=True, exist_ok=True)
        atomic.write_json(saved, cfg.model_dump(mode="json"))
    history, rows = [], []
    for m in range(cfg.members):
        run = out / MEMBERS / f"member{m}"
        say(f"[bold]transfer --members[/]: member {m + 1} of {cfg.members} -> {run}")
        try:
            # every member from the soup's own settings, so one that had not started when the soup stopped
            # trains as the others did on --resume alone (it took the defaults': no hold-out, 100 epochs)
            got = transfer(pretrained, id_emb, run, id_keys=id_keys, features=features, resume=resume,
                           id_column=id_column, **{**cfg.model_dump(), "member": m, "map_refit": False})
        except TrainingCollapsed as e:        # a collapsed member is reported and left out of the soup
            say(f"[yellow]transfer --members[/]: member {m} failed: {e}")
            rows.append({"member": m, "run": str(run), "failed": str(e)})
            continue
        history += [{"member": m, **r} for r in got]
        outcome = json.loads((run / "outcome.json").read_text())
        rows.append({"member": m, "run": str(run), "validation": outcome.get("best"),
                     "best_epoch": outcome.get("best_epoch"), "epochs_run": outcome.get("epochs_run")})
    dist = Dist.from_env()
    if not dist.is_main:            # under torchrun the members trained on every process; rank 0 makes the soup
        dist.barrier()
        return history
    made = atomic.read_json_object(out / SOUP) if resume and (out / SOUP).is_file() else None
    if made is not None and made.get("members") == rows and (out / "outcome.json").is_file():
        say(f"[bold]transfer --members[/]: {out} finished already and its members are unchanged; nothing to redo")
        dist.barrier()
        return history
    done = [r for r in rows if "failed" not in r]
    if not done:
        raise AnchorEmbedError(f"{out}: every --members run collapsed; see {out / MEMBERS}")
    first = Path(done[0]["run"])
    models = [load_model(r["run"]) for r in done]
    if any(_without_map(raw) != _without_map(models[0][1]) for _, raw in models[1:]):
        raise AnchorEmbedError(f"{out}: the members' model configs differ; they cannot be averaged")
    model, maps = average_members([mdl for mdl, _ in models])
    share = models[0][1].get("linear_share", 0.0)

    info = run_info(first)
    cache = open_cache(info["features"])
    batcher = Batcher.for_model(model, cache)
    split = read_split(cache, cfg, id_emb, id_keys, id_column)[0]
    validation = split_validation(split)
    monitor = cfg.select_on
    chosen, figures = next(iter(maps), None), None
    if validation is not None and maps:
        figures, chosen = blended_figures(model, batcher, validation,
                                          map_vectors(maps, batcher, validation.candidates), share, monitor)
    elif validation is not None:
        figures = validation_figures(model, batcher, validation)
    made = None
    if chosen is not None:          # as a single run does after training
        from anchor_embed.transfer.linear_fit import final_map

        alpha = run_info(first).get("linear_map", {}).get(chosen, {}).get("alpha")
        made = final_map(model, batcher, split, validation, chosen, alpha, share, cfg.map_refit, cfg.seed,
                         cfg.map_landmarks)
        if made is not None:
            maps[chosen] = made[0]
        model.set_linear_map(maps[chosen], share)
    after = made[1] if made is not None else {}
    record = {"members": rows, "monitor": monitor, "validation": figures,
              **({"map": chosen} if chosen is not None else {}),
              **({"map_refit": after["refit"]} if "refit" in after else {}),
              **({"blend_alpha": after["blend_alpha"]} if "blend_alpha" in after else {})}

    # stage the soup as a run folder (no metrics.jsonl: no epoch of it), then take it into OUT as --choose takes
    # its winner: the card and evaluation of an earlier model go
    stage = out / MEMBERS / "soup"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for name in SHARED_FILES:
        if (first / name).is_file():
            shutil.copyfile(first / name, stage / name)
    save_model(stage, model, extra=_without_map(models[0][1]))
    atomic.write_json(stage / "config.json", cfg.model_dump(mode="json"))
    # no epoch's model is the soup's (best_epoch null, where 0 would read "the start was kept"); the epoch each
    # member kept is beside it
    atomic.write_json(stage / "outcome.json", {
        "complete": True, "epochs_run": sum(r["epochs_run"] for r in done), "stopped_by": "soup",
        "best_epoch": None, "members": [{"member": r["member"], "best_epoch": r["best_epoch"]} for r in done],
        "monitor": monitor, "best": None if figures is None else figures[monitor]})
    atomic.write_json(stage / SOUP, record)
    same = take(stage, out)
    shutil.rmtree(stage)
    atomic.write_json(out / "run.json", {**info, "soup": record})
    if not same:
        write_card(out)
    dist.barrier()
    table = ", ".join(f"member {r['member']}: {r['validation']:.4f}" if r.get("validation") is not None
                      else f"member {r['member']}: {'failed' if 'failed' in r else '-'}" for r in rows)
    say(f"[bold]transfer --members[/]: soup of {len(done)} " + (f"validation {monitor} {figures[monitor]:.4f} "
                                                                if figures else "")
        + f"({table}) -> {out}")
    return history
