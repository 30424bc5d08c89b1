"""faiss indexes over streamer vectors: exact when small, else IVF tuned to a recall target (or forced HNSW/PQ).

An index folder holds index.faiss, keys.txt, the key and label tables of key_table.py, vectors.npy (float16,
for lookups by id) and meta.json (model hash, dim, metric, kind, parameters, and the recall at the served k, at 10
and at 50 against exact search, measured as `similar` answers: each query is an indexed streamer, left out of its
own neighbours). No torch here: `similar` imports this module.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from anchor_embed import atomic
from anchor_embed.data.key_table import write_key_table
from anchor_embed.data.npy_file import load_npy
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.evaluation.metrics import recall_at_k
from anchor_embed.progress import say
from anchor_embed.serving.vectors import DAMAGED, REEMBED, open_vectors
from anchor_embed.vectorspace import without_self

EXACT_MAX = 200_000
SERVED_K = 20     # the k `similar`, `Lookup.similar` and `serve` answer by default: what a build tunes for


def parse_bytes(text: str) -> int:
    units = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40, "b": 1}
    t = text.strip().lower()
    for u, m in units.items():
        if t.endswith(u):
            try:
                size = float(t[: -len(u)]) * m
            except ValueError:
                break
            if not size > 0 or size == float("inf"):        # nan, zero, negative or endless
                break
            return int(size)
    raise AnchorEmbedError(f"--memory-budget {text!r}: expected a positive size like 512MB or 2GB")


KINDS = ("flat", "flat_fp16", "ivf_flat", "hnsw", "ivf_pq")
SEARCH_PARAM = {"hnsw": "efSearch", "ivf_flat": "nprobe", "ivf_pq": "nprobe"}
CHUNK = 1 << 16   # rows read at a time when scanning a memory map (64k x 256 float32 = 64 MB)
MAX_SCAN = 0.25  # an IVF index that must probe more than this share of its lists to reach the target is no faster


def default_params(kind: str, n: int, dim: int) -> dict:
    """Build parameters of an index kind for n vectors of dim, whether picked by budget or forced."""
    if kind in ("flat", "flat_fp16"):
        return {}
    if kind == "hnsw":
        return {"M": 32, "efConstruction": 80, "efSearch": 96}
    if kind == "ivf_flat":
        return {"nlist": max(1, int(np.sqrt(n))), "nprobe": 16}
    if kind == "ivf_pq":
        pq_m = next(x for x in (64, 32, 16, 8, 4, 2, 1) if dim % x == 0)
        # refine: 10 x k PQ candidates re-scored exactly from the index folder's float16 vectors (memory-mapped)
        return {"nlist": max(1, int(4 * np.sqrt(n))), "m": pq_m, "nbits": 8, "nprobe": 32, "refine": 10}
    raise AnchorEmbedError(f"--kind {kind!r}: choose from {', '.join(KINDS)}")


def min_vectors(kind: str, params: dict) -> int:
    """Fewest vectors an index kind can be trained on: IVF-PQ's codebooks need 2^nbits points each, the IVF
    kinds a point per list (faiss stops with a raw RuntimeError below that)."""
    if kind == "ivf_pq":
        return max(2 ** params["nbits"], params["nlist"])
    return params["nlist"] if kind == "ivf_flat" else 1


def choose(n: int, dim: int, budget: int, exact_max: int = EXACT_MAX) -> tuple[str, dict]:
    """Exact for small sets; IVF-Flat when the raw vectors fit the budget (tuned to the recall target); else IVF-PQ.

    `build_index` turns a picked IVF-Flat that cannot reach the target cheaply into flat_fp16 (exhaustive).
    A set too small to train IVF-PQ on is searched exactly whatever the budget: it is a few kilobytes.
    """
    if n <= exact_max and n * dim * 4 <= budget or n < min_vectors("ivf_pq", default_params("ivf_pq", n, dim)):
        kind = "flat"
    elif n * dim * 4 * 1.1 <= budget:
        kind = "ivf_flat"
    else:
        kind = "ivf_pq"
    return kind, default_params(kind, n, dim)


def build_faiss(x: np.ndarray, kind: str, params: dict, seed: int = 0):
    import faiss

    d = x.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "flat_fp16":  # exhaustive over float16 codes: half the bytes to scan, scores within fp16 rounding
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, params["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["efConstruction"]
    else:
        quant = faiss.IndexFlatIP(d)
        if kind == "ivf_flat":
            index = faiss.IndexIVFFlat(quant, d, params["nlist"], faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFPQ(quant, d, params["nlist"], params["m"], params["nbits"],
                                     faiss.METRIC_INNER_PRODUCT)
            index.pq.cp.min_points_per_centroid = 1      # gates only faiss's raw "please provide ..." line
        index.cp.min_points_per_centroid = 1
        rng = np.random.default_rng(seed)
        sample = x[np.sort(rng.choice(len(x), size=min(len(x), 64 * params["nlist"]), replace=False))]
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    for s in range(0, len(x), 100_000):
        index.add(np.ascontiguousarray(x[s:s + 100_000], dtype=np.float32))
    set_search_param(index, kind, params)
    return index


def set_search_param(index, kind: str, params: dict) -> None:
    """Apply the recorded search-time parameter (efSearch or nprobe) to an opened index (none recorded: the
    setting saved in the index file stays)."""
    if kind == "hnsw" and "efSearch" in params:
        index.hnsw.efSearch = int(params["efSearch"])
    elif kind in ("ivf_flat", "ivf_pq") and "nprobe" in params:
        index.nprobe = int(params["nprobe"])


class Sample(NamedTuple):
    """Indexed streamers as queries, as a lookup by id asks them: the vectors (rounded to float16, as the index
    folder stores them and `similar` reads them), their rows, and each one's exact top-k without itself."""

    q: np.ndarray
    want: np.ndarray
    own: np.ndarray


def sample_queries(x: np.ndarray, n_queries: int = 1000, k: int = 10, seed: int = 0) -> Sample:
    """A seeded sample of the indexed vectors as queries, with their exact top-k (brute-force inner product),
    each query's own row left out as `similar` leaves it out (it is its own nearest: counting it was a free hit
    that overstated recall, by .017 at k=10 on twitch ivf_pq)."""
    import faiss

    rng = np.random.default_rng(seed)
    own = np.sort(rng.choice(len(x), size=min(n_queries, len(x)), replace=False))
    q = np.ascontiguousarray(np.asarray(x[own]).astype(np.float16), dtype=np.float32)
    # brute force over x a chunk at a time (x may be a float16 memory map larger than memory), merging top-k
    k = min(k, len(x) - 1)
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for s in range(0, len(x), CHUNK):
        sims, idx = faiss.knn(q, np.ascontiguousarray(x[s:s + CHUNK], dtype=np.float32), min(k + 1, len(x) - s),
                              metric=faiss.METRIC_INNER_PRODUCT)
        cs, ci = np.concatenate([best_s, sims], 1), np.concatenate([best_i, idx + s], 1)
        top = np.argsort(-cs, axis=1, kind="stable")[:, :k + 1]
        best_s, best_i = np.take_along_axis(cs, top, 1), np.take_along_axis(ci, top, 1)
    return Sample(q, without_self(best_i, best_s, own, k)[0], own)


def widened(kind: str, value: int, want: int, top: int):
    """The next search setting of an approximate index that returned fewer than `want` rows (efSearch at least
    `want` and doubled, nprobe doubled, both up to `top`), as faiss SearchParameters with the value; None when
    the setting is at its top already (every list probed)."""
    import faiss

    if value >= top:
        return None
    value = min(top, max(2 * value, want) if kind == "hnsw" else 2 * value)
    return (faiss.SearchParametersHNSW(efSearch=value) if kind == "hnsw" else faiss.SearchParametersIVF(nprobe=value)), value


def search(index, q: np.ndarray, k: int, vectors: np.ndarray | None = None, refine: int = 0, params=None
           ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the top-k per query; with `refine`, the index proposes k x refine candidates that are
    re-scored exactly against `vectors` (the indexed rows, e.g. a memory map): compressed codes (PQ) rank
    coarsely, a few hundred exact inner products a query restore the order. Padding rows are -1. `params`
    (faiss SearchParameters) overrides the index's search setting for this call only."""
    given = {"params": params} if params is not None else {}
    if not refine or vectors is None:
        return index.search(q, k, **given)
    _, cand = index.search(q, min(k * refine, index.ntotal), **given)
    valid = cand >= 0
    rows, where = np.unique(cand[valid], return_inverse=True)     # sorted: a memory map reads them in order
    exact = np.asarray(vectors[rows], np.float32)[where]
    scores = np.full(cand.shape, -np.inf, np.float32)
    scores[valid] = np.einsum("ij,ij->i", exact, np.repeat(q, valid.sum(1), axis=0))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    idx = np.where(np.isfinite(np.take_along_axis(scores, top, 1)), np.take_along_axis(cand, top, 1), -1)
    return np.take_along_axis(scores, top, 1), idx


def search_as_served(index, kind: str, q: np.ndarray, k: int, vectors: np.ndarray | None = None, refine: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """`search`, its setting widened while a query gets fewer than k rows, as a lookup searches (an approximate
    index's tuned efSearch or nprobe can hold fewer candidates than a large k). hnsw searches with efSearch at
    least k from the start: below k its graph search returns k rows of which many are poor (efSearch 16 tuned
    at k 20 found .74 of the exact top-50)."""
    import faiss

    want = min(k, index.ntotal)
    start = (faiss.SearchParametersHNSW(efSearch=want) if kind == "hnsw" and index.hnsw.efSearch < want
             else None)
    scores, idx = search(index, q, k, vectors, refine, params=start)
    if kind not in SEARCH_PARAM or not len(idx):
        return scores, idx
    value = max(int(index.hnsw.efSearch), want) if kind == "hnsw" else int(index.nprobe)
    top = index.ntotal if kind == "hnsw" else int(index.nlist)
    while (idx >= 0).sum(1).min() < want:
        step = widened(kind, value, want, top)
        if step is None:
            break
        setting, value = step
        scores, idx = search(index, q, k, vectors, refine, params=setting)
    return scores, idx


def recall(index, sample: Sample, vectors: np.ndarray | None = None, refine: int = 0, k: int | None = None,
           kind: str = "flat") -> float:
    """Mean share of each query's exact top-k (k: the sample's width unless given) that `index` (re-scored from
    `vectors` when `refine`) answers, asked as `similar` asks: k + 1 rows, the query's own row dropped."""
    k = min(k or sample.want.shape[1], sample.want.shape[1])
    if k == 0:                  # one streamer: no neighbour to find, none missed
        return 1.0
    scores, idx = search_as_served(index, kind, sample.q, min(k + 1, index.ntotal), vectors, refine)
    got, _ = without_self(idx, scores, sample.own, k)
    return recall_at_k(got, sample.want[:, :k], k)


class AsStored:
    """Rows of vectors as the index folder holds them (float16), for re-scoring as a lookup does."""

    def __init__(self, x: np.ndarray):
        self.x = x

    def __getitem__(self, rows):
        return np.asarray(self.x[rows]).astype(np.float16)


MAX_REFINE = 80  # at most 80 x (k + 1) exact re-scorings a query (k = 20: 1,680 rows of the memory map)


def tune(index, kind: str, params: dict, sample: Sample, target: float, cap: int | None = None,
         vectors: np.ndarray | None = None, k: int | None = None) -> tuple[dict, list[dict], float]:
    """The cheapest search setting whose recall at `k` (the sample's width unless given), measured as `similar`
    answers, reaches `target`, walking a doubling ladder of the search parameter (up to `cap`); the curve of
    every setting tried (`recall_at_k`).

    With `refine` (IVF-PQ re-scoring), recall can plateau below the target however many lists are probed:
    the true neighbours are in the probed lists but outside the k x refine best by PQ code. When a doubling of
    the lists gains less than 0.01 (or the ladder ends), the candidates double instead, up to MAX_REFINE.
    Returns the parameters with the chosen values set (when nothing reaches the target, the best setting), the
    curve, and the chosen setting's recall.
    """
    name = SEARCH_PARAM[kind]
    top = min(params["nlist"] if kind != "hnsw" else 4096, cap or 1 << 30)
    # the doubling ladder up to `top`, which it always holds (a 1-list index had an empty ladder: IndexError)
    ladder = sorted({min(top, 2 ** i) for i in range(0, 13) if 2 ** (i - 1) < top and 2 ** i >= 4} | {top})
    refine = params.get("refine", 0)
    curve: list[dict] = []
    got: list[float] = []         # unrounded: a setting at .94996 does not reach .95 because the curve says .95
    step = 0
    while True:
        set_search_param(index, kind, {name: ladder[step]})
        t0 = time.perf_counter()
        r = recall(index, sample, vectors, refine, k, kind)
        curve.append({name: ladder[step], **({"refine": refine} if refine else {}), "recall_at_k": round(r, 4),
                      "qps": round(len(sample.q) / (time.perf_counter() - t0), 1)})
        got.append(r)
        if r >= target:
            break
        plateau = len(curve) > 1 and r - curve[-2]["recall_at_k"] < 0.01 and curve[-2].get("refine") == refine
        if refine and refine < MAX_REFINE and (plateau or step == len(ladder) - 1):
            refine *= 2
        elif step < len(ladder) - 1:
            step += 1
        else:
            break
    at = next((i for i, r in enumerate(got) if r >= target), int(np.argmax(got)))
    best = curve[at]
    chosen = {**params, name: best[name], **({"refine": best["refine"]} if "refine" in best else {})}
    set_search_param(index, kind, chosen)
    return chosen, curve, got[at]


def embedded_media_root(vec_dir: Path) -> str | None:
    """The media root `embed` read the frames of a vectors folder from (its fingerprint.json), kept in the index's
    meta.json so a server finds the frames after the vectors folder is gone."""
    try:
        root = atomic.read_json_object(vec_dir / "fingerprint.json").get("media_root")
    except AnchorEmbedError:
        return None
    return root if isinstance(root, str) else None


def read_meta(path: Path) -> dict:
    """An index (or vectors) folder's meta.json as a dict; one line naming the file when it is not one."""
    return atomic.read_json_object(path)


# what a build writes into its folder (and the review page's log, kept beside the index it reviews)
INDEX_FILES = {"index.faiss", "keys.txt", "keys.npy", "keys_sorted.npy", "keys_sorted_rows.npy", "labels.jsonl",
               "labels_offsets.npy", "vectors.npy", "modalities.npy", "meta.json", "reviews.jsonl"}


def open_modalities(vec_dir: Path, count: int) -> np.ndarray | None:
    """A vectors folder's per-modality vectors (memory-mapped), None when it has none; a damaged file is one line,
    found before a build replaces anything in its --out."""
    path = vec_dir / "modalities.npy"
    if not path.is_file():
        return None
    parts = load_npy(path, REEMBED, mmap=True)
    if parts.dtype.kind != "f" or parts.ndim != 3 or len(parts) != count:
        raise AnchorEmbedError(f"{path}: holds {parts.dtype} of shape {parts.shape}, not {count} rows of "
                               f"per-modality float vectors; {DAMAGED}")
    return parts


def check_out(out: Path) -> None:
    """Refuse an --out folder holding files a build does not write (a run folder got index.faiss, vectors.npy
    and a meta.json beside its config; a folder of notes got the index mixed in)."""
    foreign = sorted(p.name for p in out.iterdir() if p.name not in INDEX_FILES and not p.name.startswith(".")) \
        if out.is_dir() else []
    if foreign:
        raise AnchorEmbedError(f"--out {out}: holds files index build does not write ({', '.join(foreign[:3])}"
                               f"{', ...' if len(foreign) > 3 else ''}); give --out a folder of its own")


def build_index(vectors: str | Path, out: str | Path, memory_budget: str = "2GB", kind: str | None = None,
                model: str | Path | None = None, min_recall: float = 0.95, exact_max: int = EXACT_MAX,
                k: int = SERVED_K) -> dict:
    """Build and save an index over a vectors folder; refuses vectors of another model than `model`.

    An approximate index is tuned on 1,000 sample queries (indexed streamers) to the cheapest search setting
    whose recall at `k` (the neighbours a lookup asks for; 20, as `similar` by default), measured as `similar`
    answers (the query itself left out), reaches `min_recall`; the recall at 10 and at 50 of that setting is
    recorded too. When the picker's IVF index would have to scan over a quarter of the data for that (data
    without neighbourhood structure, such as uniform random vectors), exact search is used instead.
    """
    from anchor_embed.model.store import model_hash

    vec_dir, out = Path(vectors), Path(out)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise AnchorEmbedError(f"--k {k!r}: a whole number, at least 1 (the neighbours a lookup asks for)")
    k = int(k)
    x, keys, vmeta = open_vectors(vec_dir, need=1)
    parts = open_modalities(vec_dir, len(keys))
    if model is not None and not (Path(model) / "model.safetensors").is_file():
        raise AnchorEmbedError(f"{model}: no model here (expected model.safetensors) to check the vectors against")
    if model is not None and (have := model_hash(Path(model))) != vmeta["model_hash"]:
        patched = f" (its base patched by {vmeta['adapter']})" if vmeta.get("adapter") else ""
        raise AnchorEmbedError(f"{vec_dir}: vectors were made by model {vmeta['model_hash']}{patched}, "
                               f"not by {model} ({have}); re-run embed")
    if out.exists() and not out.is_dir():
        raise AnchorEmbedError(f"--out {out}: exists and is not a folder")
    old = out / "meta.json"
    if old.is_file():
        have = read_meta(old)
        if "kind" not in have:          # a vectors folder (its own or another): building here would overwrite it
            raise AnchorEmbedError(f"{out}: holds vectors, not an index; give --out a folder of its own")
        if have["model_hash"] != vmeta["model_hash"] or have["dim"] != vmeta["dim"]:
            raise AnchorEmbedError(f"{out}: holds an index of model {have['model_hash']} ({have['dim']}-d); "
                                   f"these vectors are of {vmeta['model_hash']} ({vmeta['dim']}-d): use another --out")
    check_out(out)
    chosen, params = (kind, default_params(kind, len(keys), x.shape[1])) if kind else \
        choose(len(keys), x.shape[1], parse_bytes(memory_budget), exact_max)
    if len(keys) < (least := min_vectors(chosen, params)):
        raise AnchorEmbedError(f"--kind {chosen}: needs at least {least} vectors to train on, {vec_dir} holds "
                               f"{len(keys)}; use --kind flat (exact search, as fast at this size)")
    import faiss

    t0 = time.perf_counter()
    index = build_faiss(x, chosen, params)
    curve: list[dict] = []
    note = ""
    at = {10: 1.0, k: 1.0, 50: 1.0}     # recall at 10, at the served k and at 50 (exact search: 1)
    if chosen != "flat":
        # exact neighbours to the widest k reported; an index of float32 input re-scores (ivf_pq) from its float16
        # copy, as a lookup does
        sample = sample_queries(x, k=max(k, 50))
        stored = x if x.dtype == np.float16 else AsStored(x)
        if chosen != "flat_fp16":
            picked_ivf = kind is None and chosen == "ivf_flat"
            cap = max(4, int(MAX_SCAN * params["nlist"])) if picked_ivf else None
            params, curve, got = tune(index, chosen, params, sample, min_recall, cap, vectors=stored, k=k)
            if picked_ivf and got < min_recall:
                note = (f"ivf_flat reaches Recall@{k} {got:.3f} < {min_recall} even probing {cap}/{params['nlist']} "
                        f"lists (no neighbourhood structure to exploit), so exhaustive search over float16 codes is used")
                say(f"[yellow]index[/]: {note}")
                chosen, params = "flat_fp16", {}
                del index  # the IVF lists hold a full copy of the vectors: free them before the next build
                index = build_faiss(x, chosen, params)
            elif got < min_recall:
                note = f"{chosen} reaches Recall@{k} {got:.3f} at best, below the target {min_recall}"
                say(f"[yellow]index[/]: {note}")
        at = {n: recall(index, sample, stored, params.get("refine", 0), n, chosen) for n in sorted({10, k, 50})}
    secs = time.perf_counter() - t0
    from anchor_embed.locks import exclusive

    # the files land one by one, meta.json last, under the folder's lock: a server swaps only after that. The
    # old meta.json goes first, so a build stopped half-way leaves a folder every reader refuses (it was read
    # as the old index: the new keys with the old vectors answered with other streamers' neighbours)
    with exclusive(out, "index build"):
        (out / "meta.json").unlink(missing_ok=True)
        for name in INDEX_FILES:        # temp files of a build killed mid-write (a live one would hold the lock)
            for stale in out.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
        with atomic.atomic_path(out / "index.faiss") as tmp:
            faiss.write_index(index, str(tmp))
        atomic.write_lines(out / "keys.txt", keys)
        write_key_table(out, keys, vec_dir / "labels.jsonl")
        atomic.write_npy_as(out / "vectors.npy", x, np.float16)   # chunked: no full copy in memory
        if parts is not None:      # per-modality vectors, for similar --explain
            atomic.write_npy(out / "modalities.npy", parts)
        else:
            (out / "modalities.npy").unlink(missing_ok=True)
        meta = {"model_hash": vmeta["model_hash"], "model_dir": vmeta["model_dir"],
                **({"adapter": vmeta["adapter"]} if vmeta.get("adapter") else {}), "dim": int(x.shape[1]),
                "metric": "inner_product", "kind": chosen, "params": params, "count": len(keys),
                "k": k, "recall_at_k": round(at[k], 4), "recall_at_10": round(at[10], 4),
                "recall_at_50": round(at[50], 4), "target_recall": min_recall, "tuning": curve, "note": note,
                "build_seconds": round(secs, 2), "vectors_dir": str(vec_dir.resolve()),
                "media_root": embedded_media_root(vec_dir)}
        atomic.write_json(out / "meta.json", meta)
    say(f"[bold]index[/]: {chosen}{' ' + str(params) if params else ''} over {len(keys)} vectors in {secs:.1f}s, "
        f"Recall@{k} vs exact {at[k]:.4f} (@10 {at[10]:.4f}, @50 {at[50]:.4f}; the query itself left out)")
    return meta
