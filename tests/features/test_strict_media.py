"""--strict and frames: the first frame that is not a file under the media root stops the run, naming the
records file, the line and the path, before anything is written; without it frames are counted and named."""

import json
import shutil

import pytest

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.features.build import build_features
from tests.conftest import run_cli, write_jsonl


def _rows(sample, n):
    return [json.loads(x) for x in (sample / "streamers.jsonl").read_text().splitlines()[:n]]


def test_strict_frames_stop_at_the_first_missing_frame_before_writing(sample, tmp_path):
    recs = write_jsonl(tmp_path / "s.jsonl", _rows(sample, 3))      # line 2 names media/missing.png
    out = tmp_path / "c"
    with pytest.raises(AnchorEmbedError) as got:
        build_features(recs, out, media_root=sample, strict_frames=True)
    assert str(got.value) == (f"{recs}: line 2: frame 'media/missing.png' not found under {sample} "
                              "(--strict stops at the first bad row)")
    assert not out.exists()


def test_strict_stops_at_the_first_problem_in_the_files_order(sample, pretrained, tmp_path):
    """A missing frame on line 2 and a bad row on line 4: line 2 (rows were checked before frames, so line 4
    was named; `spark embed` named line 2); and the other way round, the bad row."""
    from anchor_embed.serving.embed import embed

    rows = _rows(sample, 3)                                          # line 2 names media/missing.png
    recs = write_jsonl(tmp_path / "s.jsonl", [*rows, "{not json"])
    for run in (lambda: build_features(recs, tmp_path / "c", media_root=sample, strict=True, strict_frames=True),
                lambda: embed(pretrained, recs, tmp_path / "v", media_root=sample, strict=True)):
        with pytest.raises(AnchorEmbedError, match=r"s\.jsonl: line 2: frame 'media/missing\.png' not found"):
            run()
    first = write_jsonl(tmp_path / "t.jsonl", ["{not json", *rows])
    with pytest.raises(AnchorEmbedError, match=r"t\.jsonl: line 1: malformed JSON"):
        build_features(first, tmp_path / "c", media_root=sample, strict=True, strict_frames=True)


def test_strict_frames_refuse_a_path_outside_the_media_root(sample, tmp_path):
    rows = _rows(sample, 1)
    rows[0]["frames"] = ["media/s0000_0.png", "../secret.png"]
    recs = write_jsonl(tmp_path / "s.jsonl", rows)
    with pytest.raises(AnchorEmbedError, match=r"s\.jsonl: line 1: frame '\.\./secret\.png' leads outside the media "
                                               r"root .* \(--strict stops at the first bad row\)"):
        build_features(recs, tmp_path / "c", media_root=sample, strict_frames=True)


def test_without_strict_frames_missing_frames_are_counted_and_named(sample, sample_cache, tmp_path, capsys):
    """`strict` alone (what Model.encode passes for records it has checked) still only counts frames."""
    recs = write_jsonl(tmp_path / "s.jsonl", _rows(sample, 3))
    out = tmp_path / "c"
    shutil.copytree(sample_cache, out)
    capsys.readouterr()
    report = build_features(recs, out, media_root=sample, strict=True)
    err = capsys.readouterr().err
    assert report["missing_frames"] == 1 and report["streamers"] == 3
    assert "missing frames 1" in err and f"{sample / 'media' / 'missing.png'}: no such file" in err


def test_cli_features_strict_stops_at_a_missing_frame(sample, tmp_path, capsys):
    recs = write_jsonl(tmp_path / "s.jsonl", _rows(sample, 3))
    assert run_cli("features", "--streamers", recs, "--out", tmp_path / "c", "--media-root", sample, "--strict") == 2
    assert capsys.readouterr().err.strip() == (f"error: {recs}: line 2: frame 'media/missing.png' not found under "
                                               f"{sample} (--strict stops at the first bad row)")


def test_an_unreadable_frame_is_said_to_be_one_among_the_missing(sample, sample_cache, tmp_path, capsys):
    """A corrupt image was counted under 'missing frames' with nothing on the line saying it was there but
    unreadable (report.json had frames_corrupt)."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "bad.png").write_bytes(b"not an image at all")
    rows = _rows(sample, 2)
    rows[0]["frames"] = ["bad.png"]
    rows[1]["frames"] = []
    recs = write_jsonl(tmp_path / "s.jsonl", rows)
    capsys.readouterr()
    build_features(recs, tmp_path / "c", media_root=media, reuse=sample_cache)
    err = capsys.readouterr().err
    assert "(1 unreadable file(s) among them)" in err and "bad.png" in err
