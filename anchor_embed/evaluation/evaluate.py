"""`anchor-embed evaluate`: frozen backbones and any trained models, scored in one table from one split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from rich.markup import escape

from anchor_embed import atomic
from anchor_embed.data.id_embeddings import align_to_streamers, read_id_embeddings
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.evaluation.metrics import holdout_split, markdown_table, score
from anchor_embed.features.cache import open_cache
from anchor_embed.progress import counted, say


def model_labels(paths: list[str | Path]) -> list[str]:
    """A row name per run folder: its name, or as many trailing path parts as tell it apart from the others.

    Two runs both called `contrastive` (clean/seed0/contrastive, noisy/seed0/contrastive) must not share a row;
    a folder given twice gets a numbered second row.
    """
    parts = [Path(os.path.abspath(p)).parts for p in paths]  # abspath: '..' folded, symlinks keep their name
    bases, labels = [], []
    for me in parts:
        depth = 1
        while depth < len(me) and any(o[-depth:] == me[-depth:] for o in parts if o != me):
            depth += 1
        base = "/".join(me[-depth:])
        labels.append(base if base not in bases else f"{base} ({bases.count(base) + 1})")
        bases.append(base)
    return labels


def run_labels(models: list[str | Path], earlier: dict[str, str]) -> list[str]:
    """`model_labels`, told apart from the run folders of an earlier record's rows too (`earlier`: run -> row
    name), so a run with another's folder name gets a row of its own; a run scored again keeps its row's name."""
    runs = [run_key(m) for m in models]
    others = [r for r in earlier if r not in runs]
    taken = {earlier[r] for r in others}
    labels = []
    for r, label in zip(runs, model_labels([*map(os.path.abspath, models), *others])[:len(runs)], strict=True):
        if r in earlier and earlier[r] not in taken:      # a folder given twice: its second row named apart
            label = earlier[r]
        n = 2
        while label in taken:
            label, n = f"{label} ({n})", n + 1
        taken.add(label)
        labels.append(label)
    return labels


def run_key(model: str | Path) -> str:
    """How a model row records its run folder: the resolved path, so a symlink and its target are one run."""
    return str(Path(model).resolve())


def _aligned(path: str | Path, cache, keys: list[str], id_column: str = "anchor_id") -> np.ndarray:
    """Vectors of another ID-embedding file for `keys`, zero rows where it has none (sparse ID embeddings)."""
    other, report = read_id_embeddings(path, None, id_column=id_column)
    other = align_to_streamers(other, cache.keys, report)
    where = other.index_of()
    out = np.zeros((len(keys), other.dim), np.float32)
    for i, k in enumerate(keys):
        if k in where:
            out[i] = other.vectors[where[k]]
    return out


def refuse_seen(models: list[str | Path], held: set[str], holdout_frac: float, seed: int) -> None:
    """One line when a model has seen the ID embedding of a streamer this evaluation holds out."""
    from anchor_embed.transfer.split import read_seen

    for m in models:
        leaked = read_seen(Path(m)) & held
        if leaked:
            raise AnchorEmbedError(
                f"{m}: this model saw the ID embeddings of {counted(len(leaked), 'streamer')} this evaluation holds out "
                f"(e.g. {sorted(leaked)[0]!r}); train it with --holdout-frac {holdout_frac} --seed {seed}")


def check_feature_spec(run: Path, features: str | Path, meta: dict, use: str = "score it on",
                       stage: str = "evaluate") -> None:
    """Refuse a run scored (or taught further) on a cache made with other backbones or meta tags than its own (its
    vectors would be of inputs it never saw: a twitch run on a movielens cache scored .04 without a word); other
    per-streamer caps are said in one line."""
    from anchor_embed.features.cache import FEATURE_SPEC, STREAMER_CAPS
    from anchor_embed.serving.encoder import feature_settings

    own, spec = feature_settings(run)
    other = [f"{k} {spec.get(k)!r} (--features has {meta.get(k)!r})" for k in FEATURE_SPEC
             if spec.get(k) != meta.get(k)]
    if other:
        raise AnchorEmbedError(f"{run}: trained on features with {'; '.join(other)}; {use} a cache made with "
                               f"its settings (its own: {own})")
    caps = [f"{k} {spec.get(k)} -> {meta.get(k)}" for k in STREAMER_CAPS if spec.get(k) != meta.get(k)]
    if caps:
        say(f"[yellow]{stage}[/]: {features} caps streamers' inputs otherwise than {run}'s features ({'; '.join(caps)})")


def run_of_out(out: str | Path | None, models: list[str | Path]) -> int | None:
    """The position among `models` of the one whose run folder `out` is (its evaluation.json keeps `this_run`),
    or None for a plain folder. A run folder of a model not evaluated here is refused: its evaluation.json and
    its `this_run` are its own model's (another model's scores replaced them with one yellow line)."""
    if out is None:
        return None
    where = Path(out).resolve()
    own = [i for i, m in enumerate(models) if Path(m).resolve() == where]
    if own:
        return own[0]
    if (Path(out) / "model.safetensors").is_file():
        raise AnchorEmbedError(f"--out {out}: the run folder of a model not evaluated here; a run's evaluation "
                               f"belongs in its own folder: give another --out (or --model {out})")
    return None


def evaluation_inputs(features: str | Path, id_emb: str | Path, id_keys: str | Path | None,
                      train_id_emb: str | Path | None, holdout_frac: float, seed: int) -> dict:
    """What an evaluation's figures depend on, by path and content digest, recorded beside its rows."""
    from anchor_embed.fingerprint import cache_digest, input_digest

    inputs: dict = {"features": str(Path(features).resolve()), "features_digest": cache_digest(features),
                    "id_emb": str(Path(id_emb).resolve()), "id_emb_digest": input_digest(id_emb)}
    if id_keys is not None:
        inputs |= {"id_keys": str(Path(id_keys).resolve()), "id_keys_digest": input_digest(id_keys)}
    if train_id_emb is not None:
        inputs |= {"train_id_emb": str(Path(train_id_emb).resolve()), "train_id_emb_digest": input_digest(train_id_emb)}
    return inputs | {"holdout_frac": holdout_frac, "seed": seed}


def evaluate(
    features: str | Path,
    id_emb: str | Path,
    models: list[str | Path] | None = None,
    id_keys: str | Path | None = None,
    out: str | Path | None = None,
    holdout_frac: float = 0.2,
    seed: int = 0,
    frozen: bool = True,
    ridge: bool = False,
    knn_average: bool = False,
    train_id_emb: str | Path | None = None,
    id_column: str = "anchor_id",
    device: str = "auto",
    card: bool = True,
) -> list[dict]:
    """Score each model's content kNN against ID-embedding neighbours of held-out streamers.

    `id_emb` gives the truth; `train_id_emb` (default: the same) is what the models were taught with, and
    what the ridge and kNN-averaging references are fitted to (noisy or sparse ID embeddings, say); when it
    differs, its own vectors are scored too ('ID embeddings used for training'). With `card`, each run's model
    card and evaluation.json get the table; without, the runs are left as they are.
    """
    from anchor_embed.evaluation.references import (
        KERNEL_GAMMA,
        choose_knn_k,
        frozen_rows,
        kernel_ridge_vectors,
        knn_average_vectors,
        reference_features,
        residual_ridge_vectors,
        ridge_vectors,
    )
    from anchor_embed.model.batcher import Batcher, embed_all
    from anchor_embed.model.store import load_model

    models = list(models or [])
    if not (models or frozen or ridge or knn_average):
        raise AnchorEmbedError("nothing to score: give --model RUN, --ridge or --knn-average, or keep the frozen rows")
    own = run_of_out(out, models)
    if own is not None and not card:
        raise AnchorEmbedError(f"--out {out}: the folder of a run scored here, and --no-card leaves the runs as "
                               "they are; give another --out")
    cache = open_cache(features)
    ids, report = read_id_embeddings(id_emb, id_keys, id_column=id_column)
    ids = align_to_streamers(ids, cache.keys, report)
    report.say("evaluate")
    held = holdout_split(ids.keys, holdout_frac, seed)
    if not held:
        raise AnchorEmbedError(f"--holdout-frac {holdout_frac}: holds out no streamer of {id_emb}")
    if len(held) == len(ids.keys):
        raise AnchorEmbedError(f"--holdout-frac {holdout_frac}: holds out every streamer of {id_emb}, leaving none "
                               "to search among or fit the references on; give a share below 1")
    refuse_seen(models, held, holdout_frac, seed)
    from anchor_embed.evaluation import record

    inputs = evaluation_inputs(features, id_emb, id_keys, train_id_emb, holdout_frac, seed) if models or out else {}
    labels = run_labels(models, record.earlier_runs(Path(out) / "evaluation.json", inputs) if out else {})
    this_run = None if own is None else labels[own]      # --out is one of the runs: its row's name
    for m in models:
        check_feature_spec(Path(m), features, cache.meta)
    if len(held) < 50:      # a mean of n values in [0, 1] has a standard error up to 0.5 / sqrt(n)
        say(f"[yellow]evaluate[/]: only {len(held)} hold-out queries: each row's Recall@10 may be off by chance "
            f"by up to {0.5 / np.sqrt(len(held)):.2f} (one standard error); raise --holdout-frac to tell rows apart")
    pos = cache.key_index()
    rows_in_cache = np.array([pos[k] for k in ids.keys])
    queries = np.array([i for i, k in enumerate(ids.keys) if k in held])
    train = np.array([i for i, k in enumerate(ids.keys) if k not in held])
    taught = ids.vectors if train_id_emb is None else _aligned(train_id_emb, cache, ids.keys, id_column)
    fit_rows = train[np.abs(taught[train]).sum(1) > 0]      # training streamers with a (teaching) ID embedding
    named: dict[str, np.ndarray] = {}
    if frozen:
        named.update({k: v[rows_in_cache] for k, v in frozen_rows(cache).items()})
    if train_id_emb is not None:
        named["ID embeddings used for training"] = taught
    if ridge:
        x = reference_features(cache, rows_in_cache[fit_rows])[rows_in_cache]
        named["ridge (reference)"], prior = ridge_vectors(x, taught, fit_rows)
        say(f"[bold]evaluate[/]: RidgeCV on frozen features + one-hot tags ({x.shape[1]} columns) fitted on "
            f"{len(fit_rows)} streamers, alpha {prior.alpha_:g} by leave-one-out")
        named["kernel ridge (reference)"], alpha = kernel_ridge_vectors(x, taught, fit_rows, seed=seed)
        say(f"[bold]evaluate[/]: kernel ridge (RBF, gamma {KERNEL_GAMMA:g}) on the same inputs, alpha {alpha:g} "
            "by leave-one-out")
        named["residual ridge (reference)"], alpha = residual_ridge_vectors(x, taught, fit_rows, seed, prior=prior)
        say(f"[bold]evaluate[/]: RidgeCV + kernel ridge of its residuals on the same inputs, alpha {alpha:g} by "
            "validation on a fifth of the training streamers")
    if knn_average:
        from anchor_embed.features.pooled import frozen_vectors

        content = frozen_vectors(cache)[rows_in_cache]
        k = choose_knn_k(content, taught, fit_rows, seed=seed)
        named["content-kNN average (reference)"] = knn_average_vectors(content, taught, fit_rows, k)
        say(f"[bold]evaluate[/]: content-kNN averaging over the {k} nearest of {len(fit_rows)} training streamers")
    from anchor_embed.training.device import resolve_device
    from anchor_embed.training.fit import warn_if_unfinished

    for m, label in zip(models, labels, strict=True):
        warn_if_unfinished(Path(m))
        model, _ = load_model(m)
        model.to(resolve_device(device))
        vecs = embed_all(model, Batcher.for_model(model, cache))
        named[label] = vecs[rows_in_cache]
    rows = score(named, ids.vectors, queries)
    run_of = {label: run_key(m) for m, label in zip(models, labels, strict=True)}
    rows = [{**r, "run": run_of[r["model"]]} if r["model"] in run_of else r for r in rows]
    from anchor_embed.training.card import write_card

    for m, label in zip(models, labels, strict=True):   # each model's card gets the table
        if card and (Path(m) / "config.json").is_file():
            write_card(m, rows, inputs=inputs, this_run=label)
    say(escape(markdown_table(rows)))                # a run folder's name may hold [brackets]
    if out:
        out = Path(out)
        if card and this_run and (out / "config.json").is_file():     # its card wrote (and merged) it a moment ago
            written = atomic.read_json_object(out / "evaluation.json")["rows"]
        else:
            written = record.write(out / "evaluation.json", inputs, rows, **({"this_run": this_run} if this_run else {}))
        atomic.write_text(out / "evaluation.md", markdown_table(written))
    return rows
