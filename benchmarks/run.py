"""`make bench` / `make bench-quick`: quality of every method on every dataset, and speed, into BENCHMARKS.md.

Quality (benchmarks/quality.py): for each dataset folder holding streamers.jsonl and ids.npy, every
registered transfer method and the references, taught with clean, noisy and sparse ID embeddings, plus
the ablation rows of the default method, over seeds. Speed: each job in its own process (peak memory is
its own), each figure beside a baseline from the same run. The report: benchmarks/report.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def speed(data_root: Path, out: Path, n_vectors: int) -> list[dict]:
    jobs = []
    twitch = data_root / "twitch-streamers" / "streamers.jsonl"
    if twitch.is_file():
        jobs.append(["text", str(twitch)])
    posters = data_root / "movielens-100k" / "images"
    if posters.is_dir():
        jobs.append(["frames", str(posters), "256"])
    cache, pre = out / "twitch-streamers" / "features", out / "twitch-streamers" / "pretrain" / "seed0"
    if (pre / "model.safetensors").is_file():
        jobs += [["train", str(cache), "20"], ["embed", str(pre), str(twitch), str(out / "speed" / "embed")]]
    jobs += [["index", str(n_vectors), str(out / "speed"), "random"],
             ["index", str(n_vectors), str(out / "speed" / "clustered"), "clustered"],
             ["dedup", str(n_vectors)], ["scatter", str(n_vectors), "1000"],
             ["serve", str(out / "speed" / "index"), "30", "16"]]
    results = []
    for job in jobs:
        log(f"speed: {' '.join(job)}")
        p = subprocess.run([sys.executable, "-m", "benchmarks.speed_jobs", *job], capture_output=True, text=True)
        if p.returncode:
            log(f"speed job {job[0]} failed: {p.stderr.strip().splitlines()[-1:]}")
            continue
        results.append(json.loads(p.stdout.strip().splitlines()[-1]))
    cli = Path(sys.executable).with_name("anchor-embed")
    for data, idx in (("random", out / "speed" / "index"), ("clustered", out / "speed" / "clustered" / "index")):
        if not (idx / "index.faiss").is_file():
            continue
        walls, base = [], []
        for i in range(6):
            t0 = time.perf_counter()
            subprocess.run([str(cli), "similar", f"a{i * 1000}", "-k", "20", "--index", str(idx), "--json"],
                           capture_output=True, check=True)
            walls.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], capture_output=True)
            base.append(time.perf_counter() - t0)
        walls = walls[1:]  # the first call reads the index into the page cache
        results.append({"job": f"similar CLI call ({data} {n_vectors})", "median_wall_s": round(statistics.median(walls), 3),
                        "bare_python_s": round(statistics.median(base), 3),
                        "ratio": round(statistics.median(walls) / statistics.median(base), 1)})
    return results


def main() -> None:
    from benchmarks.quality import Budget, run_dataset
    from benchmarks.report import plot, write_report

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets"))
    ap.add_argument("--dataset", type=Path, action="append", default=[], help="Extra dataset folder (same layout).")
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--report", type=Path, default=Path("BENCHMARKS.md"))
    ap.add_argument("--quick", action="store_true",
                    help="1 seed, clean ID embeddings only, no ablation, shorter caps, 100k vectors.")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--vectors", type=int, default=1_000_000, help="Random vectors of the speed rows.")
    ap.add_argument("--scale-vectors", type=int, default=10_000_000,
                    help="Rows of the bounded-memory scale row (index build, similar, dedup from disk; 10M x 256 "
                         "float16 takes 5 GB and its index 6.5 GB under --out).")
    ap.add_argument("--variants", default="clean,noisy,sparse",
                    help="ID-embedding variants to teach with, comma-separated (clean, noisy, sparse).")
    ap.add_argument("--no-ablation", action="store_true", help="Skip the ablation rows of the default method.")
    ap.add_argument("--quality-only", action="store_true",
                    help="Only the quality tables: no downstream tasks, speed or scale rows (the report says so).")
    ap.add_argument("--ablation-seeds", type=int, default=None,
                    help="Run the ablation rows on the first N seeds only (default: every seed).")
    args = ap.parse_args()
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if bad := [v for v in variants if v not in ("clean", "noisy", "sparse")]:
        ap.error(f"--variants: unknown {', '.join(bad)} (known: clean, noisy, sparse)")
    budget = Budget(ablations=not args.no_ablation, variants=variants, ablation_seeds=args.ablation_seeds)
    if args.quick:
        args.seeds, args.vectors = 1, 100_000
        budget = Budget(pretrain_epochs=15, transfer_epochs=40, patience=5, ablations=False, variants=("clean",))
    folders = sorted(p for p in args.data.iterdir() if p.is_dir()) if args.data.is_dir() else []
    if not args.data.is_dir():
        log(f"{args.data} not found: skipping the datasets there")
    folders += args.dataset
    t_start = time.time()
    results, curves = {}, {}
    for d in folders:
        if not (d / "streamers.jsonl").is_file() or not (d / "ids.npy").is_file():
            log(f"{d}: no streamers.jsonl + ids.npy, skipped")
            continue
        log(f"quality: {d.name}")
        results[d.name] = run_dataset(d, args.out, args.seeds, budget, args.data.parent / "tools")
        curves[d.name] = results[d.name]["curves"]
        if not args.quick and not args.quality_only:
            from benchmarks.downstream import run_downstream

            log(f"downstream tasks: {d.name}")
            results[d.name]["downstream"] = run_downstream(d, args.out, args.seeds)
    sp = [] if args.quality_only else speed(args.data, args.out, args.vectors)
    if not args.quick and not args.quality_only:
        from benchmarks.scale import scale

        sp += scale(args.data, args.out, log, args.scale_vectors)
    args.out.mkdir(parents=True, exist_ok=True)
    pics = plot(curves, results, args.report.parent) if results else []
    full = not args.quick and not args.quality_only and args.seeds == 3 and budget.ablations and budget.ablation_seeds in (None, 3) \
        and set(budget.variants) == {"clean", "noisy", "sparse"}
    command = "make bench-quick" if args.quick else "make bench" if full else \
        "python -m benchmarks.run " + " ".join(sys.argv[1:])
    write_report(args.report, command, results, sp, pics, args.seeds,
                 budget, time.time() - t_start)
    log(f"wrote {args.report}")


if __name__ == "__main__":
    main()
