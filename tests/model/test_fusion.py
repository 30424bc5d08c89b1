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
    assert got.pop("run") == str(run.resolve()) and got == want

    taught = tmp_path / "taught"
    assert run_cli("transfer", "--pretrained", run, "--id-emb", sample / "ids.npy", "--out", taught,
                   "--epochs", "1", "--batch-size", "16") == 0
    assert json.loads((taught / "model_config.json").read_text())["max_texts"] == 2


def _padded_reference(enc, x, valid):
    return enc(x, src_key_padding_mask=~valid)[:, 0]


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_packed_encoder_equals_the_padded_torch_encoder(layers):
    """encode_cls (real tokens only, last layer for [CLS] only) = nn.TransformerEncoder's position 0: outputs and
    gradients, on ragged rows, a row with [CLS] alone and a row with no padding."""
    from anchor_embed.model.packed import encode_cls

    torch.manual_seed(layers)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True, norm_first=True)
    enc = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).eval()
    x = torch.randn(6, 7, 32, requires_grad=True)
    valid = torch.rand(6, 7) > 0.5
    valid[:, 0] = True
    valid[2, 1:] = False
    valid[4] = True
    want, got = _padded_reference(enc, x, valid), encode_cls(enc, x, valid)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    params = [x, *enc.parameters()]
    g_want = torch.autograd.grad((want * torch.arange(32.0)).sum(), params)
    g_got = torch.autograd.grad((got * torch.arange(32.0)).sum(), params)
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    enc.train()                                   # dropout on: still [CLS]-shaped and finite
    assert encode_cls(enc, x, valid).shape == (6, 32)


def _make_by_loop(batcher, streamers, atoms):
    """The batcher's contract written per streamer: chosen atoms in position order, padded to the batch max."""
    from anchor_embed.features.cache import FIELD_PROFILE

    cache, out = batcher.cache, {}
    for kind in ("text", "frame", "tag"):
        per = []
        for j, i in enumerate(streamers):
            sel = atoms[j] if atoms is not None else batcher.all_atoms(i)
            pos = sorted(p for k, p in sel if k == kind)[:batcher.limits[kind]]
            per.append((cache.rows(kind, i)[pos] if pos else np.zeros(0, np.int64), pos, i))
        length = max(len(r) for r, _, _ in per)
        feats = np.zeros((len(streamers), length, batcher.dims[kind]), np.float32)
        mask = np.zeros((len(streamers), length), bool)
        extra = np.zeros((len(streamers), length), np.int64)
        for j, (rows, pos, i) in enumerate(per):
            for s, (r, p) in enumerate(zip(rows, pos, strict=True)):
                feats[j, s] = cache.feats[kind][r]
                mask[j, s] = True
                if kind == "text":
                    extra[j, s] = 1 + min(int(cache.text_field[cache.ptr["text"][i] + p]), FIELD_PROFILE + 1)
                elif kind == "tag":
                    extra[j, s] = batcher.tag_id_of_row[r]
        out[kind] = (feats, mask, extra)
    return out


def test_batcher_gathers_the_whole_batch_as_the_per_streamer_loop_does(sample_cache):
    cache = open_cache(sample_cache)
    model = build_model(cache, PretrainConfig(d_model=32, out_dim=16, layers=1, heads=2, max_texts=2, max_tags=3))
    batcher = Batcher.for_model(model, cache)
    rng = np.random.default_rng(0)
    streamers = rng.choice(cache.n, 40, replace=False).tolist() + [0, 0]   # a streamer twice in one batch
    subsets = [[a for a in batcher.all_atoms(i) if rng.random() < 0.5][::-1] for i in streamers]  # any order
    for atoms in (None, subsets, [[] for _ in streamers]):
        got = batcher.make(streamers, atoms)
        want = _make_by_loop(batcher, streamers, atoms)
        for kind, (f, m, e) in want.items():
            np.testing.assert_array_equal(getattr(got, kind).numpy(), f)
            np.testing.assert_array_equal(getattr(got, f"{kind}_mask").numpy(), m)
            if kind != "frame":
                np.testing.assert_array_equal(getattr(got, "text_type" if kind == "text" else "tag_id").numpy(), e)
    assert batcher.make([]).text.shape[0] == 0


def test_batcher_noise_and_feature_dropout_touch_real_atoms_only(sample_cache):
    cache = open_cache(sample_cache)
    model = build_model(cache, PretrainConfig(d_model=32, out_dim=16, layers=1, heads=2))
    batcher = Batcher.for_model(model, cache)
    rows = list(range(cache.n))
    clean = batcher.make(rows)
    noisy = batcher.make(rows, noise=0.5, rng=np.random.default_rng(0))
    diff = (noisy.tag - clean.tag).numpy()[clean.tag_mask.numpy()]
    assert abs(diff.std() - 0.5) < 0.02 and abs(diff.mean()) < 0.02          # N(0, 0.5) on real atoms
    assert (noisy.tag.numpy()[~clean.tag_mask.numpy()] == 0).all()            # padding untouched
    dropped = batcher.make(rows, feature_dropout=0.25, rng=np.random.default_rng(1))
    real = clean.text.numpy()[clean.text_mask.numpy()]
    kept = dropped.text.numpy()[clean.text_mask.numpy()]
    zeroed = (kept == 0) & (real != 0)
    assert abs(zeroed.mean() - 0.25) < 0.02
    np.testing.assert_allclose(kept[~zeroed], real[~zeroed] / 0.75, rtol=1e-5)
    assert (dropped.text.numpy()[~clean.text_mask.numpy()] == 0).all()


def test_padding_is_never_read(sample_cache):
    """The projections run on real atoms only: whatever the padded slots hold, every vector is the same."""
    cache = open_cache(sample_cache)
    model = build_model(cache, PretrainConfig(d_model=32, out_dim=16, layers=2, heads=2)).eval()
    batcher = Batcher.for_model(model, cache)
    batch = batcher.make(list(range(cache.n)))
    dirty = batch[slice(None)]
    for kind in ("text", "frame", "tag"):
        feats, mask = getattr(batch, kind).clone(), getattr(batch, f"{kind}_mask")
        feats[~mask] = 1e3
        setattr(dirty, kind, feats)
    with torch.no_grad():
        torch.testing.assert_close(model(dirty), model(batch), atol=0, rtol=0)


def test_both_views_in_one_batch_equal_two_batches(sample_cache):
    """view_batch embeds both views in one pass: the same vectors as one batch per view (eval mode), and
    view_rows picks a rank's streamers in both halves."""
    from anchor_embed.model.views import ViewConfig
    from anchor_embed.training.pretrain import two_views, view_batch, view_rows

    cache = open_cache(sample_cache)
    model = build_model(cache, PretrainConfig(d_model=32, out_dim=16, layers=2, heads=2)).eval()
    batcher = Batcher.for_model(model, cache)
    ids = list(range(12))
    batch = view_batch(batcher, ids, ViewConfig(), np.random.default_rng(0), 0.0, 0.0)
    from anchor_embed.model.views import split_views
    rng = np.random.default_rng(0)
    pairs = [split_views(batcher.all_atoms(i), ViewConfig(), rng) for i in ids]
    with torch.no_grad():
        za, zb = two_views(model(batch))
        torch.testing.assert_close(za, model(batcher.make(ids, [a for a, _ in pairs])), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(zb, model(batcher.make(ids, [b for _, b in pairs])), atol=1e-6, rtol=1e-5)
        ra, rb = two_views(model(batch[view_rows(12, slice(6, 12))]))
    torch.testing.assert_close(ra, za[6:], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(rb, zb[6:], atol=1e-6, rtol=1e-5)
    assert view_rows(12, slice(None)) == slice(None) and view_rows(12, slice(0, 12)) == slice(None)
