"""--resume on what a user leaves behind: damaged checkpoints, other adapt inputs, no run, a stopped run."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

TINY = ["--batch-size", "16", "--d-model", "32", "--out-dim", "16", "--layers", "1", "--schedule", "constant",
        "--patience", "0"]


@pytest.fixture(scope="module")
def two_epochs(sample_cache, tmp_path_factory) -> Path:
    """A pretrain run stopped after epoch 2 of 4 (its checkpoints of epochs 1 and 2 kept)."""
    run = tmp_path_factory.mktemp("resume") / "run"
    assert run_cli("pretrain", "--features", sample_cache, "--out", run, *TINY, "--epochs", "2") == 0
    (run / "outcome.json").unlink()
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(run, out)
    return out


@pytest.mark.parametrize("damage", ["truncated model", "optimizer deleted", "state not JSON", "latest not JSON"])
def test_a_damaged_checkpoint_is_one_line_naming_the_one_that_reads(two_epochs, sample_cache, tmp_path, capsys,
                                                                   damage):
    """Each was a traceback (SafetensorError, KeyError '0.step', JSONDecodeError)."""
    run = _copy(two_epochs, tmp_path)
    last = run / "checkpoints" / "epoch-0002"
    if damage == "truncated model":
        f = last / "model.safetensors"
        f.write_bytes(f.read_bytes()[:5])
    elif damage == "optimizer deleted":
        (last / "optimizer.safetensors").unlink()
    elif damage == "state not JSON":
        (last / "state.json").write_text("{garbage")
    else:
        (run / "checkpoints" / "latest.json").write_text("garbage")
    capsys.readouterr()
    assert run_cli("pretrain", "--features", sample_cache, "--out", run, *TINY, "--epochs", "4", "--resume") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1, err
    good = 2 if damage == "latest not JSON" else 1          # the newest checkpoint that still reads
    assert f'epoch-000{good} is intact: to continue from it, write {{"epoch": {good}, "path": "epoch-000{good}"}}' \
        in err, err
    named = {"truncated model": "epoch-0002/model.safetensors: unreadable (",      # the file, not only its folder
             "optimizer deleted": "epoch-0002/optimizer.safetensors: unreadable (missing)",
             "state not JSON": "epoch-0002/state.json: unreadable (not JSON: ",
             "latest not JSON": "checkpoints/latest.json: unreadable (not JSON: "}[damage]
    assert named in err, err
    # doing what the line says continues the run
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"epoch": good, "path": f"epoch-000{good}"}))
    assert run_cli("pretrain", "--features", sample_cache, "--out", run, *TINY, "--epochs", "4", "--resume") == 0
    assert json.loads((run / "outcome.json").read_text())["epochs_run"] == 4


def test_a_finished_run_whose_checkpoint_is_damaged_stays_finished(two_epochs, sample_cache, tmp_path, capsys):
    """A failed --resume of a finished run removed its outcome.json first: the run then read as unfinished."""
    run = _copy(two_epochs, tmp_path)
    (run / "outcome.json").write_text('{"complete": true}')
    (run / "checkpoints" / "epoch-0002" / "state.json").write_text("{garbage")
    assert run_cli("pretrain", "--features", sample_cache, "--out", run, *TINY, "--epochs", "2", "--resume") == 2
    assert (run / "outcome.json").read_text() == '{"complete": true}'


def test_a_checkpoint_missing_its_optimizer_is_not_offered(two_epochs, sample_cache, tmp_path, capsys):
    """The older checkpoint was offered as one that 'reads' though its optimizer file was gone too."""
    run = _copy(two_epochs, tmp_path)
    for epoch in (1, 2):
        (run / "checkpoints" / f"epoch-000{epoch}" / "optimizer.safetensors").unlink()
    capsys.readouterr()
    assert run_cli("pretrain", "--features", sample_cache, "--out", run, *TINY, "--epochs", "4", "--resume") == 2
    err = capsys.readouterr().err
    assert "optimizer.safetensors: unreadable (missing); no intact checkpoint to continue from" in err, err


def test_resume_says_when_there_is_no_run_and_refuses_one_past_the_budget(two_epochs, sample_cache, tmp_path, capsys):
    """Past the budget was accepted: config.json then said --epochs 1 beside an outcome of 2 epochs run."""
    capsys.readouterr()
    assert run_cli("pretrain", "--features", sample_cache, "--out", tmp_path / "typo", *TINY, "--epochs", "1",
                   "--resume") == 0
    assert "no run here to resume; starting a new one" in capsys.readouterr().err
    run = _copy(two_epochs, tmp_path)
    assert run_cli("pretrain", "--features", sample_cache, "--out", run, *TINY, "--epochs", "1", "--resume") == 2
    err = capsys.readouterr().err
    assert "--resume --epochs 1, but the run is already past it (2 epochs trained); pass --epochs 2 or more" in err
    assert json.loads((run / "config.json").read_text())["epochs"] == 2 and not (run / "outcome.json").exists()
    # at the budget: said to be complete (only 'resuming after epoch 2' was printed), and finished again
    assert run_cli("pretrain", "--features", sample_cache, "--out", run, "--resume") == 0
    assert "it has run all 2 epochs of --epochs: nothing more to train" in capsys.readouterr().err
    assert json.loads((run / "outcome.json").read_text())["epochs_run"] == 2


def test_a_run_stopped_before_its_first_epoch_starts_over(two_epochs, sample_cache, tmp_path, capsys):
    """Stopped in epoch 1 after a warm start saved model.safetensors (adapt --mode full): the stop line said
    'nothing to resume', then the same command, with or without --resume, was refused as a run without
    checkpoints. A run whose checkpoints were removed after training stays refused."""
    def stopped_early(name: str) -> Path:
        run = _copy(two_epochs, tmp_path / name)
        shutil.rmtree(run / "checkpoints")
        (run / "metrics.jsonl").unlink()
        return run

    capsys.readouterr()
    run = stopped_early("a")
    assert run_cli("pretrain", "--features", sample_cache, "--out", run, *TINY, "--epochs", "1", "--resume") == 0
    assert "no epoch finished in this run, nothing to resume; starting it over" in capsys.readouterr().err
    assert run_cli("pretrain", "--features", sample_cache, "--out", stopped_early("b"), *TINY, "--epochs", "1") == 0
    trained = _copy(two_epochs, tmp_path / "c")
    shutil.rmtree(trained / "checkpoints")
    assert run_cli("pretrain", "--features", sample_cache, "--out", trained, *TINY, "--epochs", "1", "--resume") == 2
    from anchor_embed.training.fit import _how_to_continue  # what the stop line says in each case

    assert "run the same command to start over" in _how_to_continue(stopped_early("d"), None)
    assert f"remove {trained} to start over" in _how_to_continue(trained, None)


def test_a_changed_param_is_named_by_its_key(sample, pretrained, tmp_path, capsys):
    """A method parameter changed under --resume was named only as 'params'."""
    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", tmp_path / "t",
            "--batch-size", "16", "--epochs", "1", "--holdout-frac", "0.2"]
    assert run_cli(*args, "--param", "temperature=0.1") == 0
    (tmp_path / "t" / "outcome.json").unlink()
    capsys.readouterr()
    assert run_cli(*args, "--param", "temperature=0.2", "--resume") == 2
    assert "differ from the saved run (params.temperature)" in capsys.readouterr().err


def test_adapt_resume_refuses_other_inputs(sample, sample_cache, pretrained, tmp_path, capsys):
    """Another base, a labels file with other rows, or renamed classes continued silently (transfer refuses)."""
    rows = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()]
    labels = tmp_path / "kind.csv"
    labels.write_text("anchor_id,kind\n" + "".join(f"{r['anchor_id']},{r['meta']['kind']}\n" for r in rows))
    args = ["adapt", "--labels", labels, "--target", "kind", "--out", tmp_path / "a", "--epochs", "2",
            "--batch-size", "16", "--rank", "2"]
    assert run_cli(*args, "--pretrained", pretrained) == 0
    (tmp_path / "a" / "outcome.json").unlink()
    other = tmp_path / "base2"
    assert run_cli("pretrain", "--features", sample_cache, "--out", other, *TINY, "--epochs", "1", "--seed", "5") == 0
    capsys.readouterr()
    assert run_cli(*args, "--pretrained", other, "--resume") == 2
    assert "--resume with other inputs than the saved run (pretrained changed" in capsys.readouterr().err
    kinds = sorted({r["meta"]["kind"] for r in rows})
    labels.write_text("anchor_id,kind\n" + "".join(
        f"{r['anchor_id']},{'renamed' if r['meta']['kind'] == kinds[0] else r['meta']['kind']}\n" for r in rows))
    assert run_cli(*args, "--pretrained", pretrained, "--resume") == 2
    assert "(classes, labels changed" in capsys.readouterr().err
    labels.write_text("anchor_id,kind\n" + "".join(f"{r['anchor_id']},{r['meta']['kind']}\n" for r in rows[5:]))
    assert run_cli(*args, "--pretrained", pretrained, "--resume") == 2        # fewer rows, the same classes
    assert "(labels changed by content)" in capsys.readouterr().err


@pytest.mark.slow
def test_a_stopped_run_says_how_to_continue(sample_cache, tmp_path):
    """SIGTERM (a scheduler's stop) or Ctrl-C printed nothing; now a line names the checkpoint and --resume."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "anchor_embed.cli", "pretrain", "--features", str(sample_cache), "--out", str(run),
           *TINY, "--epochs", "400"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while p.poll() is None and not (run / "checkpoints" / "latest.json").is_file() and time.time() - t0 < 120:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130, err
    assert "stopped; " in err and "keeps the checkpoint of epoch" in err and "with --resume to continue" in err, err


def test_resume_takes_the_saved_settings_and_the_flags_given_change_only_theirs(two_epochs, sample, pretrained,
                                                                                  sample_cache, tmp_path, capsys):
    """--resume without --config resolves from the run's own config.json: a resume need not repeat every flag
    (it was refused as 'settings that differ' for each one left out), and a flag given still must agree."""
    run = _copy(two_epochs, tmp_path)
    assert run_cli("pretrain", "--features", sample_cache, "--out", run, "--resume", "--batch-size", "8") == 2
    assert "differ from the saved run (batch_size)" in capsys.readouterr().err
    saved = json.loads((run / "config.json").read_text())       # as if started on a GPU machine: this one has none
    (run / "config.json").write_text(json.dumps({**saved, "device": "cuda", "threads": 64}))
    assert run_cli("pretrain", "--features", sample_cache, "--out", run, "--resume", "--epochs", "3") == 0
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["device"], cfg["threads"]) == ("auto", saved["threads"])     # hardware: this machine's defaults
    assert (cfg["d_model"], cfg["batch_size"], cfg["epochs"], cfg["schedule"]) == (32, 16, 3, "constant")
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    args = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", tmp_path / "t"]
    assert run_cli(*args, "--batch-size", "16", "--epochs", "1", "--lr", "0.001", "--param", "temperature=0.2",
                   "--holdout-frac", "0.2", "--schedule", "constant", "--patience", "0") == 0
    (tmp_path / "t" / "outcome.json").unlink()
    assert run_cli(*args, "--resume", "--epochs", "2") == 0
    cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    assert (cfg["lr"], cfg["params"]["temperature"], cfg["holdout_frac"], cfg["epochs"]) == (0.001, 0.2, 0.2, 2)
    # another stage's folder is not read for settings (its config named a missing key of the wrong stage): it is
    # refused as another stage's run before any settings are read
    capsys.readouterr()
    assert run_cli("adapt", "--pretrained", pretrained, "--labels", sample / "ids.keys.txt", "--out", run,
                   "--resume") == 2
    assert capsys.readouterr().err.strip() == f"error: --out {run}: holds a pretrain run, not an adapt run; give --out " \
                                              "a folder of its own"
