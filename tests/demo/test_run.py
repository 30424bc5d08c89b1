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
