"""The fusion model and its batcher: every streamer gets a unit vector; consumers feed what training fed."""

import json

import numpy as np
import pytest
import torch

from anchor_embed.features.cache import open_cache
from anchor_embed.model.batcher import Batcher, embed_all
from anchor_embed.model.store import load_model
from anchor_embed.training.pretrain import PretrainConfig, build_model
from tests.conftest import SMALL, run_cli


def test_missing_modalities_still_give_vectors(sample_cache):
    cache = open_cache(sample_cache)
    model = build_model(cache, PretrainConfig(d_model=32, out_dim=16, layers=1, heads=2))
    batcher = Batcher.for_model(model, cache)
    model.eval()
    with torch.no_grad():
        with_frame = next(i for i in range(cache.n) if len(cache.rows("frame", i)))
        with_tag = next(i for i in range(cache.n) if len(cache.rows("tag", i)))
        z = model(batcher.make([0, with_tag, with_frame], atoms=[[], [("tag", 0)], [("frame", 0)]]))
    assert torch.isfinite(z).all() and torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)


@pytest.mark.slow
def test_input_limits_saved_and_honoured_by_every_consumer(sample, sample_cache, tmp_path):
    """Pretrained with --max-texts 2: embed, evaluate and transfer feed the model at most 2 texts too."""
    from anchor_embed.evaluation.metrics import holdout_split, score

    run = tmp_path / "run"
    assert run_cli("pretrain", "--features", sample_cache, "--out", run, *SMALL, "--max-texts", "2") == 0
    model, raw = load_model(run)
    assert raw["max_texts"] == 2 and model.cfg.max_texts == 2
    cache = open_cache(sample_cache)
    assert max(len(cache.rows("text", i)) for i in range(cache.n)) > 2      # the limit matters on this sample
    seen = embed_all(model, Batcher(cache, model.cfg.tag_vocab, max_texts=2))   # what training fed it
    unlimited = embed_all(model, Batcher(cache, model.cfg.tag_vocab))
    assert not np.allclose(seen, unlimited, atol=1e-3)

    vec = tmp_path / "vec"
    assert run_cli("embed", "--model", run, "--streamers", sample / "streamers.jsonl", "--out", vec) == 0
    keys = (vec / "keys.txt").read_text().splitlines()
    assert keys == cache.keys
    np.testing.assert_allclose(np.load(vec / "vectors.npy"), seen, atol=1e-5)

    ev = tmp_path / "ev"
    assert run_cli("evaluate", "--features", sample_cache, "--id-emb", sample / "ids.npy", "--model", run,
                   "--no-frozen", "--out", ev) == 0
    got = json.loads((ev / "evaluation.json").read_text())["rows"][0]
    id_keys = (sample / "ids.keys.txt").read_text().split()
    pos = cache.key_index()
    rows = np.array([pos[k] for k in id_keys])
    held = holdout_split(id_keys, 0.2, 0)
    queries = np.array([i for i, k in enumerate(id_keys) if k in held])
    want = score({"run": seen[rows]}, np.load(sample / "ids.npy"), queries)[0]
    assert got == want

    taught = tmp_path / "taught"
    assert run_cli("transfer", "--pretrained", run, "--id-emb", sample / "ids.npy", "--out", taught,
                   "--epochs", "1", "--batch-size", "16") == 0
    assert json.loads((taught / "model_config.json").read_text())["max_texts"] == 2
