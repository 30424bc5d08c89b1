import re
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anchor_embed.data.id_embeddings import align_to_streamers, read_id_embeddings
from anchor_embed.errors import AnchorEmbedError


def _npy(tmp_path, vecs, keys):
    np.save(tmp_path / "ids.npy", np.asarray(vecs, np.float32))
    (tmp_path / "ids.keys.txt").write_text("".join(k + "\n" for k in keys))
    return tmp_path / "ids.npy"


def test_bad_rows_skipped_with_counts(tmp_path):
    vecs = [[1, 0], [np.nan, 1], [np.inf, 0], [0, 0], [0, 1], [1, 1]]
    ids, report = read_id_embeddings(_npy(tmp_path, vecs, ["a", "b", "c", "d", "a", "e"]))
    assert ids.keys == ["a", "e"] and ids.vectors.shape == (2, 2)
    assert report.kinds == {"NaN/inf row": 2, "zero row": 1, "duplicate key": 1}
    assert "key 'b': vector has NaN or inf" in "\n".join(report.problems)
    assert "2 kept, 4 skipped" in report.summary()


def test_strict_stops(tmp_path):
    with pytest.raises(AnchorEmbedError, match="key 'b': vector has NaN"):
        read_id_embeddings(_npy(tmp_path, [[1, 0], [np.nan, 0]], ["a", "b"]), strict=True)


def test_count_mismatch_and_missing_keys(tmp_path):
    path = _npy(tmp_path, [[1, 0], [0, 1]], ["a"])
    with pytest.raises(AnchorEmbedError, match=r"ids.npy: 2 vectors but 1 keys"):
        read_id_embeddings(path)
    (tmp_path / "ids.keys.txt").unlink()
    with pytest.raises(AnchorEmbedError, match="keys file .* not found"):
        read_id_embeddings(path)


def test_wrong_dimension(tmp_path):
    path = _npy(tmp_path, [[1, 0], [0, 1]], ["a", "b"])
    with pytest.raises(AnchorEmbedError, match="2-d but 64-d were expected"):
        read_id_embeddings(path, expected_dim=64)
    np.save(tmp_path / "flat.npy", np.ones(3, np.float32))
    (tmp_path / "flat.keys.txt").write_text("a\nb\nc\n")
    with pytest.raises(AnchorEmbedError, match="expected a 2-D array"):
        read_id_embeddings(tmp_path / "flat.npy")


def test_npz_and_parquet(tmp_path):
    np.savez(tmp_path / "ids.npz", keys=np.array(["a", "b"]), vectors=np.eye(2, dtype=np.float32))
    ids, _ = read_id_embeddings(tmp_path / "ids.npz")
    assert ids.keys == ["a", "b"]
    np.savez(tmp_path / "bad.npz", vectors=np.eye(2))
    with pytest.raises(AnchorEmbedError, match="missing array"):
        read_id_embeddings(tmp_path / "bad.npz")
    pq.write_table(pa.table({"anchor_id": ["a", "b", "c"], "emb": [[1.0, 0.0], [0.0, 0.0], None]}),
                   tmp_path / "ids.parquet")
    ids, report = read_id_embeddings(tmp_path / "ids.parquet")
    assert ids.keys == ["a"] and report.skipped == 2
    pq.write_table(pa.table({"anchor_id": ["a", "b"], "emb": [[1.0, 0.0], [1.0]]}), tmp_path / "ragged.parquet")
    with pytest.raises(AnchorEmbedError, match="differ in length"):
        read_id_embeddings(tmp_path / "ragged.parquet")


def test_unknown_ids_counted(tmp_path):
    ids, report = read_id_embeddings(_npy(tmp_path, np.eye(3), ["a", "b", "zz"]))
    aligned = align_to_streamers(ids, ["a", "b", "c"], report)
    assert aligned.keys == ["a", "b"] and report.kinds["unknown id"] == 1
    assert "1 anchor_id(s) not among the streamers, e.g. 'zz'" in report.problems[0]
    ids, report = read_id_embeddings(_npy(tmp_path, np.eye(5), ["a", "x1", "x2", "x3", "b"]))
    align_to_streamers(ids, ["a", "b"], report)      # three rows dropped are three skipped, under one message
    assert report.kinds["unknown id"] == 3 and "2 kept, 3 skipped (3 unknown id)" in report.summary()


def test_warehouse_id_embeddings(tmp_path):
    """BIGINT ids, the table's own id column, part files in a folder, extra scalar columns, unusable keys."""
    parts = tmp_path / "ids"
    parts.mkdir()
    pq.write_table(pa.table({"uid": [7, 8], "vec": [[1.0, 0.0], [0.0, 1.0]], "dt": ["x", "y"]}),
                   parts / "part-0.parquet")
    pq.write_table(pa.table({"uid": [9], "vec": [[1.0, 1.0]], "dt": ["z"]}), parts / "part-1.parquet")
    ids, report = read_id_embeddings(parts, id_column="uid")
    assert ids.keys == ["7", "8", "9"] and ids.vectors.shape == (3, 2) and report.skipped == 0
    with pytest.raises(AnchorEmbedError, match="no 'anchor_id' column"):
        read_id_embeddings(parts)
    keys = tmp_path / "k.keys.txt"
    np.save(tmp_path / "k.npy", np.eye(3, dtype=np.float32))
    keys.write_text("a\nb\u2028c\nd\n", encoding="utf-8")     # U+2028 is inside a key, not a line break
    ids, report = read_id_embeddings(tmp_path / "k.npy")
    assert ids.keys == ["a", "d"] and report.kinds["unusable key"] == 1 and "U+2028" in report.problems[0]


def _keys(tmp_path, name, n):
    (tmp_path / f"{name}.keys.txt").write_text("".join(f"k{i}\n" for i in range(n)))


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, bool, "U3", [("a", "f4"), ("b", "f4")]])
def test_non_real_id_embeddings_are_refused_naming_the_dtype(tmp_path, dtype):
    """Complex ID embeddings were read with their imaginary part dropped (and numpy's ComplexWarning on stderr);
    bools, strings and records are no vectors either. Refused in .npy and .npz alike, one line with the dtype."""
    x = np.zeros((3, 2), dtype)
    np.save(tmp_path / "x.npy", x)
    _keys(tmp_path, "x", 3)
    np.savez(tmp_path / "x.npz", keys=np.array(["a", "b", "c"]), vectors=x)
    for path in (tmp_path / "x.npy", tmp_path / "x.npz"):
        with pytest.raises(AnchorEmbedError, match=rf"^{re.escape(str(path))}.*: expected real numbers \(float or int\), got dtype "
                                                   rf"{re.escape(str(x.dtype))}$"):
            read_id_embeddings(path)


def test_integer_id_embeddings_read_as_float_in_every_format(tmp_path):
    """Integers are numbers: .npy, .npz and Parquet give the same float32 vectors (zero rows skipped alike)."""
    x = np.array([[1, 2], [0, 0], [-3, 4]], np.int64)
    np.save(tmp_path / "i.npy", x)
    _keys(tmp_path, "i", 3)
    np.savez(tmp_path / "i.npz", keys=np.array(["k0", "k1", "k2"]), vectors=x.astype(np.int32))
    pq.write_table(pa.table({"anchor_id": ["k0", "k1", "k2"], "emb": x.tolist()}), tmp_path / "i.parquet")
    for name in ("i.npy", "i.npz", "i.parquet"):
        ids, report = read_id_embeddings(tmp_path / name)
        assert ids.keys == ["k0", "k2"] and ids.vectors.dtype == np.float32, name
        np.testing.assert_array_equal(ids.vectors, [[1, 2], [-3, 4]])
        assert report.kinds == {"zero row": 1}, name


def test_a_parquet_list_of_non_numbers_is_refused(tmp_path):
    """A list<string> column was parsed by numpy as numbers ('1.5' -> 1.5), a list<bool> as 1.0/0.0: no
    vectors; refused naming the column and its type, as .npy/.npz refuse a dtype that is not real numbers."""
    for items, kind in (([["1.5", "2"]], "string"), ([[True, False]], "bool")):
        pq.write_table(pa.table({"anchor_id": ["a"], "emb": items}), tmp_path / f"{kind}.parquet")
        with pytest.raises(AnchorEmbedError, match=rf"column 'emb' is list<.*{kind}.*>; expected a list of real "
                                                   r"numbers \(float or int\)$"):
            read_id_embeddings(tmp_path / f"{kind}.parquet")


def test_a_file_of_another_kind_is_not_reported_as_pickled_data(tmp_path):
    """A text file named .npy was numpy's 'pickled data ... allow_pickle' advice; an object array too."""
    (tmp_path / "g.npy").write_text("not a numpy file at all")
    _keys(tmp_path, "g", 1)
    np.save(tmp_path / "o.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    _keys(tmp_path, "o", 1)
    (tmp_path / "g.npz").write_text("not a zip")
    (tmp_path / "g.parquet").write_text("not parquet")
    cases = {"g.npy": "not a NumPy .npy file", "o.npy": r"holds Python objects \(dtype object\)",
             "g.npz": "not a NumPy .npz file", "g.parquet": "not a readable Parquet file"}
    for name, said in cases.items():
        with pytest.raises(AnchorEmbedError, match=f"^{re.escape(str(tmp_path / name))}: {said}") as exc:
            read_id_embeddings(tmp_path / name)
        assert "pickle" not in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_nan_inf_and_out_of_range_rows_are_reported_without_numpy_warnings(tmp_path):
    """NaN/inf rows made numpy print 'overflow encountered in reduce' before the clean report; a float64 value
    beyond float32's range 'overflow encountered in cast', and was then called an inf."""
    x = np.ones((6, 4), np.float32)
    x[1, 0], x[2], x[3] = np.nan, np.inf, 0
    np.save(tmp_path / "w.npy", x)
    _keys(tmp_path, "w", 6)
    wide = x.astype(np.float64)
    wide[4, 1] = 1e300
    np.save(tmp_path / "w64.npy", wide)
    _keys(tmp_path, "w64", 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids, report = read_id_embeddings(tmp_path / "w.npy")
        assert ids.keys == ["k0", "k4", "k5"] and report.kinds == {"NaN/inf row": 2, "zero row": 1}
        ids, report = read_id_embeddings(tmp_path / "w64.npy")
    assert ids.keys == ["k0", "k5"] and report.kinds == {"NaN/inf row": 2, "zero row": 1, "out-of-range row": 1}
    assert "key 'k4': vector has values beyond float32's range" in "\n".join(report.problems)
