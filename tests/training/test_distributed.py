"""Multi-process training on CPU with gloo: a 2-process step equals one process on the concatenated batch, and
`torchrun -m anchor_embed.cli pretrain|transfer` runs, resumes, and leaves a model one process loads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from anchor_embed.model.store import load_model

DETERMINISTIC = {"d_model": 32, "out_dim": 16, "layers": 1, "heads": 2, "dropout": 0.0, "noise": 0.0,
                 "feature_dropout": 0.0, "batch_size": 16, "device": "cpu"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_step(cache_dir: str, queue: int, dist) -> tuple[float, dict]:
    """Loss and gradients of the first pretraining step (the global batch of step 0, epoch 0)."""
    from anchor_embed.features.cache import open_cache
    from anchor_embed.training.config import PretrainConfig
    from anchor_embed.training.fit import _attach
    from anchor_embed.training.pretrain import PretrainTask

    cfg = PretrainConfig(**DETERMINISTIC, queue_size=queue, val_frac=0.0)
    task = PretrainTask(open_cache(cache_dir), cfg)
    _attach(task, cfg, dist)
    task.start_epoch(0)
    loss, _ = task.loss(0, 0, np.random.default_rng([cfg.seed, 0, 0]))
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in task.model.named_parameters() if p.grad is not None}


def _rank(rank: int, world: int, port: int, cache_dir: str, queue: int, out: str) -> None:
    import torch.distributed as td

    from anchor_embed.training.distributed import Dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    td.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    loss, grads = _one_step(cache_dir, queue, Dist(rank, world, 0))
    if rank == 0:
        torch.save({"loss": loss, "grads": grads}, out)
    td.barrier()        # both ranks tear gloo down together: a rank leaving alone aborted its peer once in CI
    td.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("queue", [0, 32])
def test_two_processes_equal_one_on_the_concatenated_batch(sample_cache, tmp_path, queue):
    from anchor_embed.training.distributed import Dist

    out = tmp_path / "two.pt"
    mp.spawn(_rank, args=(2, _port(), str(sample_cache), queue, str(out)), nprocs=2, join=True)
    two = torch.load(out)
    loss, grads = _one_step(str(sample_cache), queue, Dist())
    assert abs(two["loss"] - loss) < 1e-5
    assert set(two["grads"]) == set(grads)
    for name, g in grads.items():
        assert torch.allclose(two["grads"][name], g, atol=1e-5), name


def _tail(p: subprocess.CompletedProcess) -> str:
    """The start and end of what the ranks and torchrun said: a rank's own error comes first, torchrun's last."""
    return p.stderr if len(p.stderr) < 6000 else p.stderr[:3000] + "\n...\n" + p.stderr[-3000:]


def _torchrun(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "anchor_embed.cli", "--quiet", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_torchrun_pretrain_and_transfer_resume_and_load_in_one_process(sample, sample_cache, tmp_path):
    tiny = ["--batch-size", "16", "--d-model", "32", "--out-dim", "16", "--layers", "1", "--device", "cpu"]
    run = tmp_path / "pre"
    p = _torchrun("pretrain", "--features", sample_cache, "--out", run, "--epochs", "1", *tiny)
    assert p.returncode == 0, _tail(p)
    p = _torchrun("pretrain", "--features", sample_cache, "--out", run, "--epochs", "2", "--resume", *tiny)
    assert p.returncode == 0, _tail(p)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and "validation" in rows[0]
    assert json.loads((run / "run.json").read_text())["processes"] == 2 and (run / "outcome.json").is_file()
    model, _ = load_model(run)                                          # one process loads it
    assert model.cfg.out_dim == 16
    taught = tmp_path / "tr"
    p = _torchrun("transfer", "--pretrained", run, "--id-emb", sample / "ids.npy", "--out", taught, "--epochs", "2",
                  "--batch-size", "16", "--holdout-frac", "0.2", "--device", "cpu")
    assert p.returncode == 0, _tail(p)
    assert len((taught / "metrics.jsonl").read_text().splitlines()) == 2 and load_model(taught)[0] is not None
    assert not list(Path(taught).glob(".lock"))
    soup = tmp_path / "soup"        # --members: every process trains each member, rank 0 alone averages them
    p = _torchrun("transfer", "--pretrained", run, "--id-emb", sample / "ids.npy", "--out", soup, "--epochs", "1",
                  "--batch-size", "16", "--holdout-frac", "0.2", "--device", "cpu", "--members", "2")
    assert p.returncode == 0, _tail(p)
    record = json.loads((soup / "soup.json").read_text())
    assert [m["member"] for m in record["members"]] == [0, 1] and record["validation"] is not None
    assert load_model(soup)[0] is not None and not (soup / "members" / "soup").exists()


@pytest.mark.slow
def test_torchrun_on_data_without_frames(sample, tmp_path):
    """A dataset with no frames (twitch-like: text and tags) leaves the frame projection without gradients;
    DDP must expect that rather than fail at the second step."""
    from anchor_embed.features.build import build_features

    rows = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()]
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({**r, "frames": []}) + "\n" for r in rows))
    build_features(plain, tmp_path / "cache", media_root=sample)
    p = _torchrun("pretrain", "--features", tmp_path / "cache", "--out", tmp_path / "pre", "--epochs", "2",
                  "--batch-size", "16", "--d-model", "32", "--out-dim", "16", "--layers", "1", "--device", "cpu")
    assert p.returncode == 0, _tail(p)
    assert len((tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()) == 2
