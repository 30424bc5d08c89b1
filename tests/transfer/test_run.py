"""`anchor-embed transfer` end to end: every registered method, the held-out split, resume, filters, aux loss."""

import json
import shutil

import numpy as np
import pytest
import torch

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.evaluation.metrics import holdout_split
from anchor_embed.model.store import load_model
from anchor_embed.transfer.methods import METHODS
from anchor_embed.transfer.run import transfer
from tests.conftest import run_cli


def test_cli_transfer_each_method_never_sees_held_out(sample, sample_cache, pretrained, tmp_path):
    keys = (sample / "ids.keys.txt").read_text().split()
    held = holdout_split(keys, 0.2, 0)
    for method in METHODS.names():
        out = tmp_path / method
        assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", out,
                       "--method", method, "--epochs", "2", "--batch-size", "16", "--holdout-frac", "0.2") == 0
        pairs = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
        assert pairs and not {p["query"] for p in pairs} & held and not {p["neighbour"] for p in pairs} & held
        seen = set((out / "seen_ids.txt").read_text().split())
        assert seen and not seen & held and seen <= set(keys)
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all("recall_at_10" in r["validation"] for r in rows)   # same selection for all
        assert json.loads((out / "outcome.json").read_text())["monitor"] == "recall_at_10"
    assert run_cli("evaluate", "--features", sample_cache, "--id-emb", sample / "ids.npy",
                   "--model", pretrained, "--model", tmp_path / "contrastive", "--ridge", "--out", tmp_path / "ev") == 0
    rows = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["frozen backbones", "frozen text only", "frozen frames only",
                                          "frozen tags only", "ridge (reference)", "kernel ridge (reference)",
                                          "residual ridge (reference)", "run", "contrastive"]
    # the production default learns from every ID embedding, so evaluate refuses it in one line
    assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out",
                   tmp_path / "prod", "--epochs", "1", "--batch-size", "16") == 0
    assert set((tmp_path / "prod" / "seen_ids.txt").read_text().split()) == set(keys)
    assert run_cli("evaluate", "--features", sample_cache, "--id-emb", sample / "ids.npy",
                   "--model", tmp_path / "prod") == 2


@pytest.mark.slow
def test_transfer_resume_and_bad_method(sample, pretrained, tmp_path):
    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--batch-size", "16",
            "--schedule", "constant"]   # a cosine schedule bends by the --epochs cap, which a resume may raise
    assert run_cli(*args, "--out", tmp_path / "a", "--epochs", "2") == 0
    assert run_cli(*args, "--out", tmp_path / "b", "--epochs", "1") == 0
    assert run_cli(*args, "--out", tmp_path / "b", "--epochs", "2", "--resume") == 0
    a, _ = load_model(tmp_path / "a")
    b, _ = load_model(tmp_path / "b")
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.allclose(x, y, atol=1e-6)
    with pytest.raises(AnchorEmbedError, match="key 'method'.*'magic'"):
        transfer(pretrained, sample / "ids.npy", tmp_path / "c", method="magic")
    # a resumed run continues only the same work: another method or learning rate is refused, nothing written
    before = (tmp_path / "b" / "config.json").read_text()
    for change in (["--method", "rkd"], ["--lr", "0.01"], ["--filter", "none"]):
        assert run_cli(*args, "--out", tmp_path / "b", "--epochs", "3", "--resume", *change) == 2
    assert (tmp_path / "b" / "config.json").read_text() == before


def test_cli_transfer_nickname_filter_keeps_similar_names(sample, sample_cache, pretrained, tmp_path):
    out = tmp_path / "nick"
    assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", out,
                   "--filter", "nickname", "--quantile", "0.5", "--epochs", "1", "--batch-size", "16") == 0
    pairs = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    kept = [p["content_score"] for p in pairs if p["kept"]]
    dropped = [p["content_score"] for p in pairs if not p["kept"]]
    assert kept and dropped and np.mean(kept) > np.mean(dropped)
    assert json.loads((out / "run.json").read_text())["mining"]["filter"] == "nickname"


def test_cli_transfer_aux_weight_adds_the_view_loss(sample, pretrained, tmp_path):
    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--epochs", "1",
            "--batch-size", "16"]
    assert run_cli(*args, "--out", tmp_path / "plain") == 0
    assert run_cli(*args, "--out", tmp_path / "aux", "--aux-weight", "0.5") == 0
    plain = json.loads((tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()[0])
    aux = json.loads((tmp_path / "aux" / "metrics.jsonl").read_text().splitlines()[0])
    assert plain["aux_loss"] == 0 and aux["aux_loss"] > 0
    # the first step is taken from the same weights, so the totals differ by about weight x view loss
    assert aux["loss"] > plain["loss"] + 0.25 * aux["aux_loss"]


def test_resume_with_other_id_embeddings_is_refused(sample, pretrained, tmp_path, capsys):
    other = tmp_path / "other.npy"
    np.save(other, np.load(sample / "ids.npy")[:, ::-1].copy())
    (tmp_path / "other.keys.txt").write_text((sample / "ids.keys.txt").read_text())
    args = ["transfer", "--pretrained", pretrained, "--out", tmp_path / "t", "--batch-size", "16"]
    assert run_cli(*args, "--id-emb", sample / "ids.npy", "--epochs", "1") == 0
    capsys.readouterr()
    assert run_cli(*args, "--id-emb", other, "--epochs", "2", "--resume") == 2
    assert "other inputs than the saved run (id_emb changed by content)" in capsys.readouterr().err


def test_cli_transfer_weight_average_bf16_and_reliability_weights(sample, pretrained, tmp_path):
    """The new training flags as a user passes them: the run records them and keeps a different model."""
    keys = (sample / "ids.keys.txt").read_text().split()
    counts = tmp_path / "counts.csv"
    counts.write_text("anchor_id,count\n" + "".join(f"{k},{i}\n" for i, k in enumerate(keys)))
    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--epochs", "2",
            "--batch-size", "16"]
    assert run_cli(*args, "--out", tmp_path / "plain") == 0
    assert run_cli(*args, "--out", tmp_path / "ema", "--weight-average", "0.5", "--precision", "bf16",
                   "--param", f"weights_file={counts}") == 0
    saved = json.loads((tmp_path / "ema" / "config.json").read_text())
    assert saved["weight_average"] == 0.5 and saved["precision"] == "bf16"
    assert saved["params"]["weights_file"] == str(counts)
    a, b = (load_model(tmp_path / r)[0].state_dict() for r in ("plain", "ema"))
    assert not all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_cli_transfer_input_dropout_and_new_recall(sample, pretrained, tmp_path):
    """`--input-dropout` is recorded and changes the training batches; every epoch logs the new-vs-new recall,
    and `--select-on` picks epochs by its mean with the mixed figure."""
    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--epochs", "1",
            "--batch-size", "16"]
    assert run_cli(*args, "--out", tmp_path / "off", "--input-dropout", "0") == 0
    assert run_cli(*args, "--out", tmp_path / "on", "--input-dropout", "0.5") == 0
    assert json.loads((tmp_path / "on" / "config.json").read_text())["input_dropout"] == 0.5
    off, on = (json.loads((tmp_path / d / "metrics.jsonl").read_text().splitlines()[0]) for d in ("off", "on"))
    assert off["loss"] != on["loss"]
    assert all(0 <= r["validation"]["new_recall_at_10"] <= 1 for r in (off, on))
    assert run_cli(*args, "--out", tmp_path / "bad", "--input-dropout", "1") == 2
    # by default each method's own: contrastive 0.2, the regression baseline none; run.json says which
    assert run_cli(*args, "--out", tmp_path / "dflt") == 0
    assert run_cli(*args, "--out", tmp_path / "feat", "--method", "feature") == 0
    assert json.loads((tmp_path / "dflt" / "run.json").read_text())["input_dropout"] == 0.2
    assert json.loads((tmp_path / "feat" / "run.json").read_text())["input_dropout"] == 0.0
    assert json.loads((tmp_path / "on" / "run.json").read_text())["input_dropout"] == 0.5
    # --select-on: the epoch picked by the mean of the two figures, which every epoch logs
    assert run_cli(*args, "--out", tmp_path / "mean", "--select-on", "mean_recall_at_10") == 0
    v = json.loads((tmp_path / "mean" / "metrics.jsonl").read_text().splitlines()[0])["validation"]
    assert v["mean_recall_at_10"] == pytest.approx((v["recall_at_10"] + v["new_recall_at_10"]) / 2)
    outcome = json.loads((tmp_path / "mean" / "outcome.json").read_text())
    assert outcome["monitor"] == "mean_recall_at_10" and outcome["best"] == pytest.approx(v["mean_recall_at_10"])


@pytest.mark.slow
def test_cli_transfer_linear_share(sample, pretrained, tmp_path, capsys):
    """`--linear-share` blends a closed-form map into the saved model (run.json and the card say so); by default
    contrastive 0.5 and the baselines none; `--map auto` (the default) fits the three maps, scores each blend
    every epoch and saves the best epoch's model with the map that scored best there; `--map
    linear|kernel|residual` fits one; embed and evaluate read the wider vectors; 1 is refused."""
    from anchor_embed.evaluation.references import MAX_LANDMARKS, RESIDUAL_ALPHAS
    from anchor_embed.features.cache import open_cache
    from anchor_embed.model.batcher import Batcher, embed_all
    from anchor_embed.transfer.config import TransferConfig
    from anchor_embed.transfer.linear_fit import refit_map
    from anchor_embed.transfer.run import read_split
    from anchor_embed.transfer.validation import split_validation, validation_figures

    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--epochs", "3",
            "--batch-size", "16", "--holdout-frac", "0.2"]
    assert run_cli(*args, "--out", tmp_path / "dflt") == 0
    assert run_cli(*args, "--out", tmp_path / "feat", "--method", "feature") == 0
    assert run_cli(*args, "--out", tmp_path / "half", "--linear-share", "0.3", "--map", "linear") == 0
    assert run_cli(*args, "--out", tmp_path / "kern", "--map", "kernel", "--map-landmarks", "25") == 0
    capsys.readouterr()
    assert run_cli(*args, "--out", tmp_path / "resid", "--map", "residual") == 0
    said = " ".join(capsys.readouterr().err.split())          # the progress line names the figure that chose
    assert "chosen again beside the trained model" in said and "by validation mean_recall_at_10 of the blend" in said
    assert run_cli(*args, "--out", tmp_path / "kept", "--no-map-refit") == 0
    assert run_cli(*args, "--out", tmp_path / "bad", "--linear-share", "1") == 2
    assert run_cli(*args, "--out", tmp_path / "bad", "--map", "rbf") == 2
    assert run_cli(*args, "--out", tmp_path / "bad", "--map-landmarks", "0") == 2
    info = {d: json.loads((tmp_path / d / "run.json").read_text())["linear_map"]
            for d in ("dflt", "feat", "half", "kern", "resid")}
    assert info["dflt"]["share"] == 0.5 and info["feat"] == {"share": 0.0} and info["half"]["share"] == 0.3
    assert set(info["dflt"]) - {"blend_alpha"} == {"share", "kernel", "linear", "residual", "refit"}  # see below
    assert set(info["half"]) == {"share", "linear", "refit"} and set(info["kern"]) == {"share", "kernel", "refit"}
    assert set(info["resid"]) == {"share", "residual", "blend_alpha", "refit"}
    assert info["resid"]["refit"]["kind"] == "residual"
    resid = info["resid"]["residual"]        # its alpha before training: the best of its own validation figures
    assert resid["alpha_by"] == "validation mean_recall_at_10" and len(resid["alphas"]) == len(RESIDUAL_ALPHAS)
    assert f"{resid['alpha']:.4g}" == max(resid["alphas"], key=resid["alphas"].get)
    # after training: chosen again by the blend with the trained model's vectors, and refitted at that alpha
    after = info["resid"]["blend_alpha"]
    assert after["alpha_by"] == "validation mean_recall_at_10 of the blend" and len(after["alphas"]) == len(
        RESIDUAL_ALPHAS) and f"{after['alpha']:.4g}" == max(after["alphas"], key=after["alphas"].get)
    assert info["resid"]["refit"]["alpha"] == after["alpha"]
    assert load_model(tmp_path / "resid")[0].linear_map.kind == "residual"
    assert info["dflt"]["kernel"]["alpha"] > 0 and info["dflt"]["kernel"]["landmarks"] == \
        info["dflt"]["kernel"]["fitted_on"] > 25          # every training streamer up to --map-landmarks (4,096)
    assert info["kern"]["kernel"]["landmarks"] == 25 and info["kern"]["kernel"]["fitted_on"] > 25
    assert TransferConfig().map_landmarks == MAX_LANDMARKS
    model, raw = load_model(tmp_path / "half")
    assert raw["linear_share"] == 0.3 and model.dim == raw["out_dim"] + 16     # the sample's ID embeddings: 16-d
    assert model.linear_map.kind == "linear" and load_model(tmp_path / "kern")[0].linear_map.kind == "kernel"
    assert load_model(tmp_path / "feat")[0].linear_map is None
    # auto: every epoch logs both blends; the saved model carries the map of the kept epoch's better blend, and
    # its own validation figure is the one that epoch logged
    rows = [json.loads(x) for x in (tmp_path / "dflt" / "metrics.jsonl").read_text().splitlines()]
    best = json.loads((tmp_path / "dflt" / "outcome.json").read_text())
    v = rows[best["best_epoch"] - 1]["validation"]
    scored = {kind: v[f"{kind}_map_recall_at_10"] for kind in ("kernel", "linear", "residual")}
    plain = max(("kernel", "linear"), key=scored.get)       # the first of equal figures, in MAP_KINDS order
    model, raw = load_model(tmp_path / "dflt")
    kept = model.linear_map.kind       # the residual map only with a lead (beyond one standard error: choose_map)
    assert kept == plain or (kept == "residual" and scored["residual"] > scored[plain])
    assert v["recall_at_10"] == scored[kept] and raw["linear_share"] == 0.5
    cfg = TransferConfig.model_validate(json.loads((tmp_path / "dflt" / "config.json").read_text()))
    run_info = json.loads((tmp_path / "dflt" / "run.json").read_text())
    cache = open_cache(run_info["features"])
    split = read_split(cache, cfg, sample / "ids.npy", None, "anchor_id")[0]
    validation = split_validation(split)
    # --no-map-refit saves the map as validated (a residual map at the alpha its blend with the trained model
    # scored best: that figure is the saved model's own), with the figure the kept epoch logged; by default the
    # kept map is fitted again on the training and validation streamers (its kind and final alpha kept) and
    # nothing else changes
    kept, kept_raw = load_model(tmp_path / "kept")
    again = validation_figures(kept, Batcher.for_model(kept, cache), validation)
    kept_map = json.loads((tmp_path / "kept" / "run.json").read_text())["linear_map"]
    assert "refit" not in kept_map
    if kept.linear_map.kind == "residual":
        after = kept_map["blend_alpha"]
        assert again["mean_recall_at_10"] == pytest.approx(after["alphas"][f"{after['alpha']:.4g}"], abs=1e-5)
        # its figure at the alpha chosen before training is the one the kept epoch logged for that blend
        logged = [json.loads(x) for x in (tmp_path / "kept" / "metrics.jsonl").read_text().splitlines()][
            json.loads((tmp_path / "kept" / "outcome.json").read_text())["best_epoch"] - 1]["validation"]
        assert after["alphas"][f"{kept_map['residual']['alpha']:.4g}"] == pytest.approx(
            logged["mean_recall_at_10"], abs=1e-5)
    else:
        assert "blend_alpha" not in kept_map
        assert again["recall_at_10"] == pytest.approx(best["best"], abs=1e-5)
    refit = run_info["linear_map"]["refit"]
    assert refit["kind"] == model.linear_map.kind == kept.linear_map.kind
    assert refit["fitted_on"] == len(split.train_rows) + len(split.val_rows) > run_info["linear_map"]["linear"][
        "fitted_on"]
    alpha = run_info["linear_map"].get("blend_alpha", run_info["linear_map"][refit["kind"]])["alpha"]
    want, _ = refit_map(kept, Batcher.for_model(kept, cache), split, refit["kind"], alpha, cfg.seed)
    for name, value in want.state_dict().items():
        torch.testing.assert_close(model.linear_map.state_dict()[name], value)
    fusion = {k: v for k, v in model.state_dict().items() if not k.startswith("linear_map.")}
    for k, v in kept.state_dict().items():
        if not k.startswith("linear_map."):
            assert torch.equal(fusion[k], v), k
    assert run_cli("embed", "--model", tmp_path / "half", "--streamers", sample / "streamers.jsonl",
                   "--out", tmp_path / "vec") == 0
    vecs = np.load(tmp_path / "vec" / "vectors.npy")
    model = load_model(tmp_path / "half")[0]
    assert vecs.shape[1] == model.dim and np.allclose(np.linalg.norm(vecs.astype(np.float32), axis=1), 1, atol=1e-2)
    assert run_cli("evaluate", "--features", run_info["features"],
                   "--id-emb", sample / "ids.npy", "--model", tmp_path / "half", "--model", tmp_path / "kern",
                   "--model", tmp_path / "feat", "--out", tmp_path / "ev") == 0
    assert "linear map" in (tmp_path / "half" / "README.md").read_text()
    assert "kernel ridge map" in (tmp_path / "kern" / "README.md").read_text()
    # a cache without frames feeds a frame model and its map as streamers without frames, with a warning: the
    # vectors the model gives the full cache's streamers with every frame left out
    records = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()][:30]
    (tmp_path / "noframes.jsonl").write_text("".join(json.dumps({**r, "frames": []}) + "\n" for r in records))
    assert run_cli("features", "--streamers", tmp_path / "noframes.jsonl", "--out", tmp_path / "nf") == 0
    nf = open_cache(tmp_path / "nf")
    rows = [cache.keys.index(k) for k in nf.keys]
    for run in ("kern", "half", "feat"):
        model = load_model(tmp_path / run)[0]
        capsys.readouterr()
        got = embed_all(model, Batcher.for_model(model, nf))
        assert "has no frames and the model reads" in " ".join(capsys.readouterr().err.split())
        full = Batcher.for_model(model, cache)
        atoms = [[a for a in full.all_atoms(r) if a[0] != "frame"] for r in rows]
        with torch.inference_mode():
            want = model.eval()(full.make(rows, atoms)).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert run_cli("evaluate", "--features", tmp_path / "nf", "--id-emb", sample / "ids.npy", "--model",
                       tmp_path / run, "--no-frozen") == 0
    # text of another width is refused in one line
    model = load_model(tmp_path / "kern")[0]
    model.cfg.text_dim += 1
    with pytest.raises(AnchorEmbedError, match="nf: features 512-d text and 0-d frames, but the model reads 513-d"):
        Batcher.for_model(model, nf)


@pytest.mark.slow
def test_cli_transfer_choose_keeps_the_best_candidate_on_validation(sample, pretrained, tmp_path, capsys):
    """`--choose KEY=V1,V2` trains one run per value (a grid when repeated) and keeps the one with the best
    validation figure: OUT holds that candidate's files bit for bit, choice.json and run.json every figure;
    evaluate reads OUT like any run; a rerun without --resume and bad keys or values are one-line refusals."""
    out = tmp_path / "chosen"
    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--epochs", "2",
            "--batch-size", "16", "--holdout-frac", "0.2"]
    assert run_cli(*args, "--out", out, "--choose", "input_dropout=0,0.5", "--choose", "params.temperature=0.1,0.2") == 0
    choice = json.loads((out / "choice.json").read_text())
    runs = {json.dumps(r["settings"], sort_keys=True): r for r in choice["candidates"]}
    assert len(runs) == 4 and {r["settings"]["input_dropout"] for r in runs.values()} == {0, 0.5}
    for r in runs.values():   # each candidate is a whole run with its own settings and its own best figure
        cfg = json.loads((tmp_path / r["run"] / "config.json").read_text())
        assert cfg["input_dropout"] == r["settings"]["input_dropout"]
        assert cfg["params"]["temperature"] == r["settings"]["params.temperature"]
        assert r["validation"] == json.loads((tmp_path / r["run"] / "outcome.json").read_text())["best"]
    best = max(runs.values(), key=lambda r: r["validation"])
    assert choice["kept"] == best["settings"] and json.loads((out / "run.json").read_text())["choice"] == choice
    for name in ("model.safetensors", "config.json", "metrics.jsonl", "seen_ids.txt"):
        assert (out / name).read_bytes() == (tmp_path / best["run"] / name).read_bytes()
    features = json.loads((out / "run.json").read_text())["features"]
    assert run_cli("evaluate", "--features", features, "--id-emb", sample / "ids.npy", "--model", out,
                   "--holdout-frac", "0.2", "--no-frozen") == 0
    capsys.readouterr()
    assert run_cli(*args, "--out", out, "--choose", "input_dropout=0,0.5") == 2       # holds a run already
    assert run_cli(*args, "--out", out, "--choose", "input_dropout=0,0.5", "--choose", "params.temperature=0.1,0.2",
                   "--resume") == 0                                                     # finished: kept again
    assert json.loads((out / "choice.json").read_text())["kept"] == choice["kept"]
    assert (out / "evaluation.json").is_file()          # the same model kept: its evaluation stays
    # a choice stopped before its last candidate started goes on with --resume alone: the same grid, and the
    # candidate trains with the settings of the start (it trained a single run into OUT, or took the defaults')
    stopped = tmp_path / "stopped"
    (stopped / "candidates" / "input_dropout=0.5").mkdir(parents=True)
    (stopped / "candidates" / "input_dropout=0.5" / "model.safetensors").write_text("x")   # cannot start: stops
    assert run_cli(*args, "--out", stopped, "--choose", "input_dropout=0,0.5") == 2
    assert not (stopped / "model.safetensors").exists()
    shutil.rmtree(stopped / "candidates" / "input_dropout=0.5")
    capsys.readouterr()
    assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", stopped,
                   "--resume", "--threads", "1") == 0
    again = json.loads((stopped / "choice.json").read_text())
    assert [r["settings"] for r in again["candidates"]] == [{"input_dropout": 0}, {"input_dropout": 0.5}]
    late = json.loads((stopped / "candidates" / "input_dropout=0.5" / "config.json").read_text())
    first = json.loads((stopped / "candidates" / "input_dropout=0" / "config.json").read_text())
    assert late == {**first, "input_dropout": 0.5, "threads": 1}
    assert late["epochs"] == 2 and late["holdout_frac"] == 0.2 and late["batch_size"] == 16
    for bad, says in ((["--choose", "seed=0,1"], "'seed' is not a setting"), (["--choose", "input_dropout=0.2"], "two values"),
                      (["--choose", "nonsense=1,2"], "'nonsense'"), (["--choose", "input_dropout=0,1"], "input_dropout=1")):
        capsys.readouterr()
        assert run_cli(*args, "--out", tmp_path / "bad", *bad) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bad" / "candidates").exists()      # refused before any candidate trained


def test_choose_best_candidate_ties_keep_the_first_given():
    """The highest validation figure wins; figures equal but for float rounding are a tie kept by order."""
    from anchor_embed.transfer.choose import best_candidate, candidates, label

    rows = [{"settings": {"x": 0.2}, "validation": 0.04857142857142857},
            {"settings": {"x": 0.0}, "validation": 0.04857142857142858}]
    assert best_candidate(rows)["settings"] == {"x": 0.2}
    assert best_candidate(rows[::-1])["settings"] == {"x": 0.0}
    assert best_candidate([*rows, {"settings": {"x": 0.1}, "validation": 0.05}])["settings"] == {"x": 0.1}
    grid = candidates({"input_dropout": [0.2, 0], "params.temperature": [0.1, 0.2]})
    assert [label(c) for c in grid] == ["input_dropout=0.2,params.temperature=0.1", "input_dropout=0.2,params.temperature=0.2",
                                        "input_dropout=0,params.temperature=0.1", "input_dropout=0,params.temperature=0.2"]


def test_choose_take_leaves_no_card_of_an_earlier_winner(tmp_path):
    """OUT takes the winner's files; the card and evaluation of a different earlier model are removed."""
    from anchor_embed.transfer.choose import RUN_FILES, take

    first, second, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    for d in (first, second, out):
        d.mkdir()
    for name in RUN_FILES:
        (first / name).write_text("a " + name)
        (second / name).write_text("b " + name)
    (first / "evaluation.json").write_text("{}")
    take(first, out)
    (out / "README.md").write_text("card of a, evaluated")
    take(first, out)                                        # the same model again: its card stays
    assert (out / "README.md").read_text() == "card of a, evaluated" and (out / "evaluation.json").is_file()
    take(second, out)                                       # another model: a's card and evaluation go
    assert not (out / "README.md").exists() and not (out / "evaluation.json").exists()
    assert all((out / n).read_text() == "b " + n for n in RUN_FILES)
