"""Scale rows of `make bench`: each figure beside its one-process baseline from the same run.

- pretraining streamers/s with 2 gloo processes (`torchrun`, 1 thread each) against 1 process (2 threads);
- `spark embed` in local[2] against `embed` on a synthetic table of twitch records under new ids (their atoms
  are in the model's feature cache, so both measure reading, the fusion forward and writing).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path


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


def scale(data_root: Path, out: Path, log) -> list[dict]:
    """The scale rows that can run here (twitch-streamers and its seed-0 pretraining from the quality runs)."""
    twitch = data_root / "twitch-streamers" / "streamers.jsonl"
    cache, pre = out / "twitch-streamers" / "features", out / "twitch-streamers" / "pretrain" / "seed0"
    if not (twitch.is_file() and (pre / "model.safetensors").is_file()):
        log("scale: needs twitch-streamers and its quality runs; skipped")
        return []
    results = []
    for name, job in (("ddp", lambda: ddp_pretrain(cache, out / "scale" / "ddp")),
                      ("spark", lambda: spark_embed(twitch, pre, out / "scale" / "spark"))):
        log(f"scale: {name}")
        try:
            results.append(job())
        except (RuntimeError, ImportError) as exc:
            log(f"scale job {name} failed: {exc}")
    return results
