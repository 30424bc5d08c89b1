import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anchor_embed.data.records import read_streamers
from anchor_embed.errors import AnchorEmbedError
from tests.conftest import run_cli, write_jsonl

GOOD = {"anchor_id": "a1", "nickname": "n", "profile": "p", "texts": ["t"], "tags": ["x"], "frames": []}


def _bad_file(tmp_path):
    return write_jsonl(tmp_path / "s.jsonl", [
        GOOD,
        '{"anchor_id": "a2", "nickname": ',                       # line 2: malformed
        {"nickname": "no id"},                                     # line 3: missing id
        {"anchor_id": "", "nickname": "empty"},                    # line 4: empty id
        {**GOOD, "nickname": "dup"},                               # line 5: duplicate a1
        {"anchor_id": "a3", "tags": "not-a-list"},                 # line 6: wrong type
        {"anchor_id": "a4", "nickname": 5},                        # line 7: wrong type
        {"anchor_id": "   "},                                      # line 8: blank id
        {"anchor_id": "a5", "profile": None, "tags": None},        # line 9: nulls are empty
        "[1, 2]",                                                  # line 10: not an object
    ])


def test_bad_rows_are_reported_with_line_and_good_rows_kept(tmp_path):
    records, report = read_streamers(_bad_file(tmp_path))
    assert [r.anchor_id for r in records] == ["a1", "a5"]
    assert records[0].nickname == "n"            # the first a1 wins over the duplicate
    assert report.skipped == 8 and report.kept == 2
    text = "\n".join(report.problems)
    for needle in ["line 2: malformed JSON", "line 3: missing or empty anchor_id", "line 4: missing or empty",
                   "line 5: duplicate anchor_id 'a1' (first at line 1)", "line 6: field 'tags'",
                   "line 7: field 'nickname'", "line 8: field 'anchor_id'", "line 10: expected a JSON object"]:
        assert needle in text
    assert all(p.startswith(str(tmp_path / "s.jsonl")) for p in report.problems)
    assert "2 kept, 8 skipped" in report.summary()


def test_strict_stops_at_first_bad_row(tmp_path):
    with pytest.raises(AnchorEmbedError, match=r"s.jsonl: line 2: malformed JSON.*--strict"):
        read_streamers(_bad_file(tmp_path), strict=True)


def test_parquet_records(tmp_path):
    table = pa.Table.from_pylist([GOOD, {**GOOD, "anchor_id": "a2", "tags": ["y", "z"]}, {**GOOD, "anchor_id": None}])
    pq.write_table(table, tmp_path / "s.parquet")
    records, report = read_streamers(tmp_path / "s.parquet")
    assert [r.tags for r in records] == [["x"], ["y", "z"]]
    assert report.problems == [f"{tmp_path / 's.parquet'}: row 3: missing or empty anchor_id"]


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(AnchorEmbedError, match="no such file"):
        read_streamers(tmp_path / "nope.jsonl")
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(AnchorEmbedError, match="no valid streamer records"):
        read_streamers(tmp_path / "e.jsonl")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(AnchorEmbedError, match="not a readable Parquet file"):
        read_streamers(tmp_path / "bad.parquet")


def test_cli_bad_input_is_one_line_no_traceback(tmp_path, capsys):
    code = run_cli("features", "--streamers", _bad_file(tmp_path), "--out", tmp_path / "c", "--strict")
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "line 2: malformed JSON" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c" / "meta.json").exists()


def test_roundtrip_unicode(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"anchor_id": "中文", "profile": "唱歌主播"}])
    (r,), _ = read_streamers(path)
    assert r.anchor_id == "中文" and json.loads(r.model_dump_json())["profile"] == "唱歌主播"
