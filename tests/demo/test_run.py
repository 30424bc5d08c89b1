"""`anchor-embed demo` runs every stage on its own sample, from the CLI, as the README's first command does."""

import json

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_cli_demo_runs_every_stage(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_cli("demo", "--out", out, "--n", "60") == 0
    err = capsys.readouterr().err
    assert "similar s0000 ->" in err and "done; artefacts in" in err
    rows = json.loads((out / "evaluation" / "evaluation.json").read_text())["rows"]
    assert [r["model"] for r in rows][-2:] == ["pretrain", "transfer"] and rows[0]["model"] == "frozen backbones"
    for artefact in ("vectors/vectors.npy", "index/index.faiss", "vectors/clusters.jsonl", "transfer/pairs.jsonl"):
        assert (out / artefact).is_file(), artefact


def test_demo_reuses_only_runs_of_this_code(tmp_path, capsys):
    """A run folder made by this code is resumed (and said so); one made by other code is trained again."""
    from anchor_embed.demo.run import resume_if_same_code
    from anchor_embed.fingerprint import code_digest

    run = tmp_path / "pretrain"
    assert resume_if_same_code(run) is False
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"code": code_digest()}))
    assert resume_if_same_code(run) is True and run.exists()
    assert "made by this code" in capsys.readouterr().err
    (run / "run.json").write_text(json.dumps({"code": "0123456789abcdef"}))
    assert resume_if_same_code(run) is False and not run.exists()
    assert "made by other code; training it again" in capsys.readouterr().err
