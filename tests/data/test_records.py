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


def test_warehouse_parquet_folder_with_its_own_column_names(tmp_path, capsys):
    """BIGINT ids, meta as JSON text or struct, part files in a folder, the table's own names, extra columns."""
    parts = tmp_path / "export"
    parts.mkdir()
    rows = [{"uid": 1001, "bio": "first", "labels": ["a"], "meta": '{"lang": "en"}', "dt": "2026-11-01"},
            {"uid": 1002, "bio": "second", "labels": None, "meta": None, "dt": "2026-11-01"}]
    pq.write_table(pa.Table.from_pylist(rows), parts / "part-00000.parquet")
    pq.write_table(pa.Table.from_pylist([{"uid": 1003, "bio": "third", "labels": ["b"],
                                          "meta": '{"lang": "zh"}', "dt": "2026-11-02"}]), parts / "part-00001.parquet")
    (parts / "_SUCCESS").write_text("")
    cols = {"anchor_id": "uid", "profile": "bio", "tags": "labels"}
    records, report = read_streamers(parts, columns=cols)
    assert [(r.anchor_id, r.profile, r.tags, r.meta) for r in records] == [
        ("1001", "first", ["a"], {"lang": "en"}), ("1002", "second", [], {}), ("1003", "third", ["b"], {"lang": "zh"})]
    assert report.notes == [f"{parts / 'part-00000.parquet'}: columns not read: dt"]
    assert [r.anchor_id for r in read_streamers(tmp_path / "export" / "part-*.parquet", columns=cols)[0]] == \
        ["1001", "1002", "1003"]
    shards = [read_streamers(parts, columns=cols, shard=(i, 2))[0] for i in range(2)]   # row groups split
    assert sorted(r.anchor_id for s in shards for r in s) == ["1001", "1002", "1003"] and all(shards)
    with pytest.raises(AnchorEmbedError, match="no 'anchor_id' column"):
        read_streamers(parts)
    with pytest.raises(AnchorEmbedError, match=r"no column 'biography' \(--columns profile=biography\)"):
        read_streamers(parts, columns={**cols, "profile": "biography"})     # misspelt: not an empty field


def test_a_folder_or_glob_of_jsonl_parts_is_named_as_such(tmp_path):
    """Part files are read as Parquet: JSONL parts get a line saying so, not 'no Parquet files' or a bad magic."""
    parts = tmp_path / "jdir"
    parts.mkdir()
    write_jsonl(parts / "part-0.jsonl", [{"anchor_id": "a"}])
    for given in (parts, parts / "*.jsonl"):
        with pytest.raises(AnchorEmbedError, match="part-0.jsonl is JSONL; give one JSONL file"):
            read_streamers(given)


def test_a_byte_order_mark_loses_no_row_key_or_column(tmp_path):
    """Spreadsheet and Windows exports start with a UTF-8 byte-order mark: the first record, key, id and label
    column are read as if it were not there."""
    from anchor_embed.data.key_file import read_keys
    from anchor_embed.evaluation.probe import read_labels

    bom = "\ufeff"
    path = tmp_path / "s.jsonl"
    path.write_text(bom + json.dumps({"anchor_id": "a", "profile": "x"}) + "\n" + json.dumps({"anchor_id": "b"})
                    + "\n", encoding="utf-8")
    records, report = read_streamers(path, strict=True)
    assert [r.anchor_id for r in records] == ["a", "b"] and report.kept == 2
    (tmp_path / "k.txt").write_text(bom + "a\nb\n", encoding="utf-8")
    assert read_keys(tmp_path / "k.txt") == ["a", "b"]
    (tmp_path / "l.csv").write_text(bom + "anchor_id,y\na,1\nb,2\n", encoding="utf-8")
    assert read_labels(tmp_path / "l.csv", "y", "regress")[0] == {"a": 1.0, "b": 2.0}


@pytest.mark.parametrize("bad_id, why", [("a\nb", "U+000A"), ("a\u2028b", "U+2028"), ("a\x85b", "U+0085"),
                                         ("a\tb", "U+0009"), ("   ", "blank"),
                                         (" x ", "whitespace")])
def test_ids_that_would_break_key_files_are_refused(tmp_path, bad_id, why):
    path = write_jsonl(tmp_path / "s.jsonl", [GOOD, {**GOOD, "anchor_id": bad_id}])
    records, report = read_streamers(path)
    assert [r.anchor_id for r in records] == [GOOD["anchor_id"]]
    assert "line 2" in report.problems[0] and why in report.problems[0]


def test_bytes_that_are_not_utf8_are_a_bad_row(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"anchor_id": "x\xff"}\n')
    records, report = read_streamers(path)
    assert len(records) == 1 and report.problems == [f"{path}: line 2: not UTF-8 (byte 0xff at column 17)"]


def test_a_dataframe_with_missing_cells_numpy_ids_and_list_columns_reads_as_records():
    """pandas puts NaN in a missing text cell, numpy int64 in an integer id, numpy arrays in a list column read
    from Parquet: each was a validation error ('Input should be a valid string' / 'a valid list')."""
    import numpy as np
    import pandas as pd

    from anchor_embed.data.records import StreamerRecord

    table = pa.Table.from_pylist([{"anchor_id": 7, "nickname": "n", "profile": None, "tags": ["a", "b"]},
                                  {"anchor_id": 8, "nickname": None, "profile": "p", "tags": None}])
    df = table.to_pandas()
    assert isinstance(df["tags"][0], np.ndarray) and isinstance(df["anchor_id"][0], np.integer)
    rows = [StreamerRecord.model_validate(r) for r in df.to_dict(orient="records")]
    assert [(r.anchor_id, r.nickname, r.profile, r.tags) for r in rows] == [("7", "n", "", ["a", "b"]),
                                                                             ("8", "", "p", [])]
    raw = {"anchor_id": np.int64(12345), "profile": float("nan"), "texts": np.array(["t"]), "meta": float("nan")}
    rec = StreamerRecord.model_validate(raw)
    assert (rec.anchor_id, rec.profile, rec.texts, rec.meta) == ("12345", "", ["t"], {})
    for bad in (np.bool_(True), True, 1.5):                  # not ids: still refused
        with pytest.raises(ValueError):
            StreamerRecord.model_validate({"anchor_id": bad})
    assert pd.isna(df["nickname"][1])


def test_jsonl_reads_the_callers_names_as_a_table_does(tmp_path):
    """--id-column and --columns were ignored for JSONL (documented for any input): `profile=nickname` had no
    effect and a file keyed by `uid` was 20 records skipped as 'missing anchor_id'."""
    src = tmp_path / "s.jsonl"
    src.write_text('{"uid": 7, "bio": "first", "profile": "not this", "tags": ["a"]}\n'
                   '{"uid": "b", "bio": "second"}\n')
    cols = {"anchor_id": "uid", "profile": "bio"}
    records, report = read_streamers(src, columns=cols)
    assert [(r.anchor_id, r.profile) for r in records] == [("7", "first"), ("b", "second")] and not report.skipped
    with pytest.raises(AnchorEmbedError, match=r"s.jsonl: no record has 'biography' \(--columns profile=biography\)"):
        read_streamers(src, columns={**cols, "profile": "biography"})
    with pytest.raises(AnchorEmbedError, match=r"no record has 'id' \(--id-column\)"):
        read_streamers(src, columns={"anchor_id": "id"})
    # a shard holding no row (more shards than rows, as `embed --shard 3/4` of 2 records) sees no column: not refused
    assert read_streamers(src, columns=cols, shard=(3, 4))[0] == []
