"""The command line as a user meets it: every way in lists every command; bad settings are one line."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from anchor_embed.cli.app import app
from tests.conftest import run_cli

COMMANDS = ["features", "pretrain", "transfer", "evaluate", "embed", "similar", "dedup", "demo", "index", "scatter"]


@pytest.mark.slow
@pytest.mark.parametrize("entry", [["-m", "anchor_embed.cli.app"], ["-m", "anchor_embed.cli"]])
def test_module_entry_points_list_every_command(entry):
    out = subprocess.run([sys.executable, *entry, "--help"], capture_output=True, text=True, check=True).stdout
    assert all(f" {c} " in out for c in COMMANDS), out
    sub = subprocess.run([sys.executable, *entry, "features", "--help"], capture_output=True, text=True)
    assert sub.returncode == 0 and "--streamers" in sub.stdout


def test_cli_runner_sees_every_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and all(f" {c} " in result.output for c in COMMANDS)
    help_text = CliRunner().invoke(app, ["transfer", "--help"], env={"COLUMNS": "250"}).output
    for name in ("contrastive", "feature", "rkd", "cluster", "nickname"):   # registered names in the help
        assert name in help_text


@pytest.mark.slow
def test_similar_by_id_never_imports_torch(sample, pretrained, tmp_path):
    vec, idx = tmp_path / "vec", tmp_path / "idx"
    assert run_cli("embed", "--model", pretrained, "--streamers", sample / "streamers.jsonl", "--out", vec) == 0
    assert run_cli("index", "build", vec, "--out", idx) == 0
    code = ("import sys; from anchor_embed.cli.app import main; "
            f"main(['similar', 's0001', '-k', '3', '--index', {str(idx)!r}, '--json']); "
            "assert 'torch' not in sys.modules, 'similar imported torch'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["anchor_id"] == "s0001"


@pytest.mark.parametrize("settings, needle", [
    ({"epoch": 3}, "unknown key 'epoch'"),
    ({"method": "contrastiv"}, "key 'method'"),
    ({"method": "contrastive", "params": {"temprature": 0.1}}, "unknown key 'params.temprature'"),
    ({"method": "feature", "params": {"feature_loss": "l1"}}, "key 'params.feature_loss'"),
    ({"filter": "contnet"}, "key 'filter'"),
    ({"quantile": 1.5}, "key 'quantile'"),
])
def test_transfer_config_file_mistakes_are_one_line(sample, pretrained, tmp_path, capsys, settings, needle):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(settings))
    code = run_cli("transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", tmp_path / "t",
                   "--config", cfg)
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert str(cfg) in err
    if settings.get("method") == "contrastiv":
        assert "'contrastiv'" in err            # the value given is named too
    assert not (tmp_path / "t").exists()         # nothing written


def test_transfer_flag_mistakes(sample, pretrained, tmp_path, capsys):
    base = ["transfer", "--pretrained", pretrained, "--id-emb", sample / "ids.npy", "--out", tmp_path / "t"]
    assert run_cli(*base, "--method", "contrastiv") == 2
    assert "contrastiv" in capsys.readouterr().err
    assert run_cli(*base, "--method", "rkd", "--temperature", "0.1") == 2      # rkd has no temperature
    err = capsys.readouterr().err
    assert "params.temperature" in err and "distance_weight" in err
    assert run_cli(*base, "--param", "novalue") == 2
    assert "expected key=value" in capsys.readouterr().err


def test_pretrain_config_mistakes(sample_cache, tmp_path, capsys):
    for settings, needle in (({"epochs": 0}, "key 'epochs'"), ({"nope": 1}, "unknown key 'nope'"),
                             ({"max_texts": "many"}, "key 'max_texts'")):
        (tmp_path / "c.json").write_text(json.dumps(settings))
        assert run_cli("pretrain", "--features", sample_cache, "--out", tmp_path / "r", "--config",
                       tmp_path / "c.json") == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1
    (tmp_path / "c.json").write_text("{not json")
    assert run_cli("pretrain", "--features", sample_cache, "--out", tmp_path / "r", "--config", tmp_path / "c.json") == 2
    assert "line 1: malformed JSON" in capsys.readouterr().err


def test_config_file_then_flags(sample_cache, tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"d_model": 32, "out_dim": 16, "layers": 1, "lr": 0.01}))
    assert run_cli("pretrain", "--features", sample_cache, "--out", tmp_path / "r", "--config", tmp_path / "c.json",
                   "--epochs", "1", "--batch-size", "16", "--lr", "0.002") == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["lr"] == 0.002 and saved["d_model"] == 32 and saved["epochs"] == 1   # flags win over the file


def test_version_quiet_and_every_option_shows_its_default(sample_cache, tmp_path, capsys):
    import click
    import typer

    from anchor_embed import __version__

    assert run_cli("--version") == 0 and capsys.readouterr().out.strip() == f"anchor-embed {__version__}"
    root = typer.main.get_command(app)
    ctx = click.Context(root)
    missing = []

    def walk(cmd, path):
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name])
            return
        for p in cmd.params:
            if getattr(p, "param_type_name", "") != "option" or p.name == "help" or p.required:
                continue
            if not ((p.show_default is not False and p.default is not None) or "default" in (p.help or "").lower()
                    or "(required)" in (p.help or "")):
                missing.append(f"{' '.join(path)} {p.opts[0]}")
    walk(root, [])
    assert not missing, missing
    capsys.readouterr()
    assert run_cli("--quiet", "pretrain", "--features", sample_cache, "--out", tmp_path / "q", "--epochs", "1",
                   "--batch-size", "16", "--d-model", "16", "--out-dim", "8", "--layers", "1") == 0
    assert capsys.readouterr().err == ""
    assert run_cli("pretrain", "--features", sample_cache, "--out", tmp_path / "q2", "--epochs", "1", "--batch-size",
                   "16", "--d-model", "16", "--out-dim", "8", "--layers", "1", "-q") == 0   # after the command too
    assert capsys.readouterr().err == ""
    assert run_cli("pretrain", "--features", sample_cache, "--out", tmp_path / "q3", "--epochs", "1", "--batch-size",
                   "16", "--d-model", "16", "--out-dim", "8", "--layers", "1") == 0         # and only when given
    assert "pretrain" in capsys.readouterr().err


def test_outputs_follow_the_umask_and_toml_configs_work(sample_cache, tmp_path):
    import os
    import stat

    (tmp_path / "c.toml").write_text('d_model = 16\nout_dim = 8\nlayers = 1\nepochs = 1\nbatch_size = 16\n')
    old = os.umask(0o022)
    try:
        assert run_cli("pretrain", "--features", sample_cache, "--out", tmp_path / "r", "--config",
                       tmp_path / "c.toml") == 0
    finally:
        os.umask(old)
    run = tmp_path / "r"
    assert json.loads((run / "config.json").read_text())["d_model"] == 16
    ckpt = next((run / "checkpoints").glob("epoch-*"))
    for f in (run / "model.safetensors", run / "config.json", *ckpt.iterdir()):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o755
    (tmp_path / "bad.toml").write_text("epochs = [")
    assert run_cli("pretrain", "--features", sample_cache, "--out", tmp_path / "r2", "--config",
                   tmp_path / "bad.toml") == 2


def test_transfer_can_start_from_a_transfer_run(sample, pretrained, tmp_path):
    """A taught model taught further: its views come from the pretraining behind it, its config is not misread."""
    first, second = tmp_path / "t1", tmp_path / "t2"
    base = ["--id-emb", sample / "ids.npy", "--epochs", "1", "--batch-size", "16"]
    assert run_cli("transfer", "--pretrained", pretrained, "--out", first, *base) == 0
    assert run_cli("transfer", "--pretrained", first, "--out", second, *base) == 0
    assert json.loads((second / "run.json").read_text())["pretrained"] == str(first)
    assert (second / "model.safetensors").is_file()


def test_every_flag_the_readme_names_is_an_option_of_its_command():
    """Each `--flag` in the README's command table is an option of the command its span names (`embed
    --adapter`, `dedup --reviewed`; of one of its subcommands for a group), or else of the row's own command:
    the table cannot drift from the CLI."""
    import re
    from pathlib import Path

    import click
    import typer

    root = typer.main.get_command(app)
    ctx = click.Context(root)
    options: dict[str, set[str]] = {}

    def walk(cmd, path):
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name])
        options.setdefault(" ".join(path), set()).update(o for p in cmd.params for o in [*p.opts, *p.secondary_opts])
    walk(root, [])

    def command_of(words: list[str]) -> str | None:
        """The longest command path the words start with."""
        for n in range(min(3, len(words)), 0, -1):
            if " ".join(words[:n]) in options:
                return " ".join(words[:n])
        return None

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `anchor-embed ")]
    assert len(rows) >= 15
    wrong = []
    for row in rows:
        own_words = row.split("`")[1].split()[1:]
        own = command_of([w for w in own_words if not w.isupper() and not w.startswith(("-", "["))])
        assert own, row[:60]
        for span in re.findall(r"`([^`]*)`", row):
            words = span.removeprefix("anchor-embed ").split()
            cmd = command_of(words) or own
            pool = options[cmd].union(*(o for c, o in options.items() if c.startswith(f"{cmd} ")))  # a group: any
            wrong += [f"{cmd} {f}" for f in re.findall(r"--[a-z][a-z0-9-]*", span) if f not in pool]
    assert not wrong, wrong
