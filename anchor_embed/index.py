"""faiss indexes over streamer vectors: exact when small, HNSW or IVF-PQ by size and memory budget.

An index folder holds index.faiss, keys.txt, vectors.npy (float16, for lookups by id), labels.jsonl and
meta.json (model hash, dim, metric, kind, parameters, measured Recall@10 against exact search).
No torch here: `similar` imports this module.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from anchor_embed import atomic
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.progress import say
from anchor_embed.vectors import open_vectors

EXACT_MAX = 200_000


def parse_bytes(text: str) -> int:
    units = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40, "b": 1}
    t = text.strip().lower()
    for u, m in units.items():
        if t.endswith(u):
            try:
                return int(float(t[: -len(u)]) * m)
            except ValueError:
                break
    raise AnchorEmbedError(f"--memory-budget {text!r}: expected a size like 512MB or 2GB")


KINDS = ("flat", "hnsw", "ivf_pq")


def default_params(kind: str, n: int, dim: int) -> dict:
    """Build parameters of an index kind for n vectors of dim, whether picked by budget or forced."""
    if kind == "flat":
        return {}
    if kind == "hnsw":
        return {"M": 32, "efConstruction": 80, "efSearch": 96}
    if kind == "ivf_pq":
        pq_m = next(x for x in (64, 32, 16, 8, 4, 2, 1) if dim % x == 0)
        return {"nlist": max(1, int(4 * np.sqrt(n))), "m": pq_m, "nbits": 8, "nprobe": 32}
    raise AnchorEmbedError(f"--kind {kind!r}: choose from {', '.join(KINDS)}")


def choose(n: int, dim: int, budget: int) -> tuple[str, dict]:
    """Exact for small sets; HNSW if its graph fits the budget; else IVF-PQ."""
    if n <= EXACT_MAX and n * dim * 4 <= budget:
        kind = "flat"
    elif n * (dim * 4 + 32 * 2 * 8) * 1.1 <= budget:
        kind = "hnsw"
    else:
        kind = "ivf_pq"
    return kind, default_params(kind, n, dim)


def build_faiss(x: np.ndarray, kind: str, params: dict, seed: int = 0):
    import faiss

    d = x.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, params["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["efConstruction"]
        index.hnsw.efSearch = params["efSearch"]
    else:
        quant = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFPQ(quant, d, params["nlist"], params["m"], params["nbits"], faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = x[rng.choice(len(x), size=min(len(x), 256 * params["nlist"]), replace=False)]
        index.train(np.ascontiguousarray(sample))
        index.nprobe = params["nprobe"]
    for s in range(0, len(x), 100_000):
        index.add(np.ascontiguousarray(x[s:s + 100_000], dtype=np.float32))
    return index


def recall_vs_exact(index, x: np.ndarray, n_queries: int = 1000, k: int = 10, seed: int = 0) -> float:
    """Recall@k of `index` against brute-force inner product on a sample of the indexed vectors."""
    import faiss

    rng = np.random.default_rng(seed)
    q = np.ascontiguousarray(x[rng.choice(len(x), size=min(n_queries, len(x)), replace=False)], dtype=np.float32)
    exact = faiss.IndexFlatIP(x.shape[1])
    for s in range(0, len(x), 100_000):
        exact.add(np.ascontiguousarray(x[s:s + 100_000], dtype=np.float32))
    _, want = exact.search(q, k)
    _, got = index.search(q, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(want, got, strict=True)]))


def build_index(vectors: str | Path, out: str | Path, memory_budget: str = "2GB", kind: str | None = None,
                model: str | Path | None = None) -> dict:
    """Build and save an index over a vectors folder; refuses vectors of another model than `model`."""
    from anchor_embed.vectors import model_hash

    vec_dir, out = Path(vectors), Path(out)
    x, keys, vmeta = open_vectors(vec_dir)
    if model is not None and model_hash(Path(model)) != vmeta["model_hash"]:
        raise AnchorEmbedError(f"{vec_dir}: vectors were made by model {vmeta['model_hash']}, "
                               f"not by {model} ({model_hash(Path(model))}); re-run embed")
    old = out / "meta.json"
    if old.is_file():
        have = json.loads(old.read_text())
        if have["model_hash"] != vmeta["model_hash"] or have["dim"] != vmeta["dim"]:
            raise AnchorEmbedError(f"{out}: holds an index of model {have['model_hash']} ({have['dim']}-d); "
                                   f"these vectors are of {vmeta['model_hash']} ({vmeta['dim']}-d): use another --out")
    chosen, params = (kind, default_params(kind, len(keys), x.shape[1])) if kind else \
        choose(len(keys), x.shape[1], parse_bytes(memory_budget))
    t0 = time.perf_counter()
    import faiss

    index = build_faiss(np.asarray(x, np.float32), chosen, params)
    secs = time.perf_counter() - t0
    rec = 1.0 if chosen == "flat" else recall_vs_exact(index, np.asarray(x, np.float32))
    out.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(out / "index.faiss") as tmp:
        faiss.write_index(index, str(tmp))
    atomic.write_lines(out / "keys.txt", keys)
    atomic.write_npy(out / "vectors.npy", np.asarray(x, np.float16))
    if (vec_dir / "labels.jsonl").is_file():
        shutil.copyfile(vec_dir / "labels.jsonl", out / "labels.jsonl")
    meta = {"model_hash": vmeta["model_hash"], "model_dir": vmeta["model_dir"], "dim": int(x.shape[1]),
            "metric": "inner_product", "kind": chosen, "params": params, "count": len(keys),
            "recall_at_10": round(rec, 4), "build_seconds": round(secs, 2), "vectors_dir": str(vec_dir.resolve())}
    atomic.write_json(out / "meta.json", meta)
    say(f"[bold]index[/]: {chosen} over {len(keys)} vectors in {secs:.1f}s, Recall@10 vs exact {rec:.3f}")
    return meta
