"""`anchor-embed export`: a vectors folder as one file for warehouses and notebooks (Parquet or .npy)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from anchor_embed import atomic
from anchor_embed.data.key_file import write_keys
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.progress import say
from anchor_embed.serving.vectors import folder_kind, open_vectors

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}


def check_place(out: Path) -> None:
    """Refuse an --out inside a vectors folder, an index folder or a Spark job's table: export --out VEC/vectors.npy
    --overwrite replaced the folder's own vectors (IDX/keys.npy its key table), and any other name left files there
    that the folder's commands do not write (an index rebuild refused its folder; Spark reads every Parquet file of
    its table as rows of it)."""
    from anchor_embed.serving.spark_out import META

    kind = folder_kind(out.parent)
    what = {"vectors": "a vectors folder", "index": "an index folder"}.get(kind or "") or \
        ("a Spark job's output folder" if (out.parent / META).is_file() else None)
    if what:
        raise AnchorEmbedError(f"--out {out}: inside {out.parent}, {what}; export writes a file of its own: name "
                               "one outside it")


def check_paths(written: list[Path], overwrite: bool) -> None:
    """Refuse before anything is written a path that is a folder, or an existing file without `overwrite`: the
    .npy was written before its .keys.txt was found to be a folder, and stayed there without keys."""
    for p in written:
        if p.is_dir() and p == written[0]:      # the words of the CLI's own refusal of a folder given for a file
            raise AnchorEmbedError(f"{p}: is a folder; give a file path here (or remove the folder)")
        if p.is_dir():
            raise AnchorEmbedError(f"{p}: is a folder, where export writes the keys of --out {written[0]}; name "
                                   "another --out (or remove the folder)")
    there = [p for p in written if p.is_file()]
    if there and not overwrite:
        raise AnchorEmbedError(f"{there[0]}: exists; pass --overwrite to replace it")


def export(vectors: str | Path, out: str | Path, format: Literal["parquet", "npy"] | None = None,
           overwrite: bool = False) -> Path:
    """Parquet: `anchor_id`, `vector` (list<float>), `model_hash`; npy: OUT.npy + OUT.keys.txt beside it. The
    format is OUT's suffix's (a `format` given must agree with it), so a file never holds another format than
    its name says. An existing file is replaced only with `overwrite` (it may be a user's ID embeddings)."""
    out = Path(out)
    named = SUFFIXES.get(out.suffix.lower())
    if named is None:
        raise AnchorEmbedError(f"--out {out}: name it .parquet (or .pq) or .npy; the suffix says the format")
    if format is not None and format != named:
        raise AnchorEmbedError(f"--out {out}: a {out.suffix} name for --format {format}; name it "
                               f"{'.npy' if format == 'npy' else '.parquet'} or drop --format")
    format = named
    check_place(out)
    x, keys, meta = open_vectors(vectors)
    written = [out, out.with_suffix(".keys.txt")] if format == "npy" else [out]
    check_paths(written, overwrite)
    if format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        arr = np.asarray(x, np.float32)
        flat = pa.array(arr.reshape(-1), pa.float32())
        table = pa.table({"anchor_id": pa.array(keys, pa.string()),
                          "vector": pa.FixedSizeListArray.from_arrays(flat, arr.shape[1]).cast(pa.list_(pa.float32())),
                          "model_hash": pa.array([meta.get("model_hash")] * len(keys), pa.string())})
        with atomic.atomic_path(out) as tmp:
            pq.write_table(table, tmp)
    elif format == "npy":
        atomic.write_npy(out, np.asarray(x))
        write_keys(out.with_suffix(".keys.txt"), keys)
    else:
        raise AnchorEmbedError(f"--format {format!r}: choose parquet or npy")
    say(f"[bold]export[/]: {len(keys)} vectors of {vectors} written to {out} ({format})")
    return out
