"""Streamers' data is shown as written, never read as rich markup: `similar`'s table, and the status lines of
`scatter rerank` and `dedup --reviewed` that name ids."""

import json

import numpy as np

from tests.conftest import run_cli, write_jsonl

BRACKETED = [
    {"anchor_id": "m1", "nickname": "[TTV] Ninja [/]", "profile": "Fortnite pro", "tags": ["fortnite", "english"]},
    {"anchor_id": "m2", "nickname": "[bold]Boldy", "profile": "Fortnite casual", "tags": ["fortnite", "english"]},
    {"anchor_id": "[b]m3", "nickname": "plain\\", "profile": "Fortnite and chill", "tags": ["fortnite", "[/tag]"]},
]


def test_similar_table_shows_brackets_as_written(pretrained, tmp_path, capsys, monkeypatch):
    """A nickname "[TTV] Ninja [/]" or a tag "[/tag]" crashed the table with rich's MarkupError, and
    "[bold]Boldy" showed as a bold "Boldy"."""
    monkeypatch.setenv("COLUMNS", "200")                      # one table row a line
    streamers = write_jsonl(tmp_path / "mk.jsonl", BRACKETED)
    assert run_cli("embed", "--model", pretrained, "--streamers", streamers, "--out", tmp_path / "vec") == 0
    assert run_cli("index", "build", tmp_path / "vec", "--out", tmp_path / "idx") == 0
    capsys.readouterr()
    for query in ("m1", "m2", "[b]m3"):
        assert run_cli("similar", query, "-k", "2", "--index", tmp_path / "idx") == 0
    out = capsys.readouterr().out
    assert out.count("[TTV] Ninja [/]") == 3 and out.count("[bold]Boldy") == 3     # two rows and one title each
    assert out.count("[b]m3") == 3 and out.count("[/tag]") == 3
    assert out.count("plain\\") == 3 and "plain\\\\" not in out          # a trailing backslash once, as written


def _vectors(vec, keys):
    from anchor_embed.data.key_file import write_keys

    x = np.random.default_rng(0).normal(size=(len(keys), 8)).astype(np.float32)
    vec.mkdir()
    np.save(vec / "vectors.npy", x / np.linalg.norm(x, axis=1, keepdims=True))
    write_keys(vec / "keys.txt", keys)
    (vec / "meta.json").write_text(json.dumps({"model_hash": "m", "dim": 8, "count": len(keys)}))
    return vec


def test_rerank_and_dedup_lines_name_bracketed_ids_as_written(tmp_path, capsys):
    """`scatter rerank` named a repeated id "[b]x" as 'x' (and "[/x]" crashed it); `dedup --reviewed` the same for
    ids of a review log the vectors lack."""
    ranked = tmp_path / "ranked.txt"
    ranked.write_text("[b]x\na\n[b]x\n[/x]\n[/x]\n")
    clusters = write_jsonl(tmp_path / "clusters.jsonl", [{"anchor_id": "a", "cluster": 0}])
    capsys.readouterr()
    assert run_cli("scatter", "rerank", ranked, "--clusters", clusters) == 0
    got = capsys.readouterr()
    assert got.out.split() == ["[b]x", "a", "[/x]"]
    assert "(e.g. '[/x]', '[b]x')" in got.err.replace("\n", " ")
    vec = _vectors(tmp_path / "vec", [f"s{i}" for i in range(6)])
    log = write_jsonl(tmp_path / "reviews.jsonl", [{"a": "s0", "b": "[b]gone", "verdict": "same_owner"}])
    assert run_cli("dedup", vec, "--reviewed", log, "--out", tmp_path / "dd.jsonl") == 0
    assert "(e.g. '[b]gone')" in capsys.readouterr().err.replace("\n", " ")


HOSTILE = [
    {"anchor_id": "h1", "nickname": "ok\u001b[2K\u001b[1A", "profile": "Fortnite pro", "tags": ["fortnite\u001b[31m"]},
    {"anchor_id": "h2", "nickname": "bell\u0007\rcsi\u009b2J", "profile": "Fortnite casual", "tags": ["\u202eetirovaf"]},
    {"anchor_id": "h3", "nickname": "calm", "profile": "Fortnite and chill", "tags": ["fortnite"]},
]


def test_similar_shows_control_characters_escaped_and_embed_names_them(pretrained, tmp_path, capsys, monkeypatch):
    """A nickname "ok\\x1b[2K\\x1b[1A" went to the terminal raw and erased the table's row above it (CR, BEL were
    dropped by rich without a trace, C1's CSI passed); now the table shows each as its escape, --json leaves no
    character a terminal acts on (the same values when parsed), and embed notes the records that hold one."""
    monkeypatch.setenv("COLUMNS", "200")
    streamers = write_jsonl(tmp_path / "h.jsonl", HOSTILE)
    capsys.readouterr()
    assert run_cli("embed", "--model", pretrained, "--streamers", streamers, "--out", tmp_path / "vec") == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "2 record(s) hold a control character in their nickname or tags (first: line 1, U+001B in nickname of " \
           "'h1'); kept as written" in said
    assert run_cli("index", "build", tmp_path / "vec", "--out", tmp_path / "idx") == 0
    capsys.readouterr()
    assert run_cli("similar", "h3", "-k", "2", "--index", tmp_path / "idx") == 0
    assert run_cli("similar", "h1", "-k", "2", "--index", tmp_path / "idx", "--explain") == 0
    out = capsys.readouterr().out
    acting = [c for c in out if ord(c) < 0x20 and c != "\n" or 0x7f <= ord(c) < 0xa0 or c == "\u202e"]
    assert acting == []
    assert out.count("ok\\x1b[2K\\x1b[1A") == 2 and "bell\\x07\\x0dcsi\\x9b2J" in out         # rows and a title
    assert "fortnite\\x1b[31m" in out and "\\u202eetirovaf" in out
    assert run_cli("similar", "h1", "h2", "h3", "-k", "2", "--index", tmp_path / "idx", "--json") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [c for line in lines for c in line if ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 or c == "\u202e"] == []
    shown = {n["anchor_id"]: (n["nickname"], n["tags"]) for line in lines for n in json.loads(line)["neighbours"]}
    assert shown == {r["anchor_id"]: (r["nickname"], r["tags"]) for r in HOSTILE}             # the data as written
