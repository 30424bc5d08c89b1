"""`anchor-embed demo` runs every stage on its own sample, from the CLI, as the README's first command does."""

import json

import pytest

from anchor_embed.errors import AnchorEmbedError
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


def test_demo_refuses_a_folder_of_the_users_before_any_work(tmp_path, capsys):
    """`demo --out` a folder holding a user's file went on and mixed its outputs into it (and would have removed a
    run folder of theirs named `pretrain`); now one line, nothing written. A new or empty folder, or an earlier
    demo's output (its demo.json, or, from before it, the demo's folders with its sample) is taken."""
    from anchor_embed.demo.run import MARK, check_out

    mine = tmp_path / "mine"
    (mine / "pretrain").mkdir(parents=True)
    (mine / "pretrain" / "run.json").write_text('{"code": "theirs"}')
    (mine / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert run_cli("demo", "--out", mine, "--n", "20") == 2
    assert capsys.readouterr().err == (f"error: {mine}: a folder holding files of its own (notes.txt, pretrain), not "
                                       "an earlier demo's output; give --out a new or empty folder\n")
    assert sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*")) == ["notes.txt", "pretrain",
                                                                               "pretrain/run.json"]
    assert run_cli("demo", "--out", mine / "notes.txt") == 2
    assert "notes.txt: a file; --out takes a folder" in capsys.readouterr().err
    check_out(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty")
    older = tmp_path / "older"                  # made before demo.json: the demo's folders and its sample
    (older / "sample").mkdir(parents=True)
    (older / "features").mkdir()
    for name in ("streamers.jsonl", "ids.npy", "interactions.csv"):
        (older / "sample" / name).write_text("")
    check_out(older)
    (older / "notes.txt").write_text("mine")
    with pytest.raises(AnchorEmbedError, match="not an earlier demo's output"):
        check_out(older)
    (older / MARK).write_text("{}")             # a demo's own, whatever was added to it since
    check_out(older)
