"""The ID embeddings a benchmark teaches with: clean, with noisy rows, or re-learned from sparse behaviour.

The truth of every evaluation stays the dataset's own (full-interaction) ids.npy; these variants change
only what transfer, ridge and kNN averaging learn from.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

TOOL = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "id_embeddings.py"


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


def sparse_ids(dataset: Path, out: Path, frac: float, seed: int, tool: Path = TOOL) -> Path:
    """ID embeddings re-learned from a seeded share of the interactions, by the datasets' own recipe."""
    dst = out / "ids.npy"
    if not dst.is_file():
        subprocess.run([sys.executable, str(tool), str(dataset), "--out", str(out), "--sample-frac", str(frac),
                        "--seed", str(seed)], check=True, capture_output=True, text=True)
    return dst


def user_counts(dataset: Path, out: Path, frac: float = 1.0, seed: int = 0) -> Path:
    """`anchor_id,count` of distinct users per streamer, over the same interaction rows the ID recipe used
    (with `frac` < 1, the rows its seeded sample kept: the same draw, row by row)."""
    dst = out / "user_counts.csv"
    if dst.is_file():
        return dst
    rng = np.random.default_rng(seed)
    users: dict[str, set] = defaultdict(set)
    with (dataset / "interactions.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if frac < 1 and rng.random() >= frac:
                continue
            users[row["item_id"]].add(row["user_id"])
    out.mkdir(parents=True, exist_ok=True)
    dst.write_text("anchor_id,count\n" + "".join(f"{k},{len(v)}\n" for k, v in sorted(users.items())))
    return dst
