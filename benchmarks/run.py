"""`make bench` / `make bench-quick`: quality of every method on every dataset, and speed, into BENCHMARKS.md.

Quality: for each dataset folder holding streamers.jsonl and ids.npy: features once, then per seed
pretrain, each transfer method, evaluate (frozen backbones and every model in one table); mean and spread
over seeds; optionally again with a share of the ID embeddings replaced by noise (--id-noise).
Speed: each job in its own process (peak memory is its own), each figure beside a baseline from the same run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

METRICS = ["recall_at_10", "recall_at_50", "ndcg_at_10", "alignment", "uniformity"]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def noisy_ids(src: Path, dst: Path, share: float, seed: int) -> Path:
    """A copy of ids.npy with `share` of its rows replaced by random unit vectors (keys kept)."""
    x = np.load(src).copy()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(x), int(share * len(x)), replace=False)
    noise = rng.standard_normal((len(rows), x.shape[1])).astype(np.float32)
    x[rows] = noise / np.linalg.norm(noise, axis=1, keepdims=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    np.save(dst, x)
    dst.with_suffix(".keys.txt").write_text(src.with_suffix(".keys.txt").read_text())
    return dst


def quality(data: Path, out: Path, seeds: int, pre_epochs: int, tr_epochs: int, id_noise: float) -> dict:
    from anchor_embed.evaluation.evaluate import evaluate
    from anchor_embed.features.build import build_features
    from anchor_embed.training.pretrain import pretrain
    from anchor_embed.transfer.methods import METHODS
    from anchor_embed.transfer.run import transfer

    name = data.name
    cache = out / name / "features"
    build_features(data / "streamers.jsonl", cache, media_root=data)
    variants = {"clean": data / "ids.npy"}
    if id_noise:
        variants[f"{int(id_noise * 100)}% noisy ids"] = noisy_ids(data / "ids.npy", out / name / "noisy" / "ids.npy",
                                                                 id_noise, 0)
    tables, curves = {}, {}
    for variant, ids in variants.items():
        per_model: dict[str, list[dict]] = {}
        for seed in range(seeds):
            root = out / name / variant.replace(" ", "_").replace("%", "pct") / f"seed{seed}"
            pre = out / name / "pretrain" / f"seed{seed}"  # pretraining never sees ID embeddings: shared by variants
            if not (pre / "model.safetensors").is_file():
                pretrain(cache, pre, epochs=pre_epochs, batch_size=256, lr=3e-4, seed=seed, resume=pre.exists())
            curves.setdefault(name, [json.loads(x) for x in (pre / "metrics.jsonl").read_text().splitlines()])
            runs = [pre]
            for m in METHODS.names():
                run = root / m
                if not (run / "checkpoints" / "latest.json").is_file() or \
                        json.loads((run / "checkpoints" / "latest.json").read_text())["epoch"] < tr_epochs:
                    transfer(pre, ids, run, method=m, epochs=tr_epochs, seed=seed, resume=run.exists(),
                             holdout_frac=0.2)
                runs.append(run)
            rows = evaluate(cache, data / "ids.npy", models=runs, seed=seed, out=root / "evaluation", ridge=True,
                            knn_average=True, train_id_emb=ids)
            for r in rows:
                label = "pretrained" if r["model"] == pre.name else r["model"]
                per_model.setdefault(label, []).append(r)
        tables[variant] = per_model
    return {"tables": tables, "curves": curves}


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


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
             ["dedup", str(n_vectors)], ["scatter", str(n_vectors), "1000"]]
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


def plot(curves: dict, tables: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    files = []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, rows in curves.items():
        ax.plot([r["epoch"] for r in rows], [r["view_top1"] for r in rows], label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("view top-1 (pretraining)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pretrain_curves.png", dpi=100)
    files.append("pretrain_curves.png")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(tables)
    models = list(next(iter(tables.values()))["clean"])
    w = 0.8 / len(names)
    for i, name in enumerate(names):
        vals = [statistics.mean(r["recall_at_10"] for r in tables[name]["clean"][m]) for m in models]
        ax.bar(np.arange(len(models)) + i * w, vals, w, label=name)
    ax.set_xticks(np.arange(len(models)) + w * (len(names) - 1) / 2, models, rotation=20)
    ax.set_ylabel("Recall@10")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "recall_by_method.png", dpi=100)
    files.append("recall_by_method.png")
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets"))
    ap.add_argument("--dataset", type=Path, action="append", default=[], help="Extra dataset folder (same layout).")
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    ap.add_argument("--report", type=Path, default=Path("BENCHMARKS.md"))
    ap.add_argument("--quick", action="store_true", help="1 seed, short training, 100k vectors, no noise.")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--id-noise", type=float, default=0.3)
    ap.add_argument("--vectors", type=int, default=1_000_000)
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.id_noise, args.vectors = 1, 0.0, 100_000
    pre_epochs, tr_epochs = (10, 5) if args.quick else (30, 10)
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
        q = quality(d, args.out, args.seeds, pre_epochs, tr_epochs, args.id_noise)
        results[d.name] = q["tables"]
        curves.update(q["curves"])
    sp = speed(args.data, args.out, args.vectors)
    args.out.mkdir(parents=True, exist_ok=True)
    pics = plot(curves, results, args.report.parent) if results else []
    write_report(args, results, sp, pics, pre_epochs, tr_epochs, time.time() - t_start)


def write_report(args, results: dict, sp: list[dict], pics: list[str], pre_epochs: int, tr_epochs: int,
                 secs: float) -> None:
    import faiss
    import torch

    import anchor_embed

    lines = ["# Benchmarks", "",
             f"Generated by `{'make bench-quick' if args.quick else 'make bench'}` on "
             f"{datetime.date.today().isoformat()} in {secs / 60:.1f} min. Machine: {platform.machine()}, "
             f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
             f"faiss {faiss.__version__}, anchor-embed {anchor_embed.__version__}.", "",
             f"Quality: held-out 20% of the streamers with ID embeddings per seed; truth = their top-k neighbours by "
             f"ID embedding; {args.seeds} seed(s) (mean ± sd); pretraining {pre_epochs} epochs, each transfer "
             f"method {tr_epochs} epochs on the same start, data and budget. `ridge (reference)` is a closed-form "
             f"ridge map of the frozen features onto the (same, possibly noisy) training ID embeddings: a simple "
             f"yardstick, not a method of the toolkit. Pretraining never sees ID embeddings, so the clean and noisy "
             f"tables of a seed share one pretrained model.", ""]
    for name, variants in results.items():
        for variant, per_model in variants.items():
            lines += [f"## {name} ({variant} ID embeddings for training; evaluation on the clean ones)", "",
                      "| model | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
            for model, rows in per_model.items():
                lines.append(f"| {model} | " + " | ".join(fmt([r[m] for r in rows]) for m in METRICS) + " |")
            lines.append("")
    lines += ["## Speed", "", "Each row from its own process; ratio = ours / baseline measured in the same run.", "",
              "| job | figures |", "|---|---|"]
    for r in sp:
        lines.append(f"| {r['job']} | " + ", ".join(f"{k} {v}" for k, v in r.items() if k != "job") + " |")
    lines.append("")
    lines += [f"![{p}]({p})" for p in pics]
    args.report.write_text("\n".join(lines) + "\n")
    log(f"wrote {args.report}")


if __name__ == "__main__":
    main()
