"""transfer's refusals name where a bad value came from and come before the slow set-up."""

import json

from tests.conftest import run_cli


def test_a_bad_flag_is_not_blamed_on_the_config_file(sample, pretrained, tmp_path, capsys):
    """`--config c.json --epochs 0` said 'c.json: key epochs ...', as did `--param nosuch=1`."""
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"epochs": 2}))
    base = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", tmp_path / "t",
            "--config", config]
    capsys.readouterr()
    assert run_cli(*base, "--epochs", "0") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "error: key 'epochs': Input should be greater than or equal to 1 (got 0) (from the command line)" in err
    assert run_cli(*base, "--param", "nosuch=1") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: unknown key 'params.nosuch'") and err.endswith("(from the command line)"), err
    config.write_text(json.dumps({"epochs": 0}))
    assert run_cli(*base) == 2
    assert f"error: {config}: key 'epochs'" in " ".join(capsys.readouterr().err.split())
    assert run_cli(*base[:-2], "--choose", "nosuch=1,2") == 2
    assert "unknown setting 'nosuch' (choose among " in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "t").exists()


def test_an_existing_run_is_refused_before_the_id_embeddings_are_read(sample, pretrained, tmp_path, capsys):
    """Refused only after reading the ID embeddings and mining pairs (seconds here, more at scale): a missing
    ID file shows which check runs first."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoints" / "epoch-0001").mkdir(parents=True)
    (out / "checkpoints" / "epoch-0001" / "state.json").write_text("{}")
    (out / "checkpoints" / "latest.json").write_text(json.dumps({"epoch": 1, "path": "epoch-0001"}))
    capsys.readouterr()
    assert run_cli("transfer", "--pretrained", pretrained, "--id-emb", tmp_path / "absent.npy", "--out", out) == 2
    assert "holds a run already; pass --resume" in capsys.readouterr().err


def test_a_required_setting_no_flag_gave_is_named_as_a_flag(sample, pretrained, tmp_path, capsys):
    """adapt without --target said "key 'target': Field required"."""
    labels = tmp_path / "l.csv"
    labels.write_text("anchor_id,y\na,1\n")
    capsys.readouterr()
    assert run_cli("adapt", "--pretrained", pretrained, "--labels", labels, "--out", tmp_path / "a") == 2
    assert "error: --target is required" in capsys.readouterr().err


def test_a_map_kind_with_no_map_to_blend_is_refused_before_any_work(sample, pretrained, tmp_path, capsys):
    """`--linear-share 0 --map kernel` (or a baseline, whose share is 0, with `--map`) trained without a map and
    said nothing of the --map given; `--map auto` (the default) with no map stays fine, and in a --choose grid
    over the share the kind is the other candidates'."""
    from anchor_embed.transfer.config import TransferConfig

    base = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", tmp_path / "t",
            "--epochs", "1"]
    for extra, said in [
            (["--linear-share", "0", "--map", "kernel"], "error: --map kernel: there is no map to blend "
             "(--linear-share 0); give --linear-share above 0 for the map, or leave --map out for the fusion "
             "vector alone"),
            (["--method", "feature", "--map", "linear"], "error: --map linear: there is no map to blend (method "
             "'feature' blends none unless --linear-share is above 0)"),
            (["--linear-share", "0", "--map", "residual", "--members", "2"], "error: --map residual: there is no map"),
            (["--linear-share", "0", "--choose", "map=kernel,linear"], "error: --choose map=kernel: --map kernel: "
             "there is no map to blend (--linear-share 0)")]:
        capsys.readouterr()
        assert run_cli(*base, *extra) == 2, extra
        err = capsys.readouterr().err
        assert said in " ".join(err.split()) and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "t").exists()
    for fine in ({"linear_share": 0.0}, {"method": "feature"}, {"method": "feature", "map": "kernel",
                                                               "linear_share": 0.3}, {"map": "residual"}):
        TransferConfig(**fine).refuse_ignored_map()
    # a grid over the share: the share-0 candidate blends no map and says so; the first candidate then stops
    # on the absent ID file, before any training
    capsys.readouterr()
    assert run_cli(*base[:4], tmp_path / "absent.npy", *base[5:], "--choose", "linear_share=0,0.3",
                   "--map", "kernel") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "candidate linear_share=0 blends no map; --map kernel is the other candidates'" in err, err
    assert "there is no map to blend" not in err
