"""The fast `similar` path and the typer command take the same arguments and answer the same way."""

import subprocess
import sys
from pathlib import Path

import pytest

import anchor_embed.cli.lookup as lookup

ARGVS = [
    ["s1"], ["s1", "s2", "-k", "5"], ["--index", "/x/idx", "s1", "--json"], ["s1", "--explain", "--json", "-k", "3"],
    ["--ids-file", "ids.txt", "--index", "i"], ["--record", "r.jsonl", "--media-root", "m", "-k", "7"],
    ["s1", "--quiet"], ["--record", "r.jsonl", "--strict", "-q"],
]


@pytest.mark.parametrize("argv", ARGVS)
def test_argparse_and_typer_read_the_same_arguments(argv, monkeypatch):
    from anchor_embed.cli.app import main

    seen = []
    monkeypatch.setattr(lookup, "run_similar", lambda *a: seen.append(a) or 0)
    main(["similar", *argv])                                   # the typer command
    fast = lookup.parse(argv)
    assert fast is not None
    typer_args = dict(zip(["anchor_ids", "k", "index", "ids_file", "record", "media_root", "as_json", "explain",
                           "strict"], seen[0], strict=True))
    assert fast.pop("quiet") == ("--quiet" in argv or "-q" in argv)    # the root's flag, not run_similar's
    norm = {k: (Path(v) if isinstance(v, str) and k in ("index", "ids_file", "record", "media_root") else v)
            for k, v in typer_args.items()}
    assert {**norm, "anchor_ids": list(norm["anchor_ids"])} == fast


def test_help_and_unknown_flags_go_to_typer():
    assert lookup.parse(["--help"]) is None and lookup.parse(["s1", "--bogus"]) is None
    p = subprocess.run([sys.executable, "-m", "anchor_embed.cli.lookup", "similar", "--help"], capture_output=True,
                       text=True)
    assert p.returncode == 0 and "--explain" in p.stdout
    p = subprocess.run([sys.executable, "-m", "anchor_embed.cli.lookup", "similar", "--index", "/nope", "s1"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.strip() == "error: /nope: no index here (run `anchor-embed index build`)"


def test_explain_table_fits_80_columns_and_never_cuts_an_id(sample, pretrained, tmp_path, capsys, monkeypatch):
    """On 80 columns the --explain table cut the anchor_id column to 'anchor…' (the one cell users copy)."""
    import json

    from tests.conftest import run_cli, write_jsonl

    rows = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()][:30]
    write_jsonl(tmp_path / "s.jsonl", [{**r, "anchor_id": f"a-rather-long-streamer-id-{i:03d}"}
                                       for i, r in enumerate(rows)])
    assert run_cli("embed", "--model", pretrained, "--streamers", tmp_path / "s.jsonl", "--out", tmp_path / "v",
                   "--media-root", sample) == 0
    assert run_cli("index", "build", tmp_path / "v", "--out", tmp_path / "i") == 0
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    assert run_cli("similar", "a-rather-long-streamer-id-000", "-k", "5", "--index", tmp_path / "i", "--explain") == 0
    out = capsys.readouterr().out
    cells = [line.split("│")[2].strip() for line in out.splitlines() if line.startswith("│")]
    assert max(len(line) for line in out.splitlines()) <= 80 and "shared" in out
    assert len([c for c in cells if c.startswith("a-rather-long-streamer-id-0")]) == 5, out
