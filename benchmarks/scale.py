"""Scale rows of `make bench`: each figure beside its one-process baseline from the same run.

- pretraining streamers/s with 2 gloo processes (`torchrun`, 1 thread each) against 1 process (2 threads);
- `spark embed` in local[2] against `embed` on a synthetic table of twitch records under new ids (their atoms
  are in the model's feature cache, so both measure reading, the fusion forward and writing);
- `index build` + `similar` + `dedup` over n x 256 float16 vectors memory-mapped from disk under a
  `--memory-budget` far below their size: peak memory of each command, times, recall, planted duplicates found;
- the kernel map's fit on 20,000 synthetic streamers, streamed over row chunks against the whole Nyström matrix
  in memory + scikit-learn's RidgeCV: peak memory and time of each, and whether they fit the same map.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])}: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
    return time.perf_counter() - t0


def ddp_pretrain(cache: Path, out: Path, epochs: int = 3) -> dict:
    """End-to-end pretraining wall time, 2 processes (gloo) vs 1, same data and settings, no early stop."""
    cli = [sys.executable, "-m", "anchor_embed.cli"]
    flags = ["pretrain", "--features", str(cache), "--epochs", str(epochs), "--patience", "0", "--device", "cpu"]
    walls = {}
    for name, cmd in (("1 process", [*cli, *flags, "--threads", "2", "--out", str(out / "one")]),
                      ("2 processes", [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                       "-m", "anchor_embed.cli", *flags, "--threads", "1", "--out", str(out / "two")])):
        shutil.rmtree(out / ("one" if name == "1 process" else "two"), ignore_errors=True)
        walls[name] = _timed(cmd)
    n = len((cache / "streamers" / "keys.txt").read_text(encoding="utf-8").splitlines()) \
        if (cache / "streamers" / "keys.txt").is_file() else None
    return {"job": "scale: pretrain, 2 gloo processes vs 1 (end to end)", "streamers": n, "epochs": epochs,
            "wall_s_2proc": round(walls["2 processes"], 1), "wall_s_1proc": round(walls["1 process"], 1),
            "ratio_speedup": round(walls["1 process"] / walls["2 processes"], 2)}


def spark_embed(streamers: Path, run: Path, out: Path, n: int = 100_000) -> dict:
    """Wall time of `spark embed --master local[2]` vs `embed` on n synthetic records."""
    rows = [json.loads(x) for x in streamers.read_text(encoding="utf-8").splitlines() if x.strip()]
    rng = random.Random(0)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "synthetic.jsonl"
    with open(table, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({**rng.choice(rows), "anchor_id": f"syn{i:07d}"}, ensure_ascii=False) + "\n")
    cli = [sys.executable, "-m", "anchor_embed.cli"]
    for d in ("one", "spark"):
        shutil.rmtree(out / d, ignore_errors=True)
    one = _timed([*cli, "embed", "--model", str(run), "--streamers", str(table), "--media-root", str(streamers.parent),
                  "--out", str(out / "one")])
    spark = _timed([*cli, "spark", "embed", "--model", str(run), "--streamers", str(table), "--media-root",
                    str(streamers.parent), "--out", str(out / "spark"), "--master", "local[2]"])
    return {"job": f"scale: spark embed local[2] vs embed ({n:,} synthetic records)", "spark_wall_s": round(spark, 1),
            "embed_wall_s": round(one, 1), "ratio": round(spark / one, 2),
            "spark_streamers_per_s": round(n / spark), "embed_streamers_per_s": round(n / one)}


# runs a command and prints its peak RSS (its own process tree's maximum) on the last line of stderr
_PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
         "print('peak_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
         "sys.exit(r.returncode)")


def _measured(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one command in a fresh wrapper process."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _PEAK, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = p.stderr.strip().splitlines()
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd[2:5])}: {(lines[:-1] or ['?'])[-1]}")
    return wall, int(lines[-1].split()[1]) / 1024, p.stdout


def synthetic_vectors(folder: Path, n: int, dim: int = 256, planted: int = 500, seed: int = 0) -> None:
    """A vectors folder of n clustered unit vectors (float16, written a chunk at a time) whose last `planted`
    rows are near-copies (cosine > 0.99) of random earlier rows."""
    from anchor_embed import atomic

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    centres = rng.normal(size=(max(1, n // 500), dim)).astype(np.float32)
    x = np.lib.format.open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float16, shape=(n, dim))
    for s in range(0, n - planted, 100_000):
        e = min(s + 100_000, n - planted)
        v = centres[rng.integers(0, len(centres), e - s)] + 0.6 * rng.normal(size=(e - s, dim)).astype(np.float32)
        x[s:e] = v / np.linalg.norm(v, axis=1, keepdims=True)
    src = rng.choice(n - planted, planted, replace=False)
    v = np.asarray(x[np.sort(src)], np.float32) + 0.005 * rng.normal(size=(planted, dim)).astype(np.float32)
    x[n - planted:] = v / np.linalg.norm(v, axis=1, keepdims=True)
    x.flush()
    del x
    atomic.write_lines(folder / "keys.txt", (f"v{i:08d}" for i in range(n)))
    (folder / "labels.jsonl").write_text("")
    atomic.write_json(folder / "meta.json", {"model_hash": "synthetic", "model_dir": "none", "dim": dim,
                                            "dtype": "float16", "count": n, "normalized": True})
    atomic.write_json(folder / "planted.json", {f"v{n - planted + i:08d}": f"v{r:08d}" for i, r in
                                               enumerate(np.sort(src))})


def bounded_index(out: Path, n: int, budget: str = "64MB", queries: int = 200) -> dict:
    """index build, similar and dedup over n x 256 float16 vectors with --memory-budget `budget` (the vectors are
    n x 512 bytes): each command's peak RSS (file-backed pages of the memory maps included) and wall time."""
    vec, idx = out / "vectors", out / "index"
    if not (vec / "planted.json").is_file():
        shutil.rmtree(vec, ignore_errors=True)
        synthetic_vectors(vec, n)
    shutil.rmtree(idx, ignore_errors=True)
    cli = [sys.executable, "-m", "anchor_embed.cli"]
    build_s, build_mb, _ = _measured([*cli, "index", "build", str(vec), "--out", str(idx), "--memory-budget", budget])
    meta = json.loads((idx / "meta.json").read_text())
    ids = out / "queries.txt"
    ids.write_text("".join(f"v{i:08d}\n" for i in np.random.default_rng(1).choice(n, queries, replace=False)))
    sim_s, sim_mb, _ = _measured([*cli, "similar", "--index", str(idx), "--ids-file", str(ids), "-k", "10", "--json"])
    dups = out / "dedup.jsonl"
    dedup_s, dedup_mb, _ = _measured([*cli, "dedup", str(vec), "--threshold", "0.95", "--memory-budget", budget,
                                      "--out", str(dups)])
    planted = json.loads((vec / "planted.json").read_text())
    group_of = {m: g["group"] for g in map(json.loads, dups.read_text().splitlines()) for m in g["members"]}
    found = sum(a in group_of and group_of.get(b) == group_of[a] for a, b in planted.items())
    return {"job": f"scale: {n:,} x 256 float16 vectors from disk, --memory-budget {budget}",
            "vectors_mb": round(n * 256 * 2 / 2**20), "index_kind": meta["kind"],
            "index_recall_at_10": meta["recall_at_10"], "index_build_s": round(build_s, 1),
            "index_peak_mb": round(build_mb), f"similar_{queries}_queries_s": round(sim_s, 1),
            "similar_peak_mb": round(sim_mb), "dedup_s": round(dedup_s, 1), "dedup_peak_mb": round(dedup_mb),
            "planted_pairs_found": f"{found}/{len(planted)}"}


def kernel_map_fit(n: int = 20_000) -> dict:
    """The kernel map's fit (`fit_kernel_ridge`, streamed over row chunks) against the same fit with every
    row's Nyström features in memory and scikit-learn's RidgeCV on them, on n synthetic streamers
    (benchmarks/map_fit.py): wall time and peak RSS of each in its own process, and whether they agree."""
    from anchor_embed.evaluation.references import MAX_LANDMARKS

    cmd = [sys.executable, "-m", "benchmarks.map_fit", str(n)]
    got = {way: _measured([*cmd, way]) for way in ("streamed", "materialised")}
    fits = {way: json.loads(out.strip().splitlines()[-1]) for way, (_, _, out) in got.items()}
    same = fits["streamed"]["alpha"] == fits["materialised"]["alpha"] and \
        abs(fits["streamed"]["weight_sum"] - fits["materialised"]["weight_sum"]) <= 1e-3 * fits["streamed"]["weight_sum"]
    return {"job": f"scale: kernel map fit, {n:,} streamers, {min(n, MAX_LANDMARKS):,} landmarks: streamed vs "
                   "materialised + RidgeCV", "streamed_s": round(got["streamed"][0], 1),
            "streamed_peak_mb": round(got["streamed"][1]), "materialised_s": round(got["materialised"][0], 1),
            "materialised_peak_mb": round(got["materialised"][1]),
            "ratio_speedup": round(got["materialised"][0] / got["streamed"][0], 2),
            "ratio_memory": round(got["materialised"][1] / got["streamed"][1], 2), "same_fit": same}


def scale(data_root: Path, out: Path, log, bounded_n: int = 10_000_000) -> list[dict]:
    """The scale rows that can run here: 2 gloo processes and Spark embed need twitch-streamers and its seed-0
    pretraining from the quality runs; the bounded-memory index row needs neither."""
    twitch = data_root / "twitch-streamers" / "streamers.jsonl"
    cache, pre = out / "twitch-streamers" / "features", out / "twitch-streamers" / "pretrain" / "seed0"
    jobs = [("bounded index", lambda: bounded_index(out / "scale" / "bounded", bounded_n)),
            ("kernel map fit", kernel_map_fit)]
    if twitch.is_file() and (pre / "model.safetensors").is_file():
        jobs = [("ddp", lambda: ddp_pretrain(cache, out / "scale" / "ddp")),
                ("spark", lambda: spark_embed(twitch, pre, out / "scale" / "spark")), *jobs]
    else:
        log("scale: 2 processes and Spark embed need twitch-streamers and its quality runs; skipped")
    results = []
    for name, job in jobs:
        log(f"scale: {name}")
        try:
            results.append(job())
        except (RuntimeError, ImportError) as exc:
            log(f"scale job {name} failed: {exc}")
    return results


def main() -> None:
    """`python -m benchmarks.scale`: the scale rows alone, into their own report (the quality runs of an
    earlier `make bench` in --out are reused for the 2-process and Spark rows)."""
    import argparse
    import datetime
    import os
    import platform

    from benchmarks.report import speed_lines
    from benchmarks.run import log

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets"))
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--report", type=Path, default=Path("bench-out/scale.md"))
    ap.add_argument("--vectors", type=int, default=10_000_000, help="Rows of the bounded-memory index row.")
    args = ap.parse_args()
    t0 = time.time()
    rows = scale(args.data, args.out, log, args.vectors)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join([
        "# Scale rows", "",
        f"Generated by `python -m benchmarks.scale {' '.join(sys.argv[1:])}` on {datetime.date.today().isoformat()} "
        f"in {(time.time() - t0) / 60:.1f} min. Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM.", "",
        *speed_lines(rows)]) + "\n")
    log(f"wrote {args.report}")


if __name__ == "__main__":
    main()
