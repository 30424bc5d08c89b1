"""embed and export write only where they may: a folder of the user's is refused, a vectors folder is rerun (and
what was made from replaced vectors goes with them), frames-only records embed alone as in a batch, a head-only
adapt run's vectors are the base's, and export checks every path before it writes one."""

import json
import shutil

import numpy as np
import pytest

from tests.conftest import run_cli, write_jsonl


def _records(sample, n=None):
    rows = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()]
    return rows[:n] if n else rows


def _errors(capsys) -> list[str]:
    return [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]


def test_embed_refuses_a_folder_of_files_it_did_not_write(sample, pretrained, tmp_path, capsys):
    recs = write_jsonl(tmp_path / "r.jsonl", _records(sample, 8))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "labels.jsonl").write_text('{"anchor_id":"u1"}\n')
    (mine / "keys.txt").write_text("u1\nu2\n")
    capsys.readouterr()
    assert run_cli("embed", "--model", pretrained, "--streamers", recs, "--out", mine, "--media-root", sample) == 2
    assert _errors(capsys) == [f"error: --out {mine}: holds files embed did not write (keys.txt, labels.jsonl); "
                               "give --out a folder of its own"]
    assert (mine / "keys.txt").read_text() == "u1\nu2\n" and sorted(p.name for p in mine.iterdir()) == [
        "keys.txt", "labels.jsonl"]
    run = tmp_path / "run"
    shutil.copytree(pretrained, run)
    assert run_cli("embed", "--model", pretrained, "--streamers", recs, "--out", run, "--media-root", sample) == 2
    assert not (run / "vectors.npy").exists() and not (run / "shards").exists()
    # a vectors folder with what scatter and dedup wrote into it by default is embed's: a rerun goes on
    vec = tmp_path / "vec"
    assert run_cli("embed", "--model", pretrained, "--streamers", recs, "--out", vec, "--media-root", sample) == 0
    assert run_cli("scatter", vec, "--clusters", "2") == 0 and run_cli("dedup", vec, "--threshold", "0.9") == 0
    assert run_cli("embed", "--model", pretrained, "--streamers", recs, "--out", vec, "--media-root", sample) == 0
    # in a vectors folder of its own, other files (notes, an index built into it) are left alone, also by
    # --overwrite, which replaces only embed's files and what was made from its vectors
    (vec / "notes.txt").write_text("mine")
    assert run_cli("index", "build", vec, "--out", vec / "index") == 0
    assert run_cli("embed", "--model", pretrained, "--streamers", recs, "--out", vec, "--media-root", sample,
                   "--overwrite") == 0
    assert (vec / "notes.txt").read_text() == "mine" and (vec / "index" / "index.faiss").is_file()
    # a feature cache is no vectors folder, though it holds a meta.json
    features = json.loads((pretrained / "run.json").read_text())["features"]
    cache = tmp_path / "cache"
    shutil.copytree(features, cache)
    assert run_cli("embed", "--model", pretrained, "--streamers", recs, "--out", cache, "--media-root", sample) == 2
    assert "holds files embed did not write" in " ".join(_errors(capsys))


def test_overwrite_removes_what_was_made_from_the_replaced_vectors(sample, pretrained, tmp_path, capsys):
    rows = _records(sample, 10)
    a, b = write_jsonl(tmp_path / "a.jsonl", rows), write_jsonl(tmp_path / "b.jsonl", rows[:7])
    vec = tmp_path / "vec"
    assert run_cli("embed", "--model", pretrained, "--streamers", a, "--out", vec, "--media-root", sample) == 0
    assert run_cli("scatter", vec, "--clusters", "2") == 0 and run_cli("dedup", vec, "--threshold", "0.9") == 0
    assert (vec / "clusters.jsonl").is_file() and (vec / "dedup-0.9.jsonl").is_file()
    capsys.readouterr()
    assert run_cli("embed", "--model", pretrained, "--streamers", b, "--out", vec, "--media-root", sample,
                   "--overwrite") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"removed clusters.jsonl, dedup-0.9.jsonl from {vec}, made from the vectors replaced" in err
    assert not (vec / "clusters.jsonl").exists() and not (vec / "dedup-0.9.jsonl").exists()
    assert len((vec / "keys.txt").read_text().split()) == 7
    # a rerun of the same inputs keeps them: its vectors are the same
    assert run_cli("scatter", vec, "--clusters", "2") == 0
    assert run_cli("embed", "--model", pretrained, "--streamers", b, "--out", vec, "--media-root", sample,
                   "--overwrite") == 0
    assert (vec / "clusters.jsonl").is_file()


def test_a_frames_only_record_embeds_alone_as_in_a_batch(sample, pretrained, tmp_path, capsys):
    import anchor_embed

    with_frames = next(r for r in _records(sample) if r["frames"] and "missing" not in r["frames"][0])
    alone = {"anchor_id": "fo", "frames": with_frames["frames"]}
    fo = write_jsonl(tmp_path / "fo.jsonl", [alone])
    both = write_jsonl(tmp_path / "both.jsonl", [alone, {"anchor_id": "nick", "nickname": "someone"}])
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"anchor_id": "e"}])
    one, two = tmp_path / "one", tmp_path / "two"
    capsys.readouterr()
    # nothing the model reads: named by the user's file, not the shard's; the folder holds no vectors and takes
    # a corrected rerun without --overwrite
    assert run_cli("embed", "--model", pretrained, "--streamers", empty, "--out", one, "--media-root", sample) == 2
    assert _errors(capsys) == [f"error: {empty}: no text or tags to encode, nor a readable frame the model reads (a "
                               "record needs a nickname, profile, texts, tags or frames)"]
    assert run_cli("embed", "--model", pretrained, "--streamers", fo, "--out", one, "--media-root", sample) == 0
    assert run_cli("embed", "--model", pretrained, "--streamers", both, "--out", two, "--media-root", sample) == 0
    v1, v2 = np.load(one / "vectors.npy"), np.load(two / "vectors.npy")
    np.testing.assert_allclose(v1[0], v2[0], atol=1e-5)
    model = anchor_embed.load(pretrained)
    np.testing.assert_allclose(model.encode([alone], media_root=sample, quiet=True)[0], v1[0], atol=1e-5)
    with pytest.raises(anchor_embed.AnchorEmbedError, match="^records 'e': no text or tags to encode, nor a"):
        model.encode([{"anchor_id": "e"}], quiet=True)


def test_a_head_run_embeds_the_base_vectors_under_the_base_hash(sample, pretrained, labels, tmp_path):
    from anchor_embed.model.store import model_hash

    head = tmp_path / "head"
    assert run_cli("adapt", "--pretrained", pretrained, "--labels", labels, "--target", "n_tags", "--kind", "regress",
                   "--mode", "head", "--out", head) == 0
    recs = write_jsonl(tmp_path / "r.jsonl", _records(sample, 12))
    base, vec = tmp_path / "base", tmp_path / "vec"
    assert run_cli("embed", "--model", pretrained, "--streamers", recs, "--out", base, "--media-root", sample) == 0
    assert run_cli("embed", "--model", pretrained, "--adapter", head, "--streamers", recs, "--out", vec,
                   "--media-root", sample) == 0
    meta = json.loads((vec / "meta.json").read_text())
    assert meta["model_hash"] == model_hash(pretrained) and "adapter" not in meta
    np.testing.assert_array_equal(np.load(vec / "vectors.npy"), np.load(base / "vectors.npy"))
    assert run_cli("index", "build", vec, "--out", tmp_path / "idx", "--model", pretrained) == 0
    assert run_cli("predict", "--adapter", head, "--vectors", vec, "--out", tmp_path / "p.jsonl") == 0


def test_export_checks_every_path_before_writing_any(sample_index, tmp_path, capsys):
    vec = sample_index / "vec"
    (tmp_path / "x.keys.txt").mkdir()
    capsys.readouterr()
    assert run_cli("export", vec, "--out", tmp_path / "x.npy") == 2
    assert _errors(capsys) == [f"error: {tmp_path / 'x.keys.txt'}: is a folder, where export writes the keys of "
                               f"--out {tmp_path / 'x.npy'}; name another --out (or remove the folder)"]
    assert not (tmp_path / "x.npy").exists()
    assert run_cli("export", vec, "--out", tmp_path / "x.npy", "--overwrite") == 2
    assert not (tmp_path / "x.npy").exists()
    (tmp_path / "d.parquet").mkdir()
    assert run_cli("export", vec, "--out", tmp_path / "d.parquet") == 2
    assert run_cli("export", vec, "--out", tmp_path / "y.npy") == 0
    assert (tmp_path / "y.keys.txt").is_file()


def test_export_never_writes_into_a_vectors_index_or_spark_folder(sample_index, tmp_path, capsys):
    """export --out VEC/vectors.npy --overwrite replaced the folder's own vectors (IDX/keys.npy: an index's key
    table), and --out VEC/keys.npy put keys.npy and keys.keys.txt in it unasked: files its commands did not write
    (an index folder's rebuild then refused it; Spark reads every Parquet file of its table as rows)."""
    vec, idx, table = tmp_path / "vec", tmp_path / "idx", tmp_path / "table"
    shutil.copytree(sample_index / "vec", vec)
    shutil.copytree(sample_index / "idx", idx)
    table.mkdir()
    (table / "_anchor_embed.json").write_text('{"job": "embed"}')

    def files():
        return {p: p.read_bytes() for f in (vec, idx, table) for p in f.iterdir() if p.is_file()}
    before = files()
    capsys.readouterr()
    for out, what in ((vec / "vectors.npy", "a vectors folder"), (vec / "keys.npy", "a vectors folder"),
                      (idx / "keys.npy", "an index folder"), (idx / "x.parquet", "an index folder"),
                      (table / "x.parquet", "a Spark job's output folder")):
        assert run_cli("export", vec, "--out", out, "--overwrite") == 2, out
        assert _errors(capsys) == [f"error: --out {out}: inside {out.parent}, {what}; export writes a file of its "
                                   "own: name one outside it"]
    assert files() == before                              # nothing written, nothing replaced
    assert run_cli("index", "build", vec, "--out", idx) == 0
    assert run_cli("export", vec, "--out", tmp_path / "v.npy") == 0 and (tmp_path / "v.keys.txt").is_file()


def test_a_shard_still_encoding_is_not_cleared_by_another_runs_shard(tmp_path):
    """Shard 1 of a run with other inputs cleared shards/ while shard 0 was still encoding (no done marker yet)."""
    from anchor_embed.errors import AnchorEmbedError
    from anchor_embed.locks import exclusive
    from anchor_embed.serving.embed import _claim

    out = tmp_path / "vec"
    (out / "shards" / "00000-of-00002").mkdir(parents=True)
    (out / "fingerprint.json").write_text(json.dumps({"fingerprint": "A", "model_hash": "m"}))
    with exclusive(out / "shards" / "00000-of-00002", "embed"):
        with pytest.raises(AnchorEmbedError):
            _claim(out, {"fingerprint": "B", "model_hash": "m"}, overwrite=False)
        assert (out / "shards" / "00000-of-00002").is_dir()
    _claim(out, {"fingerprint": "B", "model_hash": "m"}, overwrite=False)     # nothing done, nobody writing: cleared
    assert not (out / "shards").exists() and json.loads((out / "fingerprint.json").read_text())["fingerprint"] == "B"
