"""Kill-safe: SIGKILL pretrain, transfer and embed at several points, resume, and get what an uninterrupted
run of the same seed gets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from anchor_embed.model.store import load_model

CLI = [sys.executable, "-m", "anchor_embed.cli", "--quiet"]
TINY = ["--batch-size", "16", "--d-model", "32", "--out-dim", "16", "--layers", "1", "--schedule", "constant"]


def _run(*args) -> None:
    p = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def _kill_when(args, ready, timeout: float = 120.0) -> None:
    """Start the command, SIGKILL it as soon as `ready()` holds (or when it ends by itself)."""
    p = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while p.poll() is None and not ready() and time.time() - t0 < timeout:
        time.sleep(0.02)
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait()


def _epoch(run: Path) -> int:
    f = run / "checkpoints" / "latest.json"
    try:
        return json.loads(f.read_text())["epoch"] if f.is_file() else 0
    except (json.JSONDecodeError, OSError):
        return 0


def _same_weights(a: Path, b: Path) -> None:
    ma, _ = load_model(a)
    mb, _ = load_model(b)
    for (k, x), y in zip(ma.state_dict().items(), mb.state_dict().values(), strict=True):
        assert torch.allclose(x, y, atol=1e-6), k


def _pretrain_args(cache: Path) -> list:
    return ["pretrain", "--features", cache, *TINY, "--epochs", "4", "--patience", "0", "--seed", "3"]


def _transfer_args(sample: Path, pretrained: Path) -> list:
    return ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--batch-size", "16",
            "--schedule", "constant", "--epochs", "4", "--patience", "0", "--holdout-frac", "0.2", "--seed", "1"]


@pytest.fixture(scope="module")
def uninterrupted(sample, sample_cache, tmp_path_factory) -> Path:
    """The uninterrupted pretrain (`full`) and transfer (`tfull`) every killed run must reproduce: run once."""
    root = tmp_path_factory.mktemp("uninterrupted")
    _run(*_pretrain_args(sample_cache), "--out", root / "full")
    _run(*_transfer_args(sample, root / "full"), "--out", root / "tfull")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_epoch", [0, 1, 2])
def test_pretrain_and_transfer_killed_then_resumed(sample, sample_cache, uninterrupted, tmp_path, kill_after_epoch):
    pre = _pretrain_args(sample_cache)
    cut = tmp_path / "cut"
    _kill_when([*pre, "--out", cut], lambda: _epoch(cut) > kill_after_epoch or kill_after_epoch == 0
               and (cut / "config.json").is_file())
    assert not (cut / "outcome.json").exists()                 # killed: marked unfinished
    _run(*pre, "--out", cut, "--resume")
    _same_weights(uninterrupted / "full", cut)

    tr = _transfer_args(sample, uninterrupted / "full")        # both transfers start from the same pretraining
    tcut = tmp_path / "tcut"
    _kill_when([*tr, "--out", tcut], lambda: _epoch(tcut) > kill_after_epoch or kill_after_epoch == 0
               and (tcut / "pairs.jsonl").is_file())
    _run(*tr, "--out", tcut, "--resume")
    _same_weights(uninterrupted / "tfull", tcut)
    assert json.loads((uninterrupted / "tfull" / "outcome.json").read_text()) == \
        json.loads((tcut / "outcome.json").read_text())


@pytest.mark.slow
def test_embed_killed_in_a_shard_and_in_the_merge(sample, pretrained, tmp_path):
    recs = sample / "streamers.jsonl"
    _run("embed", "--model", pretrained, "--streamers", recs, "--out", tmp_path / "full")
    vec = tmp_path / "cut"
    shard1 = vec / "shards" / "00001-of-00002"
    _kill_when(["embed", "--model", pretrained, "--streamers", recs, "--out", vec, "--shard", "1/2"],
               lambda: (shard1 / "features" / "meta.json").is_file())       # killed inside the shard's work
    _run("embed", "--model", pretrained, "--streamers", recs, "--out", vec, "--shard", "1/2")
    shard0 = vec / "shards" / "00000-of-00002"
    _kill_when(["embed", "--model", pretrained, "--streamers", recs, "--out", vec, "--shard", "0/2"],
               lambda: (shard0 / "done").is_file())                          # killed at the merge
    _run("embed", "--model", pretrained, "--streamers", recs, "--out", vec, "--shard", "0/2")
    keys = (vec / "keys.txt").read_text().split()
    order = np.argsort(keys)
    full_keys = (tmp_path / "full" / "keys.txt").read_text().split()
    assert sorted(keys) == sorted(full_keys) and len(keys) == len(set(keys))
    np.testing.assert_allclose(np.load(vec / "vectors.npy")[order],
                               np.load(tmp_path / "full" / "vectors.npy")[np.argsort(full_keys)], atol=1e-6)


def test_a_run_without_its_checkpoints_is_neither_overwritten_nor_restarted(pretrained, sample_cache, tmp_path):
    """Deleting checkpoints/ (to save disk) or its latest.json left a finished run open to a silent overwrite, and
    --resume restarted from epoch 1 over the old checkpoints."""
    import shutil

    from tests.conftest import SMALL, run_cli

    run = tmp_path / "run"
    shutil.copytree(pretrained, run)
    shutil.rmtree(run / "checkpoints")
    before = (run / "model.safetensors").read_bytes()
    for extra in ([], ["--resume"]):
        assert run_cli("pretrain", "--features", sample_cache, "--out", run, *SMALL, *extra) == 2
    assert (run / "model.safetensors").read_bytes() == before
    other = tmp_path / "other"
    shutil.copytree(pretrained, other)
    (other / "checkpoints" / "latest.json").unlink()
    assert run_cli("pretrain", "--features", sample_cache, "--out", other, *SMALL, "--resume") == 2
