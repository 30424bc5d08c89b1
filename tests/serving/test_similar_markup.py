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
