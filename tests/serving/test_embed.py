"""embed never mixes runs: fingerprints, --overwrite, empty shards, reuse of the model's feature cache."""

import json
import os

import numpy as np
import pytest

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.locks import exclusive
from anchor_embed.serving.embed import embed
from tests.conftest import run_cli, write_jsonl


def _records(sample, n=None):
    rows = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()]
    return rows[:n] if n else rows


@pytest.mark.slow
def test_rerun_with_other_inputs_refuses_then_overwrites(sample, pretrained, tmp_path, capsys):
    rows = _records(sample, 12)
    a = write_jsonl(tmp_path / "a.jsonl", rows)
    changed = [dict(r) for r in rows] + [{**rows[0], "anchor_id": "new_one"}]
    changed[1]["profile"] = "a completely different profile about cooking noodles"
    b = write_jsonl(tmp_path / "b.jsonl", changed)
    vec = tmp_path / "vec"
    assert run_cli("embed", "--model", pretrained, "--streamers", a, "--out", vec, "--media-root", sample) == 0
    old = np.load(vec / "vectors.npy")
    capsys.readouterr()
    assert run_cli("embed", "--model", pretrained, "--streamers", b, "--out", vec, "--media-root", sample) == 2
    err = capsys.readouterr().err
    assert "made from other inputs (streamers differ)" in err and len(err.strip().splitlines()) == 1
    np.testing.assert_array_equal(np.load(vec / "vectors.npy"), old)                 # nothing lost
    assert run_cli("embed", "--model", pretrained, "--streamers", a, "--out", vec, "--media-root", sample,
                   "--dtype", "float16") == 2                                     # another dtype: refused too
    assert run_cli("embed", "--model", pretrained, "--streamers", b, "--out", vec, "--media-root", sample,
                   "--overwrite") == 0
    keys = (vec / "keys.txt").read_text().split()
    assert "new_one" in keys and json.loads((vec / "meta.json").read_text())["count"] == 13
    fresh = tmp_path / "fresh"
    assert run_cli("embed", "--model", pretrained, "--streamers", b, "--out", fresh, "--media-root", sample) == 0
    np.testing.assert_allclose(np.load(vec / "vectors.npy"), np.load(fresh / "vectors.npy"), atol=1e-6)


@pytest.mark.slow
def test_more_shards_than_records_still_merge_and_cache_is_reused(sample, pretrained, tmp_path):
    recs = write_jsonl(tmp_path / "six.jsonl", _records(sample, 6))
    vec = tmp_path / "vec"
    for i in range(8):
        meta = embed(pretrained, recs, vec, media_root=sample, shard=f"{i}/8")
    assert meta["count"] == 6 and len((vec / "keys.txt").read_text().split()) == 6
    empty = [d for d in (vec / "shards").iterdir() if json.loads((d / "done").read_text())["count"] == 0]
    assert len(empty) == 2
    reports = [json.loads(p.read_text()) for p in (vec / "shards").glob("*/features/report.json")]
    assert sum(r["encoded_this_run"]["text"] + r["encoded_this_run"]["tag"] for r in reports) == 0
    assert sum(r["copied_from_cache"]["text"] for r in reports) > 0              # the model's cache served them
    whole = tmp_path / "whole"
    embed(pretrained, recs, whole, media_root=sample)
    np.testing.assert_allclose(np.load(vec / "vectors.npy")[np.argsort((vec / "keys.txt").read_text().split())],
                               np.load(whole / "vectors.npy")[np.argsort((whole / "keys.txt").read_text().split())],
                               atol=1e-6)


def test_a_second_writer_is_refused(tmp_path):
    with exclusive(tmp_path, "embed"):
        with pytest.raises(AnchorEmbedError, match="another embed is writing here"):
            with exclusive(tmp_path, "embed"):
                pass
    (tmp_path / ".lock").write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": os.uname().nodename}))
    with exclusive(tmp_path, "embed"):                   # a lock whose process is gone is stale: taken over
        pass
    assert not (tmp_path / ".lock").exists()


@pytest.mark.slow
def test_a_replaced_image_of_the_same_size_is_encoded_again(sample, sample_cache, tmp_path):
    import shutil

    from PIL import Image

    from anchor_embed.features.build import build_features
    from anchor_embed.features.cache import open_cache

    media = tmp_path / "media"
    media.mkdir()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(media / "f.bmp")
    size = (media / "f.bmp").stat().st_size
    rec = write_jsonl(tmp_path / "r.jsonl", [{**_records(sample, 1)[0], "frames": ["f.bmp"]}])
    out = tmp_path / "c"
    shutil.copytree(sample_cache, out)
    build_features(rec, out, media_root=media)
    first = np.asarray(open_cache(out).feats["frame"][open_cache(out).rows("frame", 0)], np.float32)
    Image.new("RGB", (64, 64), (30, 30, 200)).save(media / "f.bmp")           # same path, same size, new picture
    assert (media / "f.bmp").stat().st_size == size
    report = build_features(rec, out, media_root=media)
    assert report["encoded_this_run"]["frame"] == 1
    second = np.asarray(open_cache(out).feats["frame"][open_cache(out).rows("frame", 0)], np.float32)
    assert not np.allclose(first, second, atol=1e-3)


def _err_lines(capsys) -> list[str]:
    return [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]


@pytest.mark.slow
def test_two_shards_equal_one_shard_when_an_anchor_id_repeats_across_shards(sample, pretrained, tmp_path, capsys):
    """JSONL shards are every n-th non-empty line, not line ranges or id hashes, so the copies of a repeated
    anchor_id can land in different shards; the merge keeps the first in input order, as one shard does."""
    a, b, c, d, e = _records(sample, 5)
    rows = [b,                                                          # line 1: shard 0
            a,                                                          # line 2: shard 1, first 's0000'
            {**a, "profile": "a second copy about cooking noodles"},   # line 3: shard 0, dropped
            c,                                                          # line 4: shard 1
            e,                                                          # line 5: shard 0, first 's0004'
            {**e, "tags": ["chess"], "texts": ["chess all night"]},    # line 6: shard 1, dropped
            d]                                                          # line 7: shard 0
    recs = write_jsonl(tmp_path / "dups.jsonl", rows)
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_cli("embed", "--model", pretrained, "--streamers", recs, "--out", one, "--media-root", sample) == 0
    assert run_cli("embed", "--model", pretrained, "--streamers", recs, "--out", two, "--media-root", sample,
                   "--shard", "0/2") == 0
    capsys.readouterr()
    # --strict: the merge refuses as one --strict shard would (at line 3), and writes nothing
    assert run_cli("embed", "--model", pretrained, "--streamers", recs, "--out", two, "--media-root", sample,
                   "--shard", "1/2", "--strict") == 2
    assert _err_lines(capsys) == [f"error: {recs}: line 3: duplicate anchor_id 's0000' (first at line 2) "
                                  "(--strict stops at the first bad row)"]
    assert not (two / "vectors.npy").exists() and not (two / "keys.txt").exists()
    shard_keys = [(two / "shards" / f"0000{i}-of-00002" / "keys.txt").read_text().split() for i in (0, 1)]
    assert "s0000" in shard_keys[0] and "s0000" in shard_keys[1]    # the copies did land in different shards
    assert "s0004" in shard_keys[0] and "s0004" in shard_keys[1]
    assert run_cli("embed", "--model", pretrained, "--streamers", recs, "--out", two, "--media-root", sample,
                   "--shard", "1/2") == 0                           # the done shard is kept; now it merges
    err = capsys.readouterr().err
    assert "2 anchor_ids in more than one shard" in err and "'s0000'" in err and "'s0004'" in err

    keys = (one / "keys.txt").read_text().split()
    assert keys == [r["anchor_id"] for r in (b, a, c, e, d)]
    assert (two / "keys.txt").read_text().split() == keys
    np.testing.assert_allclose(np.load(two / "vectors.npy"), np.load(one / "vectors.npy"), atol=1e-6)
    np.testing.assert_allclose(np.load(two / "modalities.npy").astype(np.float32),
                               np.load(one / "modalities.npy").astype(np.float32), atol=1e-3)
    assert (two / "labels.jsonl").read_text() == (one / "labels.jsonl").read_text()
    assert json.loads((two / "meta.json").read_text())["count"] == json.loads((one / "meta.json").read_text())["count"] == 5
    merged = (two / "vectors.npy").read_bytes()
    for f in [*two.glob("shards/*/input_rows.npy"), two / "vectors.npy", two / "keys.txt"]:
        f.unlink()                       # shards written before they kept their input rows: done again
    assert run_cli("embed", "--model", pretrained, "--streamers", recs, "--out", two, "--media-root", sample,
                   "--shard", "1/2") == 0
    assert not (two / "vectors.npy").exists()                       # shard 0 is not done for the merge either
    assert run_cli("embed", "--model", pretrained, "--streamers", recs, "--out", two, "--media-root", sample,
                   "--shard", "0/2") == 0
    assert (two / "keys.txt").read_text().split() == keys and (two / "vectors.npy").read_bytes() == merged


@pytest.mark.slow
def test_strict_embed_stops_at_a_missing_frame_and_keeps_what_was_written(sample, pretrained, tmp_path, capsys):
    rows = _records(sample, 3)                      # line 2 (s0001) names media/missing.png, which is not there
    good = write_jsonl(tmp_path / "good.jsonl", [rows[0], rows[2]])
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    vec = tmp_path / "vec"
    assert run_cli("embed", "--model", pretrained, "--streamers", good, "--out", vec, "--media-root", sample) == 0
    before = {p.relative_to(vec): p.read_bytes() for p in vec.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert run_cli("embed", "--model", pretrained, "--streamers", bad, "--out", vec, "--media-root", sample,
                   "--overwrite", "--strict") == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: {bad}: line 2: frame 'media/missing.png' not found under {sample} "
                                        "(--strict stops at the first bad row)"]
    assert {p.relative_to(vec): p.read_bytes() for p in vec.rglob("*") if p.is_file()} == before   # nothing lost
    assert run_cli("embed", "--model", pretrained, "--streamers", bad, "--out", tmp_path / "new", "--media-root",
                   sample, "--strict", "--shard", "1/2") == 2     # a shard names the line of the input, not its own
    assert _err_lines(capsys) == [f"error: {bad}: line 2: frame 'media/missing.png' not found under {sample} "
                                  "(--strict stops at the first bad row)"]
    assert not (tmp_path / "new").exists()                          # refused before anything was written
    # without --strict: counted, as before, and the missing file named
    assert run_cli("embed", "--model", pretrained, "--streamers", bad, "--out", tmp_path / "lax", "--media-root",
                   sample) == 0
    err = capsys.readouterr().err
    assert "missing frames 1" in err and "missing.png: no such file" in err


@pytest.mark.slow
def test_two_shards_equal_one_shard_on_parquet_parts_with_a_repeated_id(sample, pretrained, tmp_path):
    """Parquet shards are every n-th row group over all part files; the merge orders rows over the whole input."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    a, b, c, d, e = _records(sample, 5)
    parts = tmp_path / "parts"
    parts.mkdir()
    # row groups: [b c] shard 0, [a] shard 1 | [d a'] shard 0, [e] shard 1: the first 's0000' is in shard 1
    pq.write_table(pa.Table.from_pylist([b, c, a]), parts / "part-0.parquet", row_group_size=2)
    pq.write_table(pa.Table.from_pylist([d, {**a, "profile": "another copy about cooking noodles"}, e]),
                   parts / "part-1.parquet", row_group_size=2)
    one, two = tmp_path / "one", tmp_path / "two"
    embed(pretrained, parts, one, media_root=sample)
    for i in range(2):
        embed(pretrained, parts, two, media_root=sample, shard=f"{i}/2")
    keys = (one / "keys.txt").read_text().split()
    assert keys == [r["anchor_id"] for r in (b, c, a, d, e)] and (two / "keys.txt").read_text().split() == keys
    np.testing.assert_allclose(np.load(two / "vectors.npy"), np.load(one / "vectors.npy"), atol=1e-6)
    assert (two / "labels.jsonl").read_text() == (one / "labels.jsonl").read_text()


@pytest.mark.slow
def test_embed_cuts_streamers_as_the_models_cache_did(sample, tmp_path):
    """A model trained on a cache built with --max-texts 1 --max-tags 2 --max-frames 1: `embed` and
    Model.encode cut new streamers the same way, so a training streamer embedded again gets the vector the model
    gives it from its own cache (they used the defaults, 16/16/8, and differed)."""
    from anchor_embed.features.cache import open_cache
    from anchor_embed.model.batcher import Batcher, embed_all
    from anchor_embed.model.store import load_model
    from anchor_embed.serving.encoder import Model
    from tests.conftest import SMALL

    cut = tmp_path / "cut"
    assert run_cli("features", "--streamers", sample / "streamers.jsonl", "--out", cut, "--max-texts", "1",
                   "--max-tags", "2", "--max-frames", "1") == 0
    run = tmp_path / "run"
    assert run_cli("pretrain", "--features", cut, "--out", run, *SMALL) == 0
    net, _ = load_model(run)
    cache = open_cache(cut)
    want = dict(zip(cache.keys, embed_all(net, Batcher.for_model(net, cache)), strict=True))
    rows = _records(sample, 6)
    assert any(len(r["tags"]) > 2 for r in rows)                   # the cut matters for these streamers
    recs = write_jsonl(tmp_path / "six.jsonl", rows)
    assert run_cli("embed", "--model", run, "--streamers", recs, "--out", tmp_path / "v", "--media-root", sample) == 0
    got = np.load(tmp_path / "v" / "vectors.npy")
    keys = (tmp_path / "v" / "keys.txt").read_text().split()
    np.testing.assert_allclose(got, np.stack([want[k] for k in keys]), atol=1e-5)
    np.testing.assert_allclose(Model(run).encode(rows, media_root=sample), got, atol=1e-5)


def test_frames_under_the_models_media_root_are_named_with_the_fix(sample, pretrained, tmp_path, capsys):
    """Records copied elsewhere with frame paths relative to the model's media root: embed, similar --record and
    the API read them from the records' folder and dropped the frames (vectors changed, the server's /embed,
    which defaults to the model's root, disagreed); now one line names the root that has them."""
    import json

    import anchor_embed
    from tests.conftest import run_cli

    rows = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()]
    with_frames = [r for r in rows if r.get("frames") and (sample / r["frames"][0]).is_file()][:2]
    moved = tmp_path / "elsewhere" / "new.jsonl"
    moved.parent.mkdir()
    moved.write_text("".join(json.dumps({**r, "anchor_id": f"copy-{r['anchor_id']}"}) + "\n" for r in with_frames))
    said = f"frame(s) not under {moved.parent.resolve()} are under the model's media root {sample}"
    capsys.readouterr()
    assert run_cli("embed", "--model", pretrained, "--streamers", moved, "--out", tmp_path / "v") == 0
    assert said in " ".join(capsys.readouterr().err.split())
    assert run_cli("embed", "--model", pretrained, "--streamers", moved, "--out", tmp_path / "w",
                   "--media-root", sample) == 0
    assert "model's media root" not in capsys.readouterr().err
    anchor_embed.load(pretrained).encode(moved)
    assert said in " ".join(capsys.readouterr().err.split())


def test_encode_quiet_keeps_the_warnings_only(sample, pretrained, capsys):
    """Model.encode wrote its status block to stderr on every call with no way to keep quiet in a loop."""
    import json

    import anchor_embed

    rows = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()][:3]
    rows[0] = {**rows[0], "frames": ["media/nowhere.png"]}
    model = anchor_embed.load(pretrained)
    capsys.readouterr()
    loud = model.encode(rows, media_root=sample)
    said = capsys.readouterr().err
    assert "features: 3 streamers" in said and "frame not read" in said
    quiet = model.encode(rows, media_root=sample, quiet=True)
    said = capsys.readouterr().err
    assert "features:" not in said and "frame not read: " in said and "nowhere.png" in said
    np.testing.assert_array_equal(loud, quiet)


def test_encode_reads_a_table_by_the_callers_column_names(sample, pretrained):
    """Model.encode took only the record fields' own names (a DataFrame indexed by anchor_id, or with a `uid`
    column, was 'records[0].anchor_id: Field required'); `columns` maps them as --id-column/--columns do."""
    import json

    import pandas as pd

    import anchor_embed

    rows = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()][:5]
    model = anchor_embed.load(pretrained)
    want = model.encode(rows, media_root=sample, quiet=True)
    table = pd.DataFrame(rows)
    np.testing.assert_array_equal(model.encode(table.set_index("anchor_id"), media_root=sample, quiet=True), want)
    own = table.rename(columns={"anchor_id": "uid", "profile": "bio"})
    got = model.encode(own, media_root=sample, quiet=True, columns={"anchor_id": "uid", "profile": "bio"})
    np.testing.assert_array_equal(got, want)
    with pytest.raises(AnchorEmbedError, match="no column 'biography'"):
        model.encode(own, columns={"anchor_id": "uid", "profile": "biography"})



def _cut_last_line(data: bytes) -> bytes:
    return data[:data.rindex(b"\n", 0, -1) + 1]


def test_a_damaged_file_of_a_finished_shard_is_one_line_saying_to_embed_it_again(sample, pretrained, tmp_path,
                                                                                  capsys):
    """A finished shard's files were read with bare np.load (its done marker with json.loads): a damaged one was a
    traceback at the merge. Now one line names it and says to embed that shard again, which then merges."""
    import shutil

    recs = write_jsonl(tmp_path / "three.jsonl", _records(sample, 3))
    argv = ("embed", "--model", pretrained, "--streamers", recs, "--media-root", sample, "--out")
    vec = tmp_path / "vec"
    assert run_cli(*argv, vec) == 0
    whole = np.load(vec / "vectors.npy")
    for name, damage, said in [("vectors.npy", lambda b: b[:100], "unreadable"),
                               ("modalities.npy", lambda b: b[:100], "unreadable"),
                               ("input_rows.npy", lambda b: b[:100], "unreadable"),
                               ("done", lambda b: b[:10], "not JSON"),
                               ("labels.jsonl", _cut_last_line, "holds 2 lines, not 3")]:
        bad = tmp_path / f"bad-{name}"
        shutil.copytree(vec, bad)
        shard = bad / "shards" / "00000-of-00001"
        (shard / name).write_bytes(damage((shard / name).read_bytes()))
        capsys.readouterr()
        assert run_cli(*argv, bad) == 2, name
        [err] = _err_lines(capsys)
        assert err.startswith(f"error: {shard / name}: ") and said in err, err
        assert err.endswith(f"remove the folder {shard} and run the same `anchor-embed embed` again"), err
    shutil.rmtree(shard)                                         # what it says: that shard is embedded again
    assert run_cli(*argv, bad) == 0
    np.testing.assert_array_equal(np.load(bad / "vectors.npy"), whole)
