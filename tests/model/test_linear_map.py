"""The map of a transferred model: its input is the pooled features evaluate's ridge reads, its fit is
scikit-learn's RidgeCV (linear), the kernel ridge reference's (kernel) or the linear map plus kernel ridge of its
residuals (residual, its alpha by validation), and the blended output's cosine is
the weighted sum the docstring promises."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeCV

from anchor_embed.evaluation.neighbour_recall import NeighbourRecall, monitor_figure
from anchor_embed.evaluation.references import (
    RESIDUAL_ALPHA,
    RESIDUAL_ALPHAS,
    RIDGE_ALPHAS,
    fit_kernel_ridge,
    fit_residual_kernel_ridge,
    fit_ridge,
)
from anchor_embed.features.cache import open_cache
from anchor_embed.features.pooled import pooled_block
from anchor_embed.model.batcher import Batcher, embed_all
from anchor_embed.model.store import load_model, save_model
from anchor_embed.training.card import write_card
from anchor_embed.transfer.linear_fit import MAP_KINDS, fit_maps, pooled_features, skip_tags
from anchor_embed.vectorspace import normalise_rows


@pytest.fixture()
def fitted(sample_cache, pretrained):
    """The shared pretrained model with a linear map to random 8-d targets fitted on the first 50 streamers."""
    cache = open_cache(sample_cache)
    model, _ = load_model(pretrained)
    batcher = Batcher.for_model(model, cache)
    targets = np.random.default_rng(0).standard_normal((cache.n, 8)).astype(np.float32)
    rows = np.arange(50)
    linear, info = fit_maps(model, batcher, targets, rows, ("linear",))["linear"]
    model.set_linear_map(linear, 0.4)
    return cache, model, batcher, targets, rows, info


def test_pooled_inputs_are_the_reference_features(fitted):
    """Text, frame and tag-name means equal `pooled_block` (streamers within the atom limits); the rest is the
    multi-hot of the model's tag vocabulary."""
    cache, model, batcher, *_ = fitted
    x = pooled_features(batcher, np.arange(cache.n), skip_tags(batcher, model.cfg.tag_vocab))
    t, f = cache.dim("text"), cache.dim("frame")
    lim = batcher.limits
    within = [i for i in range(cache.n) if all(len(cache.rows(k, i)) <= lim[k] for k in lim)]
    assert len(within) > cache.n // 2
    for block, kind in ((x[:, :t], "text"), (x[:, t:t + f], "frame"), (x[:, t + f:2 * t + f], "tag")):
        np.testing.assert_allclose(block[within], pooled_block(cache, kind)[within], atol=1e-5)
    hot = x[:, 2 * t + f:]
    vocab = {name: j for j, name in enumerate(model.cfg.tag_vocab)}
    for i in within:
        want = np.zeros(len(vocab), np.float32)
        for r in cache.rows("tag", i):
            if cache.tag_names[r] in vocab:
                want[vocab[cache.tag_names[r]]] = 1
        np.testing.assert_array_equal(hot[i], want)


def test_fit_is_ridgecv_and_the_blend_is_the_weighted_cosine(fitted):
    """The map predicts what scikit-learn's RidgeCV predicts (unit rows); the output cosine, re-derived in
    float64, is 0.6 x the fusion cosine + 0.4 x the map's cosine."""
    cache, model, batcher, targets, rows, info = fitted
    x = pooled_features(batcher, np.arange(cache.n), model.linear_map.skip_tags)
    ref = RidgeCV(alphas=RIDGE_ALPHAS).fit(x[rows], normalise_rows(targets[rows]))
    assert info["alpha"] == ref.alpha_ and info["inputs"] == x.shape[1]
    out = embed_all(model, batcher)
    assert out.shape == (cache.n, model.cfg.out_dim + 8) and model.dim == out.shape[1]
    lin = normalise_rows(ref.predict(x))
    np.testing.assert_allclose(out[:, model.cfg.out_dim:] / np.sqrt(0.4), lin, atol=1e-4)
    with torch.no_grad():
        fusion = model(batcher.make(list(range(cache.n))), linear=False).double().numpy()
    o = out.astype(np.float64)
    np.testing.assert_allclose(o @ o.T, 0.6 * fusion @ fusion.T + 0.4 * lin @ lin.T, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(o, axis=1), 1, atol=1e-5)


def test_map_saved_and_loaded_and_removed(fitted, tmp_path):
    """A model with its map round-trips through save/load; share 0 removes the map again."""
    cache, model, batcher, targets, rows, _ = fitted
    save_model(tmp_path, model)
    back, raw = load_model(tmp_path)
    assert raw["linear_dim"] == 8 and raw["linear_share"] == 0.4
    np.testing.assert_allclose(embed_all(back, batcher), embed_all(model, batcher), atol=1e-6)
    back.set_linear_map(None, 0.0)                      # what a run with share 0 does to a model with a map
    assert back.linear_map is None and back.dim == back.cfg.out_dim and back.cfg.linear_dim == 0
    assert embed_all(back, batcher).shape == (cache.n, back.cfg.out_dim)


def test_kernel_map_is_the_kernel_ridge_reference_in_torch(fitted, tmp_path):
    """The kernel map's output (torch, float32) is the unit prediction of `fit_kernel_ridge` (numpy, float64) on
    the same pooled inputs; it round-trips through save/load with its landmarks, and the card names it."""
    cache, model, batcher, targets, rows, _ = fitted
    kernel, info = fit_maps(model, batcher, targets, rows, ("kernel",))["kernel"]
    model.set_linear_map(kernel, 0.5)
    assert info["landmarks"] == len(rows) and info["gamma"] == 1.0
    assert model.linear_map.kind == "kernel" and model.cfg.map_landmarks == len(rows)
    x = pooled_features(batcher, np.arange(cache.n), model.linear_map.skip_tags)
    ref = fit_kernel_ridge(x[rows], targets[rows])
    assert info["alpha"] == ref.alpha
    out = embed_all(model, batcher)
    np.testing.assert_allclose(out[:, model.cfg.out_dim:] / np.sqrt(0.5), normalise_rows(ref.predict(x)),
                               atol=1e-4)
    save_model(tmp_path, model)
    back, raw = load_model(tmp_path)
    assert raw["map_landmarks"] == len(rows) and raw["map_gamma"] == 1.0 and back.linear_map.kind == "kernel"
    np.testing.assert_allclose(embed_all(back, batcher), out, atol=1e-6)
    assert "kernel ridge map (RBF kernel against 50 training streamers)" in write_card(tmp_path).read_text()
    # the same fits as `fit_maps` makes for a run; installing the linear one after the kernel one leaves no
    # landmark behind
    maps = fit_maps(model, batcher, targets, rows, MAP_KINDS)
    assert [m.kind for m, _ in maps.values()] == ["kernel", "linear", "residual"]
    model.set_linear_map(maps["linear"][0], 0.5)
    assert model.cfg.map_landmarks == 0 and "linear_map.landmarks" not in model.state_dict()
    with pytest.raises(ValueError, match="map kind 'rbf'"):
        fit_maps(model, batcher, targets, rows, ("rbf",))


def test_residual_map_is_the_reference_in_torch_with_its_alpha_chosen_by_validation(fitted, tmp_path):
    """The residual map's output (torch, float32) is the unit prediction of `fit_residual_kernel_ridge` (numpy,
    float64) at the alpha whose predictions alone score best on the validation (every alpha's figure recorded,
    re-scored here); RESIDUAL_ALPHA without a validation; it round-trips through save/load and the card names
    it; installing a plain map after it leaves neither its landmarks nor its linear part behind."""
    cache, model, batcher, targets, rows, _ = fitted
    val = np.arange(50, 70)
    validation = NeighbourRecall(targets, np.arange(70), val)
    residual, info = fit_maps(model, batcher, targets, rows, ("residual",), validation=validation,
                              monitor="mean_recall_at_10")["residual"]
    x = pooled_features(batcher, np.arange(cache.n), skip_tags(batcher, model.cfg.tag_vocab))
    fits = fit_residual_kernel_ridge(x[rows], targets[rows], fit_ridge(x[rows], targets[rows]))
    scores = [monitor_figure(f.predict(x[:70]), validation, "mean_recall_at_10") for f in fits]
    assert info["alphas"] == {f"{a:.4g}": pytest.approx(v, abs=1e-5) for a, v in zip(RESIDUAL_ALPHAS, scores,
                                                                                       strict=True)}
    assert info["alpha"] == RESIDUAL_ALPHAS[int(np.argmax(scores))] and info["alpha_by"].startswith("validation")
    assert info["landmarks"] == len(rows) and info["linear_alpha"] in RIDGE_ALPHAS
    model.set_linear_map(residual, 0.5)
    assert model.linear_map.kind == "residual" and model.cfg.map_mean and model.cfg.map_landmarks == len(rows)
    out = embed_all(model, batcher)
    want = fits[int(np.argmax(scores))].predict(x)
    np.testing.assert_allclose(out[:, model.cfg.out_dim:] / np.sqrt(0.5), normalise_rows(want), atol=1e-4)
    save_model(tmp_path, model)
    back, raw = load_model(tmp_path)
    assert raw["map_mean"] is True and back.linear_map.kind == "residual"
    np.testing.assert_allclose(embed_all(back, batcher), out, atol=1e-6)
    assert "residual map (a linear map plus kernel ridge of its residuals, RBF kernel against 50 training " \
        "streamers)" in write_card(tmp_path).read_text()
    # beside a trained model (transfer's final_map): the alpha whose map, blended with the given unit fusion
    # vectors at the share, scores best; re-scored here
    fusion = normalise_rows(np.random.default_rng(3).normal(size=(70, model.cfg.out_dim)))
    _, blended = fit_maps(model, batcher, targets, rows, ("residual",), validation=validation,
                          monitor="mean_recall_at_10", blend=(fusion, 0.3))["residual"]
    scores = [monitor_figure(np.hstack([fusion * np.sqrt(0.7), normalise_rows(f.predict(x[:70])) * np.sqrt(0.3)]),
                             validation, "mean_recall_at_10") for f in fits]
    assert blended["alphas"] == {f"{a:.4g}": pytest.approx(v, abs=1e-5) for a, v in zip(RESIDUAL_ALPHAS, scores,
                                                                                          strict=True)}
    assert blended["alpha"] == RESIDUAL_ALPHAS[int(np.argmax(scores))]
    assert blended["alpha_by"] == "validation mean_recall_at_10 of the blend"
    plain = fit_maps(model, batcher, targets, rows, ("residual",))["residual"]
    assert plain[1]["alpha"] == RESIDUAL_ALPHA and plain[1]["alpha_by"] == "default"
    model.set_linear_map(fit_maps(model, batcher, targets, rows, ("kernel",))["kernel"][0], 0.5)
    assert not model.cfg.map_mean and "linear_map.mean_weight" not in model.state_dict()
    with pytest.raises(ValueError, match="needs landmarks"):
        type(residual)(4, 2, 3, mean=True)


def test_a_model_without_frames_and_its_map_ignore_a_caches_frames(sample_cache, pretrained):
    """A model trained without frames (image_dim 0) reads a cache with frames: the batcher feeds it none, its
    kernel map's input has no frame block, and each streamer's vector is the one it gets with its frames left
    out."""
    from dataclasses import replace

    from anchor_embed.model.fusion import FusionModel

    cache = open_cache(sample_cache)
    torch.manual_seed(0)
    model = FusionModel(replace(load_model(pretrained)[0].cfg, image_dim=0)).eval()
    batcher = Batcher.for_model(model, cache)
    assert cache.dim("frame") and batcher.limits["frame"] == 0
    targets = np.random.default_rng(1).standard_normal((cache.n, 8)).astype(np.float32)
    kernel, info = fit_maps(model, batcher, targets, np.arange(40), ("kernel",))["kernel"]
    assert info["inputs"] == 2 * cache.dim("text") + len(model.cfg.tag_vocab)
    model.set_linear_map(kernel, 0.5)
    got = embed_all(model, batcher)
    plain = Batcher(cache, model.cfg.tag_vocab, model.cfg.max_texts, model.cfg.max_frames, model.cfg.max_tags)
    plain.dims["frame"] = 0
    rows = list(range(cache.n))
    with torch.inference_mode():
        want = model(plain.make(rows, [[a for a in plain.all_atoms(i) if a[0] != "frame"] for i in rows])).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
