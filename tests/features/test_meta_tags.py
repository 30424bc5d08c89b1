import json
import math

import numpy as np
import pytest

import anchor_embed
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.features.cache import open_cache
from anchor_embed.features.meta_tags import canonical_spec, meta_tag_mask, parse_meta_tags, tags_of_meta
from anchor_embed.features.pooled import pooled_block
from anchor_embed.model.batcher import Batcher, embed_all
from anchor_embed.model.store import load_model
from tests.conftest import SMALL, run_cli, write_jsonl


def test_spec_parsing_and_its_one_line_errors():
    fields = parse_meta_tags(" language , total_followers:log,year:5,score:0.5 ")
    assert canonical_spec(fields) == "language,total_followers:log,year:5,score:0.5"
    assert canonical_spec(parse_meta_tags(None)) is None and canonical_spec(parse_meta_tags(" , ")) is None
    for bad, says in ((":log", "names no field"), ("year:0", "bucket width > 0"), ("year:-5", "bucket width > 0"),
                      ("year:nan", "bucket width > 0"), ("year:inf", "bucket width > 0"),
                      ("year:decade", "'log' or a bucket width"), ("a,b:log,a", "named twice")):
        with pytest.raises(AnchorEmbedError, match=says):
            parse_meta_tags(bad)


def test_log_buckets_hold_their_values():
    """A value's tag 1e{k/2} must satisfy 10^(k/2) <= value < 10^((k+1)/2) (values below 1 in 1e0)."""
    fields = parse_meta_tags("n:log")
    rng = np.random.default_rng(0)
    values = list(10 ** rng.uniform(0, 8, 500)) + [1, 10, 31622.7, 31622.8, 1e6, 999_999, 3]
    for x in values:
        (tag,), bad = tags_of_meta({"n": x}, fields)
        k = 2 * float(tag.removeprefix("n=1e"))
        assert bad == [] and k == int(k)
        assert 10 ** (k / 2) <= x * (1 + 1e-12) and x < 10 ** ((k + 1) / 2) * (1 + 1e-12), (x, tag)
    assert tags_of_meta({"n": 0}, fields)[0] == ["n=1e0"] == tags_of_meta({"n": -5}, fields)[0]
    assert tags_of_meta({"n": "12000"}, fields)[0] == ["n=1e4"]       # numbers written as text count


def test_width_buckets_values_and_what_gives_no_tag():
    fields = parse_meta_tags("year:5,lang,flag,genres")
    tags, bad = tags_of_meta({"year": 1994, "lang": "EN ", "flag": False, "genres": ["Drama", "war"]}, fields)
    assert tags == ["year=1990..1995", "lang=en", "flag=false", "genres=drama", "genres=war"] and bad == []
    assert tags_of_meta({"year": 1995}, fields)[0] == ["year=1995..2000"]
    assert tags_of_meta({"year": -3}, fields)[0] == ["year=-5..0"]
    for x in np.random.default_rng(1).uniform(-1e4, 1e4, 200):
        lo, hi = map(float, tags_of_meta({"year": x}, fields)[0][0].removeprefix("year=").split(".."))
        assert lo <= x < hi and hi - lo == 5 and math.isclose(lo / 5, round(lo / 5))
    assert tags_of_meta({"year": None, "lang": "", "genres": []}, fields) == ([], [])
    assert tags_of_meta({}, fields) == ([], [])
    # a bucket needs a number: text, flags and NaN are reported, not guessed
    assert tags_of_meta({"year": "nineties"}, fields) == ([], ["year"])
    assert tags_of_meta({"year": True}, fields) == ([], ["year"])
    assert tags_of_meta({"year": float("nan")}, fields) == ([], ["year"])


@pytest.mark.slow
def test_cli_meta_tags_reach_the_cache_and_new_streamers_get_the_same(sample, sample_cache, tmp_path, capsys):
    """Meta tags come first in a streamer's tags, non-numbers are counted, another spec is refused, and
    `Model.encode` of records (the path of embed and the server) tags them as the cache did."""
    rows = [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()]
    for i, r in enumerate(rows):
        r["meta"]["views"] = "unknown" if i == 0 else 10 ** (1 + i % 5)
    write_jsonl(tmp_path / "s.jsonl", rows)
    cache_dir, run = tmp_path / "c", tmp_path / "run"
    assert run_cli("features", "--streamers", tmp_path / "s.jsonl", "--out", cache_dir, "--media-root", sample,
                   "--meta-tags", "kind,lang,views:log") == 0
    cache = open_cache(cache_dir)
    assert cache.meta["meta_tags"] == "kind,lang,views:log"
    names = [cache.tag_names[t] for t in cache.rows("tag", 1)]
    assert names[:3] == [f"kind={rows[1]['meta']['kind']}".lower(), f"lang={rows[1]['meta']['lang']}".lower(),
                         "views=1e2"]
    assert names[3:] == list(dict.fromkeys(t.lower() for t in rows[1]["tags"]))
    assert json.loads((cache_dir / "report.json").read_text())["meta_not_numeric"] == {"views": 1}
    # frozen references read the record's own tags only: the pooled tags of a cache without meta tags (the
    # backbone encodes each tag in another batch there: float noise only)
    plain = open_cache(sample_cache)
    assert plain.keys == cache.keys
    assert "meta_tags" not in plain.meta      # an untagged cache's meta.json (and digest) is what it always was
    np.testing.assert_allclose(pooled_block(cache, "tag"), pooled_block(plain, "tag"), atol=3e-4)
    assert meta_tag_mask(cache.tag_names, cache.meta["meta_tags"]).sum() == sum(
        t.startswith(("kind=", "lang=", "views=")) for t in cache.tag_names) > 0
    # the same folder with another spec would mix two tag vocabularies
    assert run_cli("features", "--streamers", tmp_path / "s.jsonl", "--out", cache_dir, "--media-root", sample,
                   "--meta-tags", "kind") == 2
    assert run_cli("features", "--streamers", tmp_path / "s.jsonl", "--out", tmp_path / "c2",
                   "--meta-tags", "views:big") == 2
    assert run_cli("pretrain", "--features", cache_dir, "--out", run, *SMALL) == 0
    assert "meta fields read as tags: `kind,lang,views:log`" in (run / "README.md").read_text()
    net, _ = load_model(run)
    want = embed_all(net, Batcher.for_model(net, cache))
    pick = [3, 1, 8]
    got = anchor_embed.load(run).encode([rows[i] for i in pick], media_root=sample)
    np.testing.assert_allclose(got, want[pick], atol=1e-5)
    # without its meta the same streamer is another input: the tags above are not decoration
    bare = [{**rows[i], "meta": {}} for i in pick]
    capsys.readouterr()
    assert np.abs(anchor_embed.load(run).encode(bare, media_root=sample) - want[pick]).max() > 1e-3
    said = " ".join(capsys.readouterr().err.split())     # the model's spec, not a flag the caller misspelt
    assert "the model reads meta field(s) 'kind', 'lang', 'views' as tags, and no record here has them" in said
    assert "misspelt" not in said


@pytest.mark.slow
def test_a_meta_field_no_record_has_is_named(sample, tmp_path, capsys):
    """A misspelt --meta-tags field would add no tag anywhere: the run says so, naming it."""
    capsys.readouterr()
    assert run_cli("features", "--streamers", sample / "streamers.jsonl", "--out", tmp_path / "c", "--media-root",
                   sample, "--meta-tags", "kind,knid") == 0
    seen = capsys.readouterr()
    said = " ".join((seen.err + seen.out).split())
    assert "field(s) 'knid' in no record's meta" in said          # 'kind', which records have, is not named


def test_a_rerun_on_fewer_records_says_which_streamers_it_drops(sample, sample_cache, tmp_path, capsys):
    """A features rerun with a slice of the records listed only the slice: the rest vanished without a word."""
    rows = (sample / "streamers.jsonl").read_text().splitlines()
    (tmp_path / "all.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "some.jsonl").write_text("\n".join(rows[10:]) + "\n")
    out = tmp_path / "c"
    args = ["--out", out, "--media-root", sample, "--reuse", sample_cache]
    assert run_cli("features", "--streamers", tmp_path / "all.jsonl", *args) == 0
    capsys.readouterr()
    assert run_cli("features", "--streamers", tmp_path / "some.jsonl", *args) == 0
    said = " ".join(capsys.readouterr().err.split())
    first = json.loads(rows[0])["anchor_id"]
    assert "10 streamer(s) of the cache's last run are not in these records and are no longer listed" in said
    assert repr(first) in said and first not in open_cache(out).keys


def test_other_meta_tags_are_named_without_none(sample, sample_cache, pretrained, tmp_path, capsys):
    """The refusal said "made with --meta-tags None"; a pretrain run's card said it was taught by ID embeddings."""
    import shutil

    cache = tmp_path / "c"
    shutil.copytree(sample_cache, cache)
    capsys.readouterr()
    assert run_cli("features", "--streamers", sample / "streamers.jsonl", "--out", cache, "--media-root", sample,
                   "--meta-tags", "kind") == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "this cache was made without --meta-tags, not 'kind'" in said and "None" not in said
    card = (pretrained / "README.md").read_text()
    assert "Taught by ID embeddings" not in card and "Self-supervised, it knows only what streamers show" in card
