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
