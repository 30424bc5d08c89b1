"""`transfer --members K`: K runs from one start and split, their weights averaged (a uniform model soup)."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.transfer.soup import average_members, average_weights
from tests.conftest import run_cli


def test_average_weights_is_the_plain_mean_and_refuses_what_cannot_be_averaged():
    """Float tensors: the element-wise mean (re-derived in float64 with numpy), duplicates averaging to
    themselves; integer tensors must agree; another name or shape is refused in one line."""
    g = torch.Generator().manual_seed(0)
    states = [{"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g).to(torch.bfloat16),
               "ids": torch.arange(5)} for _ in range(3)]
    got = average_weights(states)
    want = np.mean([s["w"].double().numpy() for s in states], axis=0)
    np.testing.assert_allclose(got["w"].double().numpy(), want, rtol=1e-6, atol=1e-7)
    assert got["b"].dtype == torch.bfloat16 and torch.equal(got["ids"], torch.arange(5))
    same = average_weights([states[0], states[0]])        # a soup of one model twice is that model
    assert all(torch.equal(same[k], states[0][k]) for k in states[0])
    for bad, says in (([states[0], {**states[1], "ids": torch.arange(5) + 1}], "disagree on 'ids'"),
                      ([states[0], {**states[1], "w": torch.zeros(4, 3)}], "member 1 has other weights"),
                      ([states[0], {"w": states[1]["w"]}], "member 1 has other weights"), ([], "no weights")):
        with pytest.raises(AnchorEmbedError, match=says):
            average_weights(bad)


def test_a_soups_outcome_names_no_epoch_and_the_epoch_each_member_kept(sample, pretrained, tmp_path):
    """outcome.json said `"best_epoch": 0` of the soup, which reads as "the start was kept": no epoch's model is
    the soup's, so it is null, with each member's kept epoch beside it; the card still says what the soup is."""
    from anchor_embed.data.schemas import RunOutcome

    out = tmp_path / "soup"
    assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", out,
                   "--members", "2", "--epochs", "1", "--batch-size", "16", "--holdout-frac", "0.2") == 0
    outcome = json.loads((out / "outcome.json").read_text())
    RunOutcome.model_validate(outcome)
    assert outcome["stopped_by"] == "soup" and outcome["best_epoch"] is None
    kept = [json.loads((out / "members" / f"member{m}" / "outcome.json").read_text())["best_epoch"] for m in (0, 1)]
    assert outcome["members"] == [{"member": 0, "best_epoch": kept[0]}, {"member": 1, "best_epoch": kept[1]}]
    assert all(isinstance(e, int) for e in kept)
    card = (out / "README.md").read_text()
    assert "average of 2 runs" in card and "the model is" not in card       # no epoch claimed for the soup


@pytest.mark.slow
def test_cli_transfer_members_averages_the_runs(sample, pretrained, tmp_path, capsys):
    """Member 0 is bit for bit the single run (its fusion weights: the single run's residual alpha is chosen
    again after training, a member's is left to the soup); member 1 draws other batches; OUT holds the mean of their
    weights with its own validation figure (soup.json, run.json, the card), which evaluate reads like any run;
    a rerun needs --resume and keeps the model; bad values are one-line refusals."""
    out = tmp_path / "soup"
    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--epochs", "2",
            "--batch-size", "16", "--holdout-frac", "0.2"]
    assert run_cli(*args, "--out", tmp_path / "single", "--no-map-refit") == 0     # members keep their maps as fitted
    assert run_cli(*args, "--out", out, "--members", "2") == 0
    members = [out / "members" / f"member{m}" for m in range(2)]
    weights = [load_file(str(m / "model.safetensors")) for m in members]
    single = load_file(str(tmp_path / "single" / "model.safetensors"))   # its residual alpha may be chosen again
    assert all(torch.equal(single[k], weights[0][k]) for k in weights[0] if not k.startswith("linear_map."))
    assert single.keys() == weights[0].keys()
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert (members[0] / "seen_ids.txt").read_bytes() == (members[1] / "seen_ids.txt").read_bytes()  # one split
    soup = load_file(str(out / "model.safetensors"))
    record = json.loads((out / "soup.json").read_text())
    # the fusion weights are the mean; the map is the one the soup's validation picked among the members' maps,
    # then fitted again on the training and validation streamers, as a single run does
    kinds = ["residual" if "linear_map.mean_weight" in w else "kernel" if "linear_map.landmarks" in w else "linear"
             for w in weights]
    assert record["map"] in kinds and record["map_refit"]["kind"] == record["map"]
    assert ("blend_alpha" in record) == (record["map"] == "residual")      # its alpha again beside the soup
    member_map = json.loads((members[0] / "run.json").read_text())["linear_map"]
    assert record["map_refit"]["alpha"] == record.get("blend_alpha", member_map[record["map"]])["alpha"]
    assert record["map_refit"]["fitted_on"] > member_map[record["map"]]["fitted_on"]
    assert "refit" not in member_map
    assert {k for k in soup if k.startswith("linear_map.")} == \
        {k for k in weights[kinds.index(record["map"])] if k.startswith("linear_map.")}
    for k, v in soup.items():
        if v.is_floating_point() and not k.startswith("linear_map."):
            torch.testing.assert_close(v, ((weights[0][k].double() + weights[1][k].double()) / 2).to(v.dtype))
    assert [r["member"] for r in record["members"]] == [0, 1]
    for r, m in zip(record["members"], members, strict=True):
        assert r["validation"] == json.loads((m / "outcome.json").read_text())["best"]
    outcome = json.loads((out / "outcome.json").read_text())
    assert outcome["stopped_by"] == "soup" and outcome["best"] == record["validation"]["recall_at_10"]
    assert 0 <= outcome["best"] <= 1 and not (out / "metrics.jsonl").exists()
    assert json.loads((out / "run.json").read_text())["soup"] == record
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["members"] == 2 and cfg["member"] is None
    assert json.loads((members[1] / "config.json").read_text())["member"] == 1
    assert "average of 2 runs" in (out / "README.md").read_text()
    features = json.loads((out / "run.json").read_text())["features"]
    assert run_cli("evaluate", "--features", features, "--id-emb", sample / "ids.npy", "--model", out,
                   "--holdout-frac", "0.2", "--no-frozen") == 0
    before = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert run_cli(*args, "--out", out, "--members", "2") == 2                  # holds a run already
    assert "--resume" in capsys.readouterr().err
    assert run_cli(*args, "--out", out, "--members", "2", "--resume") == 0      # finished: the same soup
    assert (out / "model.safetensors").read_bytes() == before and (out / "evaluation.json").is_file()
    # a soup stopped before it was made (member 1 unfinished) resumes with --resume alone, as a soup with its own
    # settings: they were the defaults' (no hold-out: its map refit fitted on the held-out streamers), or it
    # trained a single run beside the members
    stopped = tmp_path / "stopped"
    (stopped / "members" / "member1").mkdir(parents=True)
    (stopped / "members" / "member1" / "model.safetensors").write_text("x")  # member 1 cannot start: stops the soup
    assert run_cli(*args, "--out", stopped, "--members", "2") == 2
    shutil.rmtree(stopped / "members" / "member1")
    assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", stopped,
                   "--resume") == 0
    again = json.loads((stopped / "soup.json").read_text())
    assert again["map_refit"]["fitted_on"] == record["map_refit"]["fitted_on"]
    assert json.loads((stopped / "config.json").read_text()) == cfg
    # the member that had not started takes the soup's settings too (it trained with the defaults': no hold-out)
    assert json.loads((stopped / "members" / "member1" / "config.json").read_text()) == \
        json.loads((members[1] / "config.json").read_text())
    for bad, says in ((["--members", "0"], "members"), (["--choose", "members=1,2"], "'members' is not a setting")):
        capsys.readouterr()
        assert run_cli(*args, "--out", tmp_path / "bad", *bad) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()
    capsys.readouterr()
    assert run_cli(*args, "--out", tmp_path / "single", "--members", "2", "--resume") == 2   # a single run is no soup
    assert "not a soup" in capsys.readouterr().err
    both = tmp_path / "both"        # with --choose every candidate is a soup, and OUT takes the kept one's record
    assert run_cli(*args, "--out", both, "--members", "2", "--choose", "input_dropout=0,0.5") == 0
    kept = json.loads((both / "choice.json").read_text())["kept"]
    src = both / "candidates" / f"input_dropout={kept['input_dropout']}"
    assert (both / "soup.json").read_bytes() == (src / "soup.json").read_bytes()
    assert (both / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()


def test_members_that_kept_different_maps_average_their_fusion_weights_and_offer_both_maps(sample, pretrained,
                                                                                         tmp_path):
    """Two real runs on one split, one saved with the kernel map and one with the linear map (as two members
    whose validation picked differently): the soup's model is the mean of their fusion weights without a map,
    and both maps are offered, each the member's own, to the soup's validation."""
    from anchor_embed.model.store import load_model

    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--epochs", "1",
            "--batch-size", "16", "--holdout-frac", "0.2"]
    for kind in ("kernel", "linear"):
        assert run_cli(*args, "--out", tmp_path / kind, "--map", kind) == 0
    members = [load_model(tmp_path / kind)[0] for kind in ("kernel", "linear")]
    states = [{k: v.clone() for k, v in m.state_dict().items()} for m in members]
    model, maps = average_members(members)
    assert set(maps) == {"kernel", "linear"} and model.linear_map is None and model.dim == model.cfg.out_dim
    assert maps["kernel"].kind == "kernel" and maps["linear"].kind == "linear"
    for kind, state in (("kernel", states[0]), ("linear", states[1])):
        for name, value in maps[kind].state_dict().items():
            assert torch.equal(value, state[f"linear_map.{name}"])
    for k, v in model.state_dict().items():
        assert not k.startswith("linear_map.")
        if v.is_floating_point():
            torch.testing.assert_close(v, ((states[0][k].double() + states[1][k].double()) / 2).to(v.dtype))


@pytest.mark.slow
@pytest.mark.parametrize("grid", ["members", "choose"])
def test_a_soup_or_choice_resumed_with_more_epochs_goes_on_with_them(sample, pretrained, tmp_path, grid):
    """Members and candidates train from the soup's or choice's saved settings: resumed with --epochs 2 after a
    start at 1, a later --resume alone held them to 1 and was refused ("already past it")."""
    out = tmp_path / grid
    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy"]
    grid_args, second = (["--members", "2"], out / "members" / "member1") if grid == "members" else \
        (["--choose", "input_dropout=0,0.5"], out / "candidates" / "input_dropout=0.5")
    second.mkdir(parents=True)
    (second / "model.safetensors").write_text("x")             # the second run cannot start: the first stops here
    assert run_cli(*args, "--out", out, "--epochs", "1", "--batch-size", "16", "--holdout-frac", "0.2",
                   *grid_args) == 2
    assert run_cli(*args, "--out", out, "--resume", "--epochs", "2") == 2     # the first run goes on to 2, then stops
    shutil.rmtree(second)
    assert run_cli(*args, "--out", out, "--resume") == 0        # with the 2 epochs the first run has now
    first = out / ("members/member0" if grid == "members" else "candidates/input_dropout=0")
    assert json.loads((first / "config.json").read_text())["epochs"] == 2
    assert json.loads((second / "config.json").read_text())["epochs"] == 2
