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
