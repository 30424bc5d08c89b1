"""adapt: a patch that is small, leaves the base as it is, rebuilds the adapted model, and is served by embed."""

import copy
import csv
import json
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from anchor_embed.features.cache import open_cache
from anchor_embed.model.adapter import add_patch, target_weights
from anchor_embed.model.batcher import Batcher, embed_all
from anchor_embed.model.store import load_model, model_hash
from anchor_embed.training.adapt import load_adapted
from tests.conftest import run_cli


def test_patch_math_and_the_fused_fast_path(sample_cache, pretrained):
    """The patched weight is W + (alpha/r) B A, and inference (PyTorch's fused encoder path) reads it."""
    model, _ = load_model(pretrained)
    plain = copy.deepcopy(model)
    deltas = add_patch(model, rank=2, alpha=3.0)
    torch.manual_seed(0)
    with torch.no_grad():
        for d in deltas.values():
            d.B.normal_(std=0.05)
    for (module, name, path), (pm, pn, _) in zip(target_weights(model), target_weights(plain), strict=True):
        d = deltas[path]
        want = getattr(pm, pn) + 1.5 * (d.B @ d.A)
        assert torch.allclose(getattr(module, name), want, atol=1e-6), path
        with torch.no_grad():
            getattr(pm, pn).copy_(want)                     # a plain model with the merged weights
    cache = open_cache(sample_cache)
    got = embed_all(model, Batcher.for_model(model, cache))             # inference mode: the fast path
    np.testing.assert_allclose(got, embed_all(plain, Batcher.for_model(plain, cache)), atol=1e-5)
    assert all(not p.requires_grad for n, p in model.named_parameters() if "parametrizations" not in n
               or n.endswith("original"))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["adapter", "full", "head"])
def test_cli_adapt_modes(sample, sample_cache, pretrained, labels, tmp_path, mode):
    before = load_file(str(pretrained / "model.safetensors"))
    out = tmp_path / mode
    assert run_cli("adapt", "--pretrained", pretrained, "--labels", labels, "--target", "kind", "--out", out,
                   "--mode", mode, "--epochs", "4", "--batch-size", "16", "--holdout-frac", "0.2", "--rank", "2") == 0
    info = json.loads((out / "adapter.json").read_text())
    assert info["mode"] == mode and info["test_metric"] == "macro_f1" and 0 <= info["test_score"] <= 1
    after = load_file(str(pretrained / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)            # the base is left as it is
    card = (out / "README.md").read_text()                                  # the card says what the run is
    assert f"`--mode {mode}` for the label `kind` (classes)" in card and f"Method: adapt --mode {mode}" in card
    assert f"test macro_f1 {info['test_score']}" in card and "self-supervised" not in card and "None" not in card
    if mode == "adapter":
        patch = load_file(str(out / "patch.safetensors"))
        assert all(k.endswith((".A", ".B")) for k in patch) and not (out / "model.safetensors").exists()
        assert info["trainable_share"] < 0.10 and info["patch_bytes"] < (pretrained / "model.safetensors").stat().st_size / 5
        # training may keep the warm start (a zero patch) on 75 streamers: give the saved patch weights of its
        # own, so the check below is that `embed --adapter` applies whatever patch the run holds
        gen = torch.Generator().manual_seed(0)
        save_file({k: v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in patch.items()},
                  str(out / "patch.safetensors"))
        adapted, _ = load_adapted(out)
        vec = tmp_path / "vec"
        assert run_cli("embed", "--model", pretrained, "--adapter", out, "--streamers", sample / "streamers.jsonl",
                       "--out", vec) == 0
        cache = open_cache(sample_cache)
        want = embed_all(adapted, Batcher.for_model(adapted, cache))
        np.testing.assert_allclose(np.load(vec / "vectors.npy"), want, atol=1e-5)
        base = embed_all(load_model(pretrained)[0], Batcher.for_model(adapted, cache))
        assert not np.allclose(want, base, atol=1e-4)                       # the patch changed the vectors
        # patched vectors are not the base's: they carry their own hash, which index build --model BASE refuses
        meta = json.loads((vec / "meta.json").read_text())
        assert meta["model_hash"] != model_hash(pretrained) and meta["adapter"] == str(out.resolve())
        assert run_cli("index", "build", vec, "--out", tmp_path / "idx", "--model", pretrained) == 2
        # the base is known by its weights: a copy elsewhere is the same base (it was refused by path)
        shutil.copytree(pretrained, tmp_path / "copy", ignore=shutil.ignore_patterns("checkpoints"))
        assert run_cli("embed", "--model", tmp_path / "copy", "--adapter", out, "--streamers",
                       sample / "streamers.jsonl", "--out", tmp_path / "vec2") == 0
        np.testing.assert_array_equal(np.load(tmp_path / "vec2" / "vectors.npy"), np.load(vec / "vectors.npy"))
    elif mode == "full":        # a full fine-tune was taken with any --model, built with that model's features
        other = tmp_path / "other"
        shutil.copytree(pretrained, other, ignore=shutil.ignore_patterns("checkpoints"))
        weights = load_file(str(other / "model.safetensors"))
        save_file({k: v + 0.01 for k, v in weights.items()}, str(other / "model.safetensors"))
        assert run_cli("embed", "--model", other, "--adapter", out, "--streamers", sample / "streamers.jsonl",
                       "--out", tmp_path / "vec3") == 2
        assert not (tmp_path / "vec3" / "vectors.npy").exists()
    elif mode == "head":
        assert info["trainable_params"] == 6 * 17                           # a 16-d vector -> 6 classes
    assert run_cli("adapt", "--pretrained", pretrained, "--labels", labels, "--target", "n_tags", "--kind",
                   "regress", "--out", tmp_path / "r", "--mode", mode, "--epochs", "2", "--batch-size", "16") == 0


@pytest.mark.parametrize("refit", [True, False])
@pytest.mark.parametrize("kind,target", [("classify", "kind"), ("regress", "n_tags"), ("classify", "two")])
def test_head_is_the_closed_form_fit_of_the_frozen_vectors(sample, sample_cache, pretrained, labels, tmp_path, kind,
                                                           target, refit):
    """`--mode head` saves a head whose outputs are scikit-learn's scaler + ridge / logistic model's at the
    regularisation validation chose (classes absent from the fitted share never win), fitted on the training and
    validation streamers (the default), or on the training ones alone with `--no-head-refit`."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    from anchor_embed.training.adapt import _splits, adapt

    if target == "two":   # two classes only: the binary logistic model as a two-row head
        path = tmp_path / "two.csv"
        rows = list(csv.DictReader(labels.open()))
        path.write_text("anchor_id,two\n" + "".join(f"{r['anchor_id']},{int(r['n_tags']) > 2}\n" for r in rows))
        labels = path
    out = tmp_path / "h"
    summary = adapt(pretrained, labels, out, target=target, kind=kind, mode="head", holdout_frac=0.2, seed=0,
                    head_refit=refit)
    info = json.loads((out / "outcome.json").read_text())
    assert info["head_refit"] is refit
    assert info["stopped_by"] == "closed form" and summary["trainable_params"] == load_model(pretrained)[0].dim * \
        (1 if kind == "regress" else len(summary["classes"])) + (1 if kind == "regress" else len(summary["classes"]))
    cache = open_cache(sample_cache)
    model, _ = load_model(pretrained)
    vec = embed_all(model, Batcher.for_model(model, cache))
    pos = cache.key_index()
    y_of = {r["anchor_id"]: r[target] for r in csv.DictReader(labels.open())}
    keys = sorted(k for k in y_of if k in pos)
    train, val, test = _splits(keys, 0.2, 0.15, 0)
    assert len(val) >= 2
    train = train + val if refit else train
    x_tr, x_te = vec[[pos[k] for k in train]], vec[[pos[k] for k in test]]
    scaler = StandardScaler().fit(x_tr)
    head = load_file(str(out / "head.safetensors"))
    got = x_te @ head["weight"].numpy().T + head["bias"].numpy()
    c = info["regularisation"]
    if kind == "regress":
        v = np.array([float(y_of[k]) for k in keys])
        y = (np.array([float(y_of[k]) for k in train]) - v.mean()) / v.std()
        want = Ridge(alpha=c).fit(scaler.transform(x_tr), y).predict(scaler.transform(x_te))
        np.testing.assert_allclose(got[:, 0], want, atol=1e-3)
    else:
        classes = summary["classes"]
        y = np.array([classes.index(y_of[k]) for k in train])
        m = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x_tr), y)
        np.testing.assert_array_equal(got.argmax(1), m.classes_[m.predict_proba(scaler.transform(x_te)).argmax(1)])


def test_adapter_and_full_start_from_the_closed_form_head(sample, pretrained, labels, tmp_path):
    """With a learning rate too small to move anything, one epoch of `adapter` or `full` keeps the head it
    started from: the closed-form head of the vectors as they are, which `--mode head` saves."""
    from anchor_embed.training.adapt import adapt

    common = {"target": "n_tags", "kind": "regress", "holdout_frac": 0.2, "seed": 0, "head_refit": False}
    adapt(pretrained, labels, tmp_path / "head", mode="head", **common)
    want = load_file(str(tmp_path / "head" / "head.safetensors"))
    for mode in ("adapter", "full"):
        adapt(pretrained, labels, tmp_path / mode, mode=mode, epochs=1, lr=1e-12, rank=2, **common)
        got = load_file(str(tmp_path / mode / "head.safetensors"))
        for k in want:
            torch.testing.assert_close(got[k], want[k], atol=1e-5, rtol=1e-4)


def test_training_that_does_not_beat_the_warm_start_keeps_it(sample, pretrained, labels, tmp_path, capsys):
    """The closed-form head is epoch 0 of the selection: a learning rate that wrecks every epoch leaves the run
    with the head `--mode head` saves (and, for `full`, the base model's weights), not the best wrecked epoch;
    that kept head is fitted again on the training and validation streamers, as `--mode head` fits it."""
    from anchor_embed.training.adapt import adapt

    common = {"target": "n_tags", "kind": "regress", "holdout_frac": 0.2, "seed": 0}
    adapt(pretrained, labels, tmp_path / "head", mode="head", **common)
    want = load_file(str(tmp_path / "head" / "head.safetensors"))
    head_figure = json.loads((tmp_path / "head" / "outcome.json").read_text())["best"]
    base = load_model(pretrained)[0].state_dict()
    for mode in ("adapter", "full"):
        capsys.readouterr()
        summary = adapt(pretrained, labels, tmp_path / mode, mode=mode, epochs=2, patience=5, lr=50.0, rank=2,
                        weight_decay=0.0, **common)
        said = " ".join(capsys.readouterr().err.split())    # the last line said only the parameters trained
        assert f"no epoch beat the closed-form head on validation, so the run is that head on the base's vectors: " \
               f"its {mode} weights are the starting ones" in said
        outcome = json.loads((tmp_path / mode / "outcome.json").read_text())
        rows = [json.loads(line) for line in (tmp_path / mode / "metrics.jsonl").read_text().splitlines()]
        assert outcome["best_epoch"] == 0 and outcome["epochs_run"] == 2
        assert not any(r["validation"]["score"] >= outcome["start_figure"] for r in rows)   # NaN counts as worse
        assert outcome["best"] == pytest.approx(head_figure, abs=1e-4)
        card = (tmp_path / mode / "README.md").read_text()
        assert "the model is the one training started from (epoch 0" in card and "(kept)" not in card
        assert outcome["head_refit"] is True and "fitted again on the training and validation streamers" in card
        got = load_file(str(tmp_path / mode / "head.safetensors"))
        for k in want:
            torch.testing.assert_close(got[k], want[k], atol=1e-5, rtol=1e-4)
        if mode == "full":
            for k, v in load_model(tmp_path / mode)[0].state_dict().items():
                torch.testing.assert_close(v, base[k])
        assert summary["test_score"] is not None


def test_without_a_validation_share_the_head_is_chosen_by_cross_validation(sample, sample_cache, pretrained, labels,
                                                                           tmp_path):
    """`--val-frac 0` leaves nothing to score the head's regularisation on: it is chosen by 5-fold CV on the
    training streamers, as scikit-learn's GridSearchCV chooses it (not the first of equal zeros)."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from anchor_embed.training.adapt import HEAD_ALPHAS, _splits, adapt

    adapt(pretrained, labels, tmp_path / "h", target="n_tags", kind="regress", mode="head", holdout_frac=0.2,
          val_frac=0.0, seed=0)
    info = json.loads((tmp_path / "h" / "outcome.json").read_text())
    cache = open_cache(sample_cache)
    model, _ = load_model(pretrained)
    vec = embed_all(model, Batcher.for_model(model, cache))
    pos = cache.key_index()
    y_of = {r["anchor_id"]: float(r["n_tags"]) for r in csv.DictReader(labels.open())}
    keys = sorted(k for k in y_of if k in pos)
    train, val, _ = _splits(keys, 0.2, 0.0, 0)
    v = np.array([y_of[k] for k in keys])
    y = (np.array([y_of[k] for k in train]) - v.mean()) / v.std()
    search = GridSearchCV(make_pipeline(StandardScaler(), Ridge()), {"ridge__alpha": list(HEAD_ALPHAS)},
                          cv=KFold(5, shuffle=True, random_state=0), scoring="r2").fit(vec[[pos[k] for k in train]], y)
    assert not val and info["head_refit"] is False and info["chosen_by"] == "cross-validation"
    assert "chosen by cross-validation" in (tmp_path / "h" / "README.md").read_text()
    assert info["regularisation"] == search.best_params_["ridge__alpha"]
    assert info["best"] == pytest.approx(search.best_score_, abs=1e-4)


def test_a_class_per_streamer_is_refused(sample, pretrained, tmp_path):
    """A classify target where most classes hold one streamer (an id column, or numbers without --kind regress)
    is one clear error, not a head of 75 classes."""
    from anchor_embed.errors import AnchorEmbedError
    from anchor_embed.training.adapt import adapt

    ids = [json.loads(line)["anchor_id"] for line in (sample / "streamers.jsonl").read_text().splitlines()]
    path = tmp_path / "ids.csv"
    path.write_text("anchor_id,who\n" + "".join(f"{k},{k}\n" for k in ids))
    with pytest.raises(AnchorEmbedError, match="a single streamer: nothing a head can learn"):
        adapt(pretrained, path, tmp_path / "a", target="who", mode="head")


def test_labels_without_a_streamer_are_counted_and_named(pretrained, labels, tmp_path, capsys):
    """Labelled ids missing from the feature cache are left out with a line naming them, not silently."""
    from anchor_embed.training.adapt import adapt

    path = tmp_path / "more.csv"
    path.write_text(labels.read_text() + "ghost1,x,3\nghost2,y,4\n")
    capsys.readouterr()
    adapt(pretrained, path, tmp_path / "h", target="n_tags", kind="regress", mode="head")
    seen = capsys.readouterr()
    said = " ".join((seen.err + seen.out).split())
    assert "2 labelled id(s) are not in the feature cache" in said and "'ghost1'" in said


def test_many_number_classes_suggest_regress(sample, pretrained, tmp_path, capsys):
    """A numeric column read as classes (the default --kind) gets a line suggesting --kind regress."""
    from anchor_embed.training.adapt import adapt

    ids = [json.loads(line)["anchor_id"] for line in (sample / "streamers.jsonl").read_text().splitlines()]
    path = tmp_path / "n.csv"
    path.write_text("anchor_id,score\n" + "".join(f"{k},{i // 3 * 0.5}\n" for i, k in enumerate(ids)))
    capsys.readouterr()
    adapt(pretrained, path, tmp_path / "a", target="score", mode="head")
    seen = capsys.readouterr()
    assert "every one a number; if they are quantities, --kind regress" in " ".join((seen.err + seen.out).split())


@pytest.mark.parametrize("case", ["one class", "one class in training", "one number", "no cuda"])
def test_labels_a_head_cannot_learn_are_refused_before_the_run_folder(sample, pretrained, tmp_path, case):
    """One class (in the file, or among the training streamers: the other's only streamer drawn into
    validation), one number for every cached streamer, or --device cuda on a machine without it failed inside the
    run folder: it was left behind, `predict` called it unfinished and advised --resume, which failed the same
    way. Now one line and no folder."""
    from anchor_embed.errors import AnchorEmbedError
    from anchor_embed.training.adapt import _splits, adapt

    if case == "no cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    ids = sorted(json.loads(line)["anchor_id"] for line in (sample / "streamers.jsonl").read_text().splitlines())
    path, out = tmp_path / "labels.csv", tmp_path / "run"
    in_val = _splits(ids, 0.0, 0.15, 0)[1][0]           # adapt's split of these keys at its defaults
    value = {"one class": lambda k: "x", "one class in training": lambda k: "y" if k == in_val else "x",
             "one number": lambda k: 3, "no cuda": lambda k: ids.index(k) % 2}[case]
    path.write_text("anchor_id,t\n" + "".join(f"{k},{value(k)}\n" for k in ids) + "ghost,4\n")   # ghost: not cached
    said = {"one class": "'t' is 'x' for all", "one class in training": "training streamers of 't' hold one class "
            "('x'): the validation and test shares took every streamer of 'y' (1)", "one number": "'t' is 3 for "
            "every one of", "no cuda": "--device cuda: no CUDA device here"}[case]
    with pytest.raises(AnchorEmbedError, match=re.escape(said)):
        adapt(pretrained, path, out, target="t", kind="regress" if case == "one number" else "classify",
              mode="adapter" if case == "no cuda" else "head", device="cuda" if case == "no cuda" else "auto")
    assert not out.exists()
