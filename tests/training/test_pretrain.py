"""Pretraining through the one training loop: it learns its view task, resumes exactly, refuses mixed runs."""

import json

import numpy as np
import pytest
import torch

import anchor_embed.training.pretrain as pretrain_mod
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.features.cache import open_cache
from anchor_embed.model.batcher import Batcher, embed_all
from anchor_embed.model.store import load_model
from anchor_embed.training.pretrain import pretrain
from tests.conftest import run_cli

SMALL = {"epochs": 3, "batch_size": 16, "d_model": 32, "out_dim": 16, "layers": 1, "heads": 2}


def test_resume_after_kill_equals_uninterrupted(sample_cache, tmp_path, monkeypatch):
    pretrain(sample_cache, tmp_path / "full", **SMALL, queue_size=32)
    real, calls = pretrain_mod.info_nce, {"n": 0}

    def killed(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2 * 4 + 3:   # mid-epoch 2 (4 steps an epoch, two calls a step with a queue)
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(pretrain_mod, "info_nce", killed)
    with pytest.raises(KeyboardInterrupt):
        pretrain(sample_cache, tmp_path / "cut", **SMALL, queue_size=32)
    monkeypatch.setattr(pretrain_mod, "info_nce", real)
    assert json.loads((tmp_path / "cut" / "checkpoints" / "latest.json").read_text())["epoch"] == 1
    with pytest.raises(AnchorEmbedError, match="pass --resume"):
        pretrain(sample_cache, tmp_path / "cut", **SMALL, queue_size=32)
    pretrain(sample_cache, tmp_path / "cut", resume=True, **SMALL, queue_size=32)
    a, _ = load_model(tmp_path / "full")
    b, _ = load_model(tmp_path / "cut")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(x, y, atol=1e-6), name
    losses = [[json.loads(x)["loss"] for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
              for r in ("full", "cut")]
    assert losses[0] == losses[1] and len(losses[0]) == 3
    with pytest.raises(AnchorEmbedError, match=r"differ from the saved run \(lr\)"):
        pretrain(sample_cache, tmp_path / "cut", resume=True, **{**SMALL, "lr": 0.5}, queue_size=32)
    pretrain(sample_cache, tmp_path / "cut", resume=True, **{**SMALL, "epochs": 4}, queue_size=32)  # a longer budget   # a longer budget is fine
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 4


def test_deterministic_for_a_seed(sample_cache, tmp_path):
    h1 = pretrain(sample_cache, tmp_path / "a", **{**SMALL, "epochs": 1})
    h2 = pretrain(sample_cache, tmp_path / "b", **{**SMALL, "epochs": 1})
    h3 = pretrain(sample_cache, tmp_path / "c", **{**SMALL, "epochs": 1, "seed": 1})
    assert h1[0]["loss"] == h2[0]["loss"] != h3[0]["loss"]


def test_cli_pretrain_learns_on_sample(sample_cache, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"d_model": 64, "out_dim": 32, "layers": 1, "max_overlap": 1.0}))
    code = run_cli("pretrain", "--features", sample_cache, "--out", tmp_path / "run", "--config", cfg,
                   "--epochs", "12", "--batch-size", "32", "--lr", "0.0003")
    assert code == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and set(rows[0]) >= {"loss", "view_top1", "alignment", "uniformity"}
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["view_top1"] > rows[0]["view_top1"]
    assert rows[-1]["view_top1"] > 3 / 32          # well above chance (1 in a batch of 32)
    assert rows[-1]["uniformity"] < -1.0           # not collapsed
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["epochs"] == 12 and saved["d_model"] == 64
    model, _ = load_model(tmp_path / "run")
    cache = open_cache(sample_cache)
    vecs = embed_all(model, Batcher.for_model(model, cache))
    assert vecs.shape == (cache.n, 32) and np.isfinite(vecs).all()


def test_bf16_on_cpu_autocasts_the_forward_and_keeps_losses_fp32(sample_cache, tmp_path):
    from anchor_embed.training.device import autocast

    pretrain(sample_cache, tmp_path / "fp32", **SMALL, precision="fp32")
    model, _ = load_model(tmp_path / "fp32")
    batch = Batcher.for_model(model, open_cache(sample_cache)).make(list(range(8)))
    model.eval()
    with torch.no_grad():
        plain = model(batch)
        with autocast(torch.device("cpu"), "bf16"):
            assert model.head(torch.zeros(1, 32)).dtype == torch.bfloat16   # the matmuls run in bf16
            half = model(batch)
    assert half.dtype == torch.float32                                  # what the losses read
    assert torch.allclose(half.norm(dim=1), torch.ones(8), atol=1e-5)
    assert (plain * half).sum(1).min() > 0.99                            # the same vectors, to bf16's precision
    rows = pretrain(sample_cache, tmp_path / "bf16", **SMALL, precision="bf16")
    assert all(np.isfinite(r["loss"]) for r in rows)
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["precision"] == "bf16"


def test_precision_auto_is_bf16_where_the_cpu_has_it_and_each_epoch_records_it(sample_cache, tmp_path):
    """The default `--precision auto` is bf16 on a CPU whose flags (Linux's /proc/cpuinfo) list AVX512-BF16 or
    AMX-BF16, fp32 on other CPUs and on MPS; metrics.jsonl says per epoch what it meant."""
    from pathlib import Path

    from anchor_embed.training.device import resolve_precision

    flags = {f for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
             for f in line.split(":", 1)[1].split()} if Path("/proc/cpuinfo").is_file() else set()
    want = "bf16" if flags & {"avx512_bf16", "amx_bf16"} else "fp32"
    assert resolve_precision(torch.device("cpu"), "auto") == want
    assert resolve_precision(torch.device("mps"), "auto") == "fp32"
    assert resolve_precision(torch.device("cpu"), "fp32") == "fp32"
    assert resolve_precision(torch.device("cpu"), "bf16") == "bf16"
    assert run_cli("pretrain", "--features", sample_cache, "--out", tmp_path / "run", "--epochs", "2",
                   "--batch-size", "16", "--d-model", "32", "--out-dim", "16", "--layers", "1", "--heads", "2") == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "auto"
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["precision"] for r in rows] == [want, want]


def test_input_limits_above_the_caches_caps_are_lowered_and_said(sample_cache, tmp_path, capsys):
    """`--max-texts 64` on a cache cut at 16 texts per streamer recorded 64 in the model config, which reads 16."""
    meta = json.loads((sample_cache / "meta.json").read_text())
    assert run_cli("pretrain", "--features", sample_cache, "--out", tmp_path / "p", "--epochs", "1", "--batch-size",
                   "16", "--d-model", "32", "--out-dim", "16", "--layers", "1", "--max-texts", "64",
                   "--max-tags", "4") == 0
    model_cfg = json.loads((tmp_path / "p" / "model_config.json").read_text())
    assert (model_cfg["max_texts"], model_cfg["max_tags"]) == (meta["max_texts"], 4)    # lowered; one below kept
    err = capsys.readouterr().err
    assert f"--max-texts 64, but the feature cache holds at most {meta['max_texts']}" in err and "--max-tags" not in err
