"""`anchor-embed probe`: how much of a downstream label a set of frozen vectors carries, by a linear probe.

Logistic regression (classes; its C chosen by macro-F1) or ridge (numbers), regularisation chosen by
cross-validation inside each training fold (scikit-learn's LogisticRegressionCV / RidgeCV), scored by an outer k-fold CV: macro-F1 and
ROC-AUC for classes, R² and Spearman for numbers, mean ± sd over the folds. Every vector set is scored on
the same streamers (those every set and the labels cover), so the rows of one table compare.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from anchor_embed.data.input_report import InputReport
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.progress import say


def say_left_out(stage: str, labelled, used, why: str) -> None:
    """One line naming the labelled ids a stage leaves out (`why`: what they lack), when it leaves any."""
    absent = sorted(set(labelled) - set(used))
    if absent:
        say(f"[yellow]{stage}[/]: {len(absent)} labelled id(s) {why}, left out (e.g. "
            + ", ".join(repr(k) for k in absent[:3]) + f"); {len(used)} labelled streamers used")


def read_labels(path: str | Path, target: str, kind: Literal["classify", "regress"], strict: bool = False
                ) -> tuple[dict[str, object], InputReport]:
    """anchor_id -> label from a CSV or Parquet file with an `anchor_id` column; bad rows counted and skipped."""
    path = Path(path)
    if not path.is_file():
        raise AnchorEmbedError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        header = pq.read_schema(path).names          # before the table: pyarrow refuses same-named columns
        rows = pq.read_table(path).to_pylist() if len(set(header)) == len(header) else []
        where = [f"row {i}" for i in range(1, len(rows) + 1)]
    else:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
            f.seek(0)
            rows = list(csv.DictReader(f))
        where = [f"line {i}" for i in range(2, len(rows) + 2)]
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:           # a dict keeps the last of two same-named columns: the other would go unread, unsaid
        raise AnchorEmbedError(f"{path}: column(s) {', '.join(map(repr, twice))} appear more than once in the "
                               "header; rename them apart")
    if rows and ("anchor_id" not in rows[0] or target not in rows[0]):
        raise AnchorEmbedError(f"{path}: needs columns 'anchor_id' and '{target}'; has "
                               f"{sorted(str(k) for k in rows[0] if k is not None)}")
    report = InputReport(source=str(path), strict=strict)
    out: dict[str, object] = {}
    for w, row in zip(where, rows, strict=True):
        key, value = str(row.get("anchor_id") or "").strip(), row.get(target)
        if row.get(None):           # csv.DictReader files the fields beyond the header under None
            report.bad(w, "more fields than the header", f"{len(row[None])} field(s) beyond the header")
            continue
        if not key:
            report.bad(w, "missing anchor_id", "missing anchor_id")
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            report.bad(w, "missing label", f"no '{target}' for {key!r}")
            continue
        if kind == "regress":
            try:
                value = float(value)
            except (TypeError, ValueError):
                report.bad(w, "not a number", f"'{target}' {value!r} is not a number")
                continue
            if not math.isfinite(value):
                report.bad(w, "not finite", f"'{target}' {value!r} is not finite")
                continue
        else:
            value = str(value)
        if key in out:
            report.bad(w, "duplicate anchor_id", f"duplicate anchor_id {key!r}")
            continue
        out[key] = value
    report.kept = len(out)
    if not out:
        raise AnchorEmbedError(f"{path}: no usable labels ({report.summary()})")
    if kind == "regress" and len(out) > 1 and len(set(out.values())) < 2:   # every fit: r2 1.0, a perfect nothing
        raise AnchorEmbedError(f"{path}: '{target}' is {next(iter(out.values())):g} for every labelled streamer; "
                               "nothing to predict")
    return out, report


def read_vector_set(spec: str | Path) -> tuple[str, list[str], np.ndarray]:
    """(name, keys, vectors) of `NAME=PATH` or `PATH`: an `embed` vectors folder, a feature cache (its frozen
    mean features) or an ID-embedding file (.npy + keys, .npz, Parquet)."""
    text = str(spec)
    name, _, path = text.partition("=") if "=" in text and not Path(text).exists() else ("", "", text)
    if not path.strip():                # Path("") is the current folder: it was read as the vectors
        raise AnchorEmbedError(f"--vectors {text!r}: no path; give NAME=PATH")
    path = Path(path)
    name = name or path.stem or path.name
    if (path / "vectors.npy").is_file():
        from anchor_embed.serving.vectors import open_vectors

        x, keys, _ = open_vectors(path)
        return name, keys, np.asarray(x, np.float32)
    if (path / "streamers" / "keys.txt").is_file():
        from anchor_embed.features.cache import open_cache
        from anchor_embed.features.pooled import frozen_vectors

        cache = open_cache(path)
        return name, cache.keys, frozen_vectors(cache)
    from anchor_embed.data.id_embeddings import read_id_embeddings

    ids, _ = read_id_embeddings(path)
    return name, ids.keys, ids.vectors


def _scores(kind: str, y_true, pred, proba) -> dict[str, float]:
    from scipy.stats import spearmanr
    from sklearn.metrics import f1_score, r2_score, roc_auc_score

    if kind == "regress":
        rho = spearmanr(y_true, pred).statistic
        return {"r2": float(r2_score(y_true, pred)), "spearman": float(0.0 if np.isnan(rho) else rho)}
    out = {"macro_f1": float(f1_score(y_true, pred, average="macro"))}
    classes = np.unique(y_true)
    if len(classes) == 2:
        out["roc_auc"] = float(roc_auc_score(y_true, proba[:, 1]))
    elif len(classes) > 2:
        out["roc_auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro"))
    return out


def _macro_f1(y_true, y_pred, pos_label=None) -> float:
    """Macro-F1 for LogisticRegressionCV's scorer: it passes a binary problem's `pos_label`, which a macro
    average (symmetric in the classes) ignores; f1_score itself would warn on every fold."""
    from sklearn.metrics import f1_score

    return f1_score(y_true, y_pred, average="macro")


def cv_probe(x: np.ndarray, y: np.ndarray, kind: Literal["classify", "regress"], folds: int = 5, seed: int = 0
             ) -> dict[str, list[float]]:
    """Per-fold scores of a linear probe, its regularisation chosen inside each training fold."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    split = (StratifiedKFold if kind == "classify" else KFold)(folds, shuffle=True, random_state=seed)
    per: dict[str, list[float]] = {}
    for tr, te in split.split(x, y):
        if kind == "classify":
            model = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=8, cv=3, max_iter=2000, scoring=make_scorer(_macro_f1)))
            with warnings.catch_warnings():  # scikit-learn 1.9 announces default changes we do not rely on
                warnings.simplefilter("ignore", FutureWarning)
                model.fit(x[tr], y[tr])
            s = _scores(kind, y[te], model.predict(x[te]), model.predict_proba(x[te]))
        else:
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
            model.fit(x[tr], y[tr])
            s = _scores(kind, y[te], model.predict(x[te]), None)
        for k, v in s.items():
            per.setdefault(k, []).append(v)
    return per


NUMERIC_CLASSES = 20    # more distinct numbers than this in a classify target: likely a number to regress


def probe(vectors: list[str | Path], labels: str | Path, target: str, kind: Literal["classify", "regress"] = "classify",
          folds: int = 5, seed: int = 0, out: str | Path | None = None, strict: bool = False) -> list[dict]:
    """One row per vector set: mean and sd of each score over the folds, on the streamers all sets cover."""
    from anchor_embed import atomic

    if kind not in ("classify", "regress"):
        raise AnchorEmbedError(f"--kind {kind!r}: classify or regress")
    y_of, report = read_labels(labels, target, kind, strict)
    report.say("probe")
    sets = [read_vector_set(v) for v in vectors]
    if not sets:
        raise AnchorEmbedError("give at least one --vectors")
    names = [name for name, _, _ in sets]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:                       # two rows of one name could not be told apart in the table
        raise AnchorEmbedError(f"--vectors: the name(s) {', '.join(map(repr, twice))} given twice; "
                               "name each set NAME=PATH")
    common = set(y_of)
    for _, keys, _ in sets:
        common &= set(keys)
    common = sorted(common)
    say_left_out("probe", y_of, common, "lack a vector in some set")
    if len(common) < 2 * folds:
        raise AnchorEmbedError(f"only {len(common)} streamers have a label and a vector in every set; "
                               f"{folds}-fold CV needs at least {2 * folds}")
    y = np.array([y_of[k] for k in common])
    if kind == "classify" and len(np.unique(y)) < 2:
        raise AnchorEmbedError(f"{labels}: '{target}' has one class ({str(y[0])!r}) among the {len(common)} "
                               "streamers with a label and a vector; a probe needs two")
    classes, counts = np.unique(y, return_counts=True)
    if kind == "classify" and counts.min() < folds and len(classes) > NUMERIC_CLASSES and _numbers(classes):
        raise AnchorEmbedError(f"{labels}: '{target}' has {len(classes)} distinct numbers, {int((counts < folds).sum())} "
                               f"of them on fewer than {folds} streamers: a number to predict? pass --kind regress")
    if kind == "classify" and counts.min() < folds:
        rare = ", ".join(f"{str(c)!r} ({n})" for c, n in zip(classes, counts, strict=True) if n < folds)
        raise AnchorEmbedError(f"{labels}: '{target}' class(es) {rare} have fewer than {folds} streamers with a "
                               f"vector; too few for {folds}-fold CV (drop or merge them)")
    rows = []
    for name, keys, x in sets:
        at = {k: i for i, k in enumerate(keys)}
        per = cv_probe(x[[at[k] for k in common]], y, kind, folds, seed)
        row = {"vectors": name, "streamers": len(common), "target": target}
        for k, v in per.items():
            row[k] = round(float(np.mean(v)), 4)
            row[f"{k}_sd"] = round(float(np.std(v, ddof=1)), 4)
        rows.append(row)
    metrics = [k for k in rows[0] if k not in ("vectors", "streamers", "target") and not k.endswith("_sd")]
    say(_table(rows, metrics))
    if out:
        from anchor_embed.evaluation import record
        from anchor_embed.fingerprint import fingerprint, input_digest

        inputs = {"labels": str(Path(labels).resolve()), "labels_digest": input_digest(labels), "target": target,
                  "kind": kind, "folds": folds, "seed": seed, "streamers": len(common),
                  "streamers_digest": fingerprint(ids=common)}     # rows of other sets cover the same streamers
        written = record.write(Path(out) / "probe.json", inputs, rows, key="vectors")
        atomic.write_text(Path(out) / "probe.md", _table(written, metrics))
    return rows


def _table(rows: list[dict], metrics: list[str]) -> str:
    """The probe's rows as a Markdown table, mean ± sd over the folds."""
    return "\n".join(["| vectors | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)] + [
        f"| {r['vectors']} | " + " | ".join(f"{r[m]:.4f} ± {r[m + '_sd']:.4f}" for m in metrics) + " |"
        for r in rows]) + "\n"


def _numbers(values) -> bool:
    """True when every value reads as a number."""
    try:
        [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    return True
