import json
import shutil

import numpy as np
import pytest

from anchor_embed.data.records import read_streamers
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.features.build import build_features
from anchor_embed.features.cache import open_cache, text_key
from anchor_embed.fingerprint import cache_digest
from tests.conftest import dataset, run_cli


def test_cache_contents_match_records(sample, sample_cache):
    cache = open_cache(sample_cache)
    records, _ = read_streamers(sample / "streamers.jsonl")
    assert cache.keys == [r.anchor_id for r in records]
    report = json.loads((sample_cache / "report.json").read_text())
    assert report["missing_frames"] == 1            # the sample's one missing frame, counted
    keys = (sample_cache / "text.keys.txt").read_text().splitlines()
    i = 5
    rows = cache.rows("text", i)
    wanted = [text_key(t) for t in [records[i].nickname, records[i].profile, *records[i].texts] if t]
    assert [keys[r] for r in rows] == wanted
    tag_names = cache.tag_names
    assert [tag_names[r] for r in cache.rows("tag", i)] == list(dict.fromkeys(t.lower() for t in records[i].tags))
    assert cache.feats["frame"].shape[1] == 1280 and isinstance(cache.feats["text"], np.memmap)


def test_second_run_does_only_what_is_new(sample, sample_cache, tmp_path):
    out = tmp_path / "c"
    shutil.copytree(sample_cache, out)
    lines = (sample / "streamers.jsonl").read_text().splitlines()
    new = json.loads(lines[0])
    new.update(anchor_id="brand-new", profile="a completely new profile text", texts=[], frames=[])
    (tmp_path / "s.jsonl").write_text("\n".join(lines + [json.dumps(new)]) + "\n")
    report = build_features(tmp_path / "s.jsonl", out, media_root=sample)
    assert report["encoded_this_run"] == {"text": 1, "frame": 0, "tag": 0}
    assert open_cache(out).keys[-1] == "brand-new"


def test_refuses_other_backbone(sample, sample_cache, tmp_path):
    out = tmp_path / "c"
    shutil.copytree(sample_cache, out)
    with pytest.raises(AnchorEmbedError, match="made with text_backbone='use', not 'minilm'"):
        build_features(sample / "streamers.jsonl", out, media_root=sample, text_backbone="minilm")


def test_refuses_other_caps_and_a_transfer_says_its_base_saw_another_cache(sample, sample_cache, pretrained,
                                                                           tmp_path, capsys):
    """A rerun into a cache with --max-texts 1 rewrote every streamer's atom lists under the runs made from it
    without a word; it is refused, and a transfer whose features are not its base's cache says what changed."""
    from anchor_embed.transfer.run import say_other_cache

    out = tmp_path / "c"
    shutil.copytree(sample_cache, out)
    before = (out / "streamers" / "text_idx.npy").read_bytes()
    with pytest.raises(AnchorEmbedError, match=r"cuts streamers at --max-texts 16, not 1; .*\(--reuse "):
        build_features(sample / "streamers.jsonl", out, media_root=sample, max_texts=1)
    assert (out / "streamers" / "text_idx.npy").read_bytes() == before
    cut = tmp_path / "cut"                   # what the error says to do, from the CLI: nothing encoded again
    assert run_cli("features", "--streamers", sample / "streamers.jsonl", "--media-root", sample, "--out", cut,
                   "--max-texts", "1", "--reuse", out) == 0
    assert json.loads((cut / "report.json").read_text())["encoded_this_run"] == {"text": 0, "frame": 0, "tag": 0}
    assert run_cli("features", "--streamers", sample / "streamers.jsonl", "--out", tmp_path / "x", "--reuse",
                   tmp_path / "nothing") == 2
    capsys.readouterr()
    say_other_cache(pretrained, sample_cache, cache_digest(sample_cache), open_cache(sample_cache).meta)
    assert capsys.readouterr().err == ""                    # the cache it was pretrained on: nothing to say
    say_other_cache(pretrained, cut, cache_digest(cut), open_cache(cut).meta)
    err = capsys.readouterr().err.replace("\n", " ")
    assert f"{cut} is not the cache {pretrained} was pretrained on (max_texts 16 -> 1)" in err, err


@pytest.mark.slow
def test_resumes_from_parts_of_a_crashed_run(sample, sample_cache, tmp_path, monkeypatch):
    import anchor_embed.features.cache as features

    out = tmp_path / "c"
    calls = {"n": 0}
    real = features.PartWriter.flush

    def crash_after_first_part(self, limit=None):
        real(self, limit)
        calls["n"] += 1
        if self.kind == "text" and calls["n"] == 1:
            raise KeyboardInterrupt   # killed after one checkpointed part
    monkeypatch.setattr(features, "PART_ROWS", 32)
    monkeypatch.setattr(features.PartWriter, "flush", crash_after_first_part)
    with pytest.raises(KeyboardInterrupt):
        build_features(sample / "streamers.jsonl", out, media_root=sample)
    monkeypatch.setattr(features.PartWriter, "flush", real)
    report = build_features(sample / "streamers.jsonl", out, media_root=sample)
    total = report["distinct"]["text"]
    assert report["encoded_this_run"]["text"] == total - 32    # the checkpointed part was not redone
    a, b = open_cache(out), open_cache(sample_cache)
    ka = (out / "text.keys.txt").read_text().splitlines()
    kb = (sample_cache / "text.keys.txt").read_text().splitlines()
    pa, pb = {k: i for i, k in enumerate(ka)}, {k: i for i, k in enumerate(kb)}
    np.testing.assert_allclose(a.feats["text"][[pa[k] for k in kb]], b.feats["text"][[pb[k] for k in kb]], atol=2e-3)
    assert not list((out / "parts").iterdir())


@pytest.mark.slow
def test_cli_features_on_twitch(tmp_path):
    data = dataset("twitch-streamers")
    assert run_cli("features", "--streamers", data / "streamers.jsonl", "--out", tmp_path / "c") == 0
    cache = open_cache(tmp_path / "c")
    assert cache.n == 1904 and cache.feats["frame"].shape[0] == 0
    assert json.loads((tmp_path / "c" / "report.json").read_text())["streamers_with"]["text"] >= 1718


def test_nickname_filter_on_an_old_cache_says_what_to_do(sample_cache, tmp_path):
    old = tmp_path / "old_cache"
    shutil.copytree(sample_cache, old)
    (old / "streamers" / "nicknames.json").unlink()
    with pytest.raises(AnchorEmbedError, match="no nicknames.json; re-run `anchor-embed features`"):
        open_cache(old).nicknames()


@pytest.mark.slow
def test_frames_outside_the_media_root_are_never_read(sample, sample_cache, tmp_path):
    from PIL import Image

    secret = tmp_path / "secret.png"
    Image.new("RGB", (32, 32), "red").save(secret)
    root = tmp_path / "media"
    root.mkdir()
    (root / "link.png").symlink_to(secret)
    first = json.loads((sample / "streamers.jsonl").read_text().splitlines()[0])
    rows = [{**first, "anchor_id": "hostile", "frames": ["../secret.png", str(secret), "/etc/passwd", "link.png"]}]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "c"
    shutil.copytree(sample_cache, out)
    report = build_features(tmp_path / "s.jsonl", out, media_root=root)
    assert report["media"]["frames_outside_root"] == 4 and report["encoded_this_run"]["frame"] == 0
    assert len(open_cache(out).rows("frame", 0)) == 0


@pytest.mark.slow
def test_hostile_rows_are_cut_to_bounded_size(sample, sample_cache, tmp_path):
    """A 1 MB profile and a million tags: the text is cut before encoding, the tags read only as far as needed."""
    from anchor_embed.features.backbones import load_text_backbone

    first = json.loads((sample / "streamers.jsonl").read_text().splitlines()[0])
    huge = "streaming every day " * 50_000
    rows = [{**first, "anchor_id": "huge", "profile": huge, "tags": ["game"] * 1_000_000 + ["x" * 500]}]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "c"                       # another cut is another cache; its features copied from the sample's
    report = build_features(tmp_path / "s.jsonl", out, media_root=sample, max_text_chars=300, reuse=sample_cache)
    assert report["truncated"]["texts"] == 1 and report["truncated"]["tags"] == 1
    cache = open_cache(out)
    keys = (out / "text.keys.txt").read_text().splitlines()
    row = next(r for r in cache.rows("text", 0) if keys[r] == text_key(huge[:300]))
    want = load_text_backbone("use").encode([huge[:300]])[0]
    np.testing.assert_allclose(cache.feats["text"][row], want, atol=2e-3)   # what was cached is the cut text
    assert [cache.tag_names[r] for r in cache.rows("tag", 0)] == ["game", "x" * 100]   # distinct, cut
    assert json.loads((out / "meta.json").read_text())["max_text_chars"] == 300


def test_the_cache_records_its_inputs_as_absolute_paths(sample, sample_cache, tmp_path, monkeypatch):
    """meta.json kept `streamers_file` and `media_root` as typed ('.' from a relative run), so the media-root
    hints of embed and the server depended on the later command's working directory."""
    shutil.copy(sample / "streamers.jsonl", tmp_path / "s.jsonl")
    monkeypatch.chdir(tmp_path)
    build_features("s.jsonl", "cache", media_root=".", reuse=sample_cache)
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["streamers_file"] == str((tmp_path / "s.jsonl").resolve())
    assert meta["media_root"] == str(tmp_path.resolve())


@pytest.mark.parametrize("damaged", ["streamers/text_ptr.npy", "streamers/frame_idx.npy", "streamers/tag_counts.npy"])
def test_a_damaged_cache_file_is_one_line_naming_it(sample, sample_cache, tmp_path, capsys, damaged):
    """A truncated array of a feature cache was numpy's traceback (a missing one a FileNotFoundError)."""
    import shutil

    from tests.conftest import run_cli

    cache = tmp_path / "cache"
    shutil.copytree(sample_cache, cache)
    data = (cache / damaged).read_bytes()
    (cache / damaged).write_bytes(data[:len(data) // 2])            # cut mid-array
    capsys.readouterr()
    assert run_cli("evaluate", "--features", cache, "--id-emb", sample / "ids.npy") == 2
    err = capsys.readouterr().err
    assert damaged.split("/")[-1] in err and "feature cache is damaged" in err and len(err.strip().splitlines()) == 1
    (cache / damaged).unlink()
    assert run_cli("evaluate", "--features", cache, "--id-emb", sample / "ids.npy") == 2
    assert "no such file" in capsys.readouterr().err


def _zero_rows(f):
    np.save(f, np.zeros((0, np.load(f, mmap_mode="r").shape[1]), np.float16))


def _one_too_wide(f):
    np.save(f, np.zeros((len(np.load(f, mmap_mode="r")), np.load(f, mmap_mode="r").shape[1] + 1), np.float16))


@pytest.mark.parametrize("damaged, damage, said", [
    ("tag.npy", lambda f: f.write_bytes(f.read_bytes()[:100]), "unreadable"),
    ("text.npy", lambda f: f.write_bytes(f.read_bytes()[:100]), "unreadable"),
    ("text.npy", _zero_rows, "holds 0 rows, but the streamers' text lists point to rows outside it"),
    ("frame.npy", _one_too_wide, "not rows of 1280 features"),
], ids=["tag-cut", "text-cut", "text-zero-rows", "frame-too-wide"])
def test_a_small_damaged_feature_file_is_one_line_not_no_features(sample, sample_cache, tmp_path, capsys,
                                                                  damaged, damage, said):
    """A text, frame or tag feature file of 128 bytes or fewer was taken for "no features of that kind" by its
    size: a file cut to 100 bytes (or emptied of rows its streamers point to) ended in an IndexError."""
    cache = tmp_path / "cache"
    shutil.copytree(sample_cache, cache)
    damage(cache / damaged)
    capsys.readouterr()
    assert run_cli("evaluate", "--features", cache, "--id-emb", sample / "ids.npy") == 2
    err = capsys.readouterr().err
    assert f"{cache / damaged}: " in err and said in err and "feature cache is damaged" in err
    assert len(err.strip().splitlines()) == 1


def test_a_kind_with_zero_rows_is_no_features_of_that_kind(sample_cache, tmp_path):
    """An intact feature file of zero rows (no streamer has a tag) is read by its content: no tags, no error."""
    cache = tmp_path / "cache"
    shutil.copytree(sample_cache, cache)
    s = cache / "streamers"
    n = len(open_cache(cache).keys)
    _zero_rows(cache / "tag.npy")
    (cache / "tag.keys.txt").write_text("")
    np.save(s / "tag_idx.npy", np.zeros(0, np.load(s / "tag_idx.npy").dtype))
    np.save(s / "tag_ptr.npy", np.zeros(n + 1, np.load(s / "tag_ptr.npy").dtype))
    np.save(s / "tag_counts.npy", np.zeros(0, np.load(s / "tag_counts.npy").dtype))
    opened = open_cache(cache)
    assert opened.feats["tag"].shape == (0, opened.dim("tag")) and len(opened.rows("tag", 0)) == 0
    assert opened.feats["text"].shape[0] > 0
