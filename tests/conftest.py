"""Shared fixtures: a tiny synthetic platform, its feature cache, one small pretrained run, the real datasets
(skipped when absent), and an in-process CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anchor_embed.cli.app import main

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"

# a tiny fusion model: enough to exercise every path in a second
SMALL = ["--epochs", "1", "--batch-size", "16", "--d-model", "32", "--out-dim", "16", "--layers", "1"]


def dataset(name: str) -> Path:
    """A real dataset folder, or skip the test cleanly when ../shared is not beside the checkout."""
    path = DATASETS / name
    if not (path / "streamers.jsonl").is_file():
        pytest.skip(f"dataset {path} not found")
    return path


def run_cli(*args: str) -> int:
    """Run `anchor-embed ARGS` in-process; returns the exit code."""
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def write_jsonl(path: Path, rows: list) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False))
            f.write("\n")
    return path


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> Path:
    """A small synthetic platform (72 streamers + duplicates, frames, ID embeddings)."""
    from anchor_embed.demo.sample import make_sample

    out = tmp_path_factory.mktemp("sample")
    make_sample(out, n=72, users=800, id_dim=16, seed=1)
    return out


@pytest.fixture(scope="session")
def sample_cache(sample, tmp_path_factory) -> Path:
    """Feature cache of the sample with the default bundled backbones."""
    from anchor_embed.features.build import build_features

    out = tmp_path_factory.mktemp("cache")
    build_features(sample / "streamers.jsonl", out, media_root=sample)
    return out


@pytest.fixture(scope="session")
def pretrained(sample_cache, tmp_path_factory) -> Path:
    """One small pretrained run of the sample, shared by every test that only reads it."""
    run = tmp_path_factory.mktemp("pretrained") / "run"
    assert run_cli("pretrain", "--features", sample_cache, "--out", run, *SMALL) == 0
    return run


@pytest.fixture(scope="session")
def sample_index(sample, pretrained, tmp_path_factory) -> Path:
    """A folder holding `vec` (the sample embedded by the shared pretrained run) and `idx` (its index); read only."""
    root = tmp_path_factory.mktemp("sample-index")
    assert run_cli("embed", "--model", pretrained, "--streamers", sample / "streamers.jsonl", "--out", root / "vec") == 0
    assert run_cli("index", "build", root / "vec", "--out", root / "idx") == 0
    return root


@pytest.fixture(scope="session")
def labels(sample, tmp_path_factory) -> Path:
    """The sample's labels for adapt and predict: each streamer's content kind (classes) and tag count (numbers)."""
    import csv

    path = tmp_path_factory.mktemp("labels") / "kind.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["anchor_id", "kind", "n_tags"])
        for line in (sample / "streamers.jsonl").read_text().splitlines():
            r = json.loads(line)
            w.writerow([r["anchor_id"], r["meta"]["kind"], len(r["tags"])])
    return path
