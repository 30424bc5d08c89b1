"""The serving jobs end to end from the CLI, as a user calls them: embed, index, similar, dedup, scatter."""

import json

import pytest

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.serving.index import build_index
from tests.conftest import SMALL, run_cli


@pytest.mark.slow
def test_cli_embed_index_similar_dedup_scatter(sample, sample_cache, pretrained, tmp_path, capsys):
    run = pretrained
    recs = sample / "streamers.jsonl"
    vec = tmp_path / "vec"
    assert run_cli("embed", "--model", run, "--streamers", recs, "--out", vec, "--shard", "1/2") == 0
    assert not (vec / "meta.json").exists() and (vec / "shards" / "00001-of-00002" / "done").is_file()
    assert run_cli("embed", "--model", run, "--streamers", recs, "--out", vec, "--shard", "0/2") == 0
    meta = json.loads((vec / "meta.json").read_text())
    keys = (vec / "keys.txt").read_text().split()
    n = len(recs.read_text().splitlines())
    assert meta["count"] == len(keys) == n and set(keys) == {json.loads(x)["anchor_id"] for x in recs.read_text().splitlines()}
    capsys.readouterr()
    assert run_cli("embed", "--model", run, "--streamers", recs, "--out", vec, "--shard", "0/2") == 0
    assert "already done" in capsys.readouterr().err           # a rerun skips finished shards
    idx = tmp_path / "idx"
    assert run_cli("index", "build", vec, "--out", idx) == 0
    capsys.readouterr()
    assert run_cli("similar", "s0000", "-k", "5", "--index", idx, "--json") == 0
    row = json.loads(capsys.readouterr().out)
    assert row["anchor_id"] == "s0000" and len(row["neighbours"]) == 5
    assert all(n["anchor_id"] != "s0000" for n in row["neighbours"])
    assert run_cli("similar", "s000", "--index", idx) == 1
    assert "did you mean" in capsys.readouterr().err
    # many ids from a file, and a streamer not in the index given as a record: the same answers as by id
    (tmp_path / "ids.txt").write_text("s0001\ns0002\ns0001\n")     # a repeat is answered once, and said
    first = json.loads(recs.read_text().splitlines()[0])
    (tmp_path / "new.jsonl").write_text(json.dumps({**first, "anchor_id": "brand_new"}) + "\n")
    capsys.readouterr()
    assert run_cli("similar", "s0000", "--ids-file", tmp_path / "ids.txt", "--record", tmp_path / "new.jsonl",
                   "--media-root", sample, "-k", "5", "--index", idx, "--json") == 0
    got = capsys.readouterr()
    rows = [json.loads(x) for x in got.out.splitlines()]
    assert [r["anchor_id"] for r in rows] == ["s0000", "s0001", "s0002", "brand_new"]
    assert "1 repeated id(s) answered once" in got.err
    twin = {n["anchor_id"]: n["score"] for n in rows[3]["neighbours"]}
    assert rows[0] == row and twin["s0000"] > 0.999   # the record is s0000's content: found at cosine ~1
    # the record's id named as well, as a user would: answered once, from the record, not "not in the index"
    assert run_cli("similar", "brand_new", "--record", tmp_path / "new.jsonl", "--media-root", sample, "-k", "5",
                   "--index", idx, "--json") == 0
    got = capsys.readouterr()
    assert [json.loads(x) for x in got.out.splitlines()] == [rows[3]] and "not in the index" not in got.err
    # --explain for a record: the per-modality cosines an id gets (they were left out), in the order asked
    assert run_cli("similar", "brand_new", "s0000", "--record", tmp_path / "new.jsonl", "--media-root", sample,
                   "-k", "5", "--index", idx, "--json", "--explain") == 0
    new_row, by_id = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert new_row["anchor_id"] == "brand_new" and by_id["anchor_id"] == "s0000"
    why = {n["anchor_id"]: n["explain"] for n in by_id["neighbours"]}
    both = [nb for nb in new_row["neighbours"] if nb["anchor_id"] in why]
    assert len(both) >= 3                       # s0000's content: the same cosines to the same neighbours
    for nb in both:
        for m in ("text", "frames", "tags"):
            got_m, want = nb["explain"][m], why[nb["anchor_id"]][m]
            assert (got_m is None) == (want is None) and (want is None or abs(got_m - want) < 1e-2), (m, nb)
        assert nb["explain"]["shared_tags"] == why[nb["anchor_id"]]["shared_tags"]
    # a record re-describing an indexed streamer is not its own neighbour, as a lookup by id is not
    (tmp_path / "again.jsonl").write_text(json.dumps({**first, "profile": "cooking every night"}) + "\n")
    assert run_cli("similar", "--record", tmp_path / "again.jsonl", "--media-root", sample, "-k", "5",
                   "--index", idx, "--json") == 0
    assert "s0000" not in {n["anchor_id"] for n in json.loads(capsys.readouterr().out)["neighbours"]}
    assert run_cli("similar", "s0000", "-k", "3", "--index", idx) == 0               # the table view, with nicknames
    assert first["nickname"] in capsys.readouterr().out
    assert run_cli("dedup", vec, "--threshold", "0.99") == 0
    groups = [json.loads(x) for x in (vec / "dedup-0.99.jsonl").read_text().splitlines()]
    assert any({"s0000", "dup00"} <= set(g["members"]) for g in groups)   # the planted copy is found
    assert run_cli("scatter", vec, "--clusters", "6") == 0   # the spelling; `scatter assign` is the same
    short = (vec / "clusters.jsonl").read_text()
    assert len(short.splitlines()) == n
    assert run_cli("scatter", "assign", vec, "--clusters", "6") == 0 and (vec / "clusters.jsonl").read_text() == short
    (tmp_path / "list.txt").write_text("s0000\ndup00\ns0001\n")
    assert run_cli("scatter", "rerank", tmp_path / "list.txt", "--clusters", vec / "clusters.jsonl") == 0
    got = capsys.readouterr()
    assert sorted(got.out.split()[-3:]) == ["dup00", "s0000", "s0001"] and "clashes within a window of 3" in got.err
    other = tmp_path / "run2"
    assert run_cli("pretrain", "--features", sample_cache, "--out", other, *SMALL, "--seed", "5") == 0
    with pytest.raises(AnchorEmbedError, match="vectors were made by model"):
        build_index(vec, tmp_path / "idx2", model=other)
