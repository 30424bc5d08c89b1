"""Key files and the other small text inputs (id lists, clusters files, review logs): bytes that are not UTF-8
are one line naming the file and line, for every command that reads them."""

import json

import numpy as np
import pytest

from anchor_embed.data.key_file import read_keys, read_text
from anchor_embed.errors import AnchorEmbedError
from tests.conftest import run_cli, write_jsonl


def test_read_text_drops_a_byte_order_mark_and_names_the_line_of_a_bad_byte(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_bytes(b"\xef\xbb\xbfa\r\nb\n")
    assert read_text(path) == "a\r\nb\n" and read_keys(path) == ["a", "b"]
    path.write_bytes(b"\xef\xbb\xbfa\nb\nc\xe9\n")            # counted after the mark, as the decoder counts
    with pytest.raises(AnchorEmbedError, match=rf"^{path}: line 3: not UTF-8 \(byte 0xe9\)$"):
        read_keys(path)


def test_every_reader_of_a_small_text_input_names_a_file_that_is_not_utf8(tmp_path, capsys):
    """`similar --ids-file`, `scatter rerank` (its list and --clusters) and `dedup --reviewed` gave a
    UnicodeDecodeError traceback for a file that is no UTF-8 text."""
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe")
    good = tmp_path / "list.txt"
    good.write_text("s0\ns1\n")
    clusters = write_jsonl(tmp_path / "clusters.jsonl", [{"anchor_id": "s0", "cluster": 0}])
    vec = tmp_path / "vec"
    vec.mkdir()
    np.save(vec / "vectors.npy", np.eye(4, dtype=np.float32))
    (vec / "keys.txt").write_text("s0\ns1\ns2\ns3\n")
    (vec / "meta.json").write_text(json.dumps({"model_hash": "m", "dim": 4, "count": 4}))
    for argv in (["similar", "--ids-file", bad, "--index", tmp_path / "idx"],
                 ["scatter", "rerank", bad, "--clusters", clusters],
                 ["scatter", "rerank", good, "--clusters", bad],
                 ["dedup", vec, "--reviewed", bad, "--out", tmp_path / "dd.jsonl"]):
        capsys.readouterr()
        assert run_cli(*argv) == 2, argv
        assert capsys.readouterr().err == f"error: {bad}: line 1: not UTF-8 (byte 0xff)\n", argv
