"""`anchor-embed predict`: an `adapt` run's label for every streamer of a vectors folder (its head applied).

`adapt` learns a head (and, in adapter/full mode, new vector weights); `embed --adapter` makes the vectors the
head reads, and this applies it: a class and its probability, or a number in the label's own units. The
vectors must be the ones the head was trained on (the base's for `--mode head`, the patched model's
otherwise), checked by the model hash `embed` recorded, so a head never scores another model's vectors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from anchor_embed import atomic
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.progress import say
from anchor_embed.serving.output_file import claim
from anchor_embed.serving.spark_out import META as SPARK_META

CHUNK = 1 << 16        # vectors scored at a time (the folder is memory-mapped: a catalogue need not fit in RAM)
FIELDS = ("anchor_id", "prediction", "model_id")


def read_head(run: str | Path) -> dict:
    """An adapt run's head as arrays (weight, bias), with what turns its outputs into labels: kind, classes, the
    regression target's mean and sd (the head predicts the standardised target), and the vectors it reads."""
    from safetensors.numpy import load_file

    from anchor_embed.training.adapt import HEAD, adapted_hash, adapter_info
    from anchor_embed.training.fit import run_info, warn_if_unfinished

    run = Path(run)
    info = adapter_info(run)
    if not (run / HEAD).is_file():
        raise AnchorEmbedError(f"{run}: no {HEAD}; the adapt run did not finish (run it again with --resume)")
    warn_if_unfinished(run)         # resumed and stopped again: its head is the best epoch so far
    try:
        tensors = load_file(str(run / HEAD))
        weight, bias = tensors["weight"].astype(np.float32), tensors["bias"].astype(np.float32)
    except Exception as exc:            # a truncated or foreign file
        raise AnchorEmbedError(f"{run / HEAD}: not a readable head ({type(exc).__name__}); run adapt again") from None
    made = run_info(run)
    patched = adapted_hash(info["base_hash"], run)
    # a head-only run reads the base's vectors; `embed --adapter` of it writes the same vectors under its own hash
    accepted = {patched} | ({info["base_hash"]} if info["mode"] == "head" else set())
    return {"weight": weight, "bias": bias, "kind": info["kind"], "classes": list(info.get("classes") or []),
            "mean": float(made.get("target_mean", 0.0)), "sd": float(made.get("target_sd", 1.0)),
            "target": info["target"], "mode": info["mode"], "model_id": patched, "accepted": accepted,
            "base_hash": info["base_hash"]}


def apply_head(head: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(predictions, probability of each predicted class or None) of vectors `x` (rows) under `head`: the
    argmax class of the softmax, or the linear output back in the target's units (value * sd + mean)."""
    z = np.asarray(x, np.float32) @ head["weight"].T + head["bias"]
    if head["kind"] == "regress":
        return z[:, 0].astype(np.float64) * head["sd"] + head["mean"], None
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    best = p.argmax(axis=1)
    return np.asarray(head["classes"], dtype=object)[best], p[np.arange(len(p)), best]


def vector_chunks(vectors: str | Path) -> tuple[dict, Iterator[tuple[list[str], np.ndarray]]]:
    """(the record of what made them, chunks of (anchor_ids, rows)) of a vectors folder `embed` wrote
    (memory-mapped) or one `spark embed` wrote (Parquet parts read a row group at a time, bucket by bucket)."""
    vectors = Path(vectors)
    spark_meta = vectors / SPARK_META
    if spark_meta.is_file() and not (vectors / "meta.json").is_file():
        made = atomic.read_json_object(spark_meta)
        if made.get("job") != "embed":
            raise AnchorEmbedError(f"{vectors}: the output of `spark {made.get('job')}`, not of `spark embed`")
        return made, _parquet_chunks(vectors)
    from anchor_embed.serving.vectors import open_vectors

    x, keys, meta = open_vectors(vectors)
    return meta, ((keys[s:s + CHUNK], np.asarray(x[s:s + CHUNK], np.float32)) for s in range(0, len(keys), CHUNK))


def _parquet_chunks(folder: Path) -> Iterator[tuple[list[str], np.ndarray]]:
    import pyarrow.dataset as ds

    table = ds.dataset(str(folder), format="parquet", partitioning="hive")
    for batch in table.to_batches(columns=["anchor_id", "vector"], batch_size=CHUNK):
        if batch.num_rows:
            flat = batch.column("vector").flatten().to_numpy(zero_copy_only=False)
            yield batch.column("anchor_id").to_pylist(), flat.reshape(batch.num_rows, -1).astype(np.float32)


def predict(adapter: str | Path, vectors: str | Path, out: str | Path, overwrite: bool = False) -> dict:
    """Write `out` (JSONL: anchor_id, prediction, probability for classes, model_id) for every vector of
    `vectors` (a folder `embed` or `spark embed` wrote) by the head of adapt run `adapter`; returns counts. A
    rerun replaces its own earlier output; another file only with `overwrite`."""
    adapter, out = Path(adapter), Path(out)
    claim(out, "predict", FIELDS, overwrite)
    head = read_head(adapter)
    meta, chunks = vector_chunks(vectors)
    have = meta.get("model_hash")
    if have not in head["accepted"]:
        how = ("the base model's vectors" if head["mode"] == "head"
               else f"vectors made by `anchor-embed embed --adapter {adapter}` (the patched model, {head['model_id']})")
        raise AnchorEmbedError(f"{vectors}: vectors of the model {have}; the head of {adapter} reads {how}")
    classify = head["kind"] == "classify"
    counts: dict[str, int] = {}
    n, total, squares = 0, 0.0, 0.0          # the regression's spread, without holding every prediction

    def write(f: BinaryIO) -> None:
        nonlocal n, total, squares
        for keys, x in chunks:
            if x.shape[1] != head["weight"].shape[1]:
                raise AnchorEmbedError(f"{vectors}: {x.shape[1]}-d vectors; the head of {adapter} reads "
                                       f"{head['weight'].shape[1]}-d")
            pred, prob = apply_head(head, x)
            lines = []
            for i, k in enumerate(keys):
                row = {"anchor_id": k, "prediction": pred[i] if classify else round(float(pred[i]), 6)}
                if classify:
                    row["probability"] = round(float(prob[i]), 6)
                    counts[pred[i]] = counts.get(pred[i], 0) + 1
                row["model_id"] = head["model_id"]
                lines.append(json.dumps(row, ensure_ascii=False) + "\n")
            n += len(keys)
            if not classify:
                total, squares = total + float(pred.sum()), squares + float((pred ** 2).sum())
            f.write("".join(lines).encode("utf-8"))

    atomic.write_bytes(out, write)
    if classify:
        top = ", ".join(f"{c} {k}" for c, k in sorted(counts.items(), key=lambda t: -t[1])[:5])
        say(f"[bold]predict[/]: '{head['target']}' for {n} streamers written to {out}" + (f" ({top})" if top else ""))
    else:
        mean = total / n if n else 0.0
        spread = f" (mean {mean:.4g}, sd {max(squares / n - mean ** 2, 0.0) ** 0.5:.4g})" if n else ""
        say(f"[bold]predict[/]: '{head['target']}' for {n} streamers written to {out}{spread}")
    return {"count": n, "target": head["target"], "kind": head["kind"], "out": str(out),
            **({"classes": counts} if classify else {})}
