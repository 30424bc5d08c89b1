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
