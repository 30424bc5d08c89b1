"""`anchor-embed export`: a vectors folder as one file for warehouses and notebooks (Parquet or .npy)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from anchor_embed import atomic
from anchor_embed.data.key_file import write_keys
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.progress import say
from anchor_embed.serving.vectors import open_vectors


def export(vectors: str | Path, out: str | Path, format: Literal["parquet", "npy"] = "parquet") -> Path:
    """Parquet: `anchor_id`, `vector` (list<float>), `model_hash`; npy: OUT.npy + OUT.keys.txt beside it."""
    x, keys, meta = open_vectors(vectors)
    out = Path(out)
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
        if out.suffix != ".npy":
            raise AnchorEmbedError(f"--out {out}: an .npy path (its keys go beside it as .keys.txt)")
        atomic.write_npy(out, np.asarray(x))
        write_keys(out.with_suffix(".keys.txt"), keys)
    else:
        raise AnchorEmbedError(f"--format {format!r}: choose parquet or npy")
    say(f"[bold]export[/]: {len(keys)} vectors of {vectors} written to {out} ({format})")
    return out
