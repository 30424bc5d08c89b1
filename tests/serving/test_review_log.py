"""The review log takes marks and nothing else: `serve --review-log run/config.json` appended marks to a run's
config, which was then no JSON. A non-empty file that is no review log is refused at start
(`claim_review_log`), and no mark is appended to a file whose first line is no mark (`append_review`)."""

import json

import pytest
from fastapi.testclient import TestClient

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.serving.review import append_review, claim_review_log, read_reviews

CONFIG = '{\n  "epochs": 3\n}\n'


def test_a_file_that_is_no_review_log_is_refused_and_a_log_or_new_file_is_taken(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(CONFIG)
    with pytest.raises(AnchorEmbedError, match=rf"^review log {config}: line 1: not a review line .*give another "
                                               "--review-log$"):
        claim_review_log(config)
    mixed = tmp_path / "mixed.jsonl"                          # a mark, a line that is none, a mark
    mark = '{"a": "x", "b": "y", "verdict": "same_owner"}\n'
    mixed.write_text(mark + "not json\n" + mark)
    with pytest.raises(AnchorEmbedError, match=rf"^review log {mixed}: line 2: not a review line"):
        claim_review_log(mixed)
    cut = tmp_path / "cut.jsonl"                              # a crash while appending cut the last mark short
    cut.write_text(mark + mark[:20] + "\n")
    with pytest.raises(AnchorEmbedError, match=rf"^review log {cut}: its last line is no mark, the rest are .*remove"):
        claim_review_log(cut)
    log = tmp_path / "reviews.jsonl"
    claim_review_log(log)                                     # no file yet
    log.write_text("")
    claim_review_log(log)                                     # empty
    append_review(log, "x", "y", "same_owner", "ana")
    append_review(log, "x", "z", "not_related", "ana")
    claim_review_log(log)                                     # a review log
    assert read_reviews(log) == ({frozenset("xy")}, {frozenset("xz")})
    with pytest.raises(AnchorEmbedError, match=rf"^review log {config}: its first line is not a review mark"):
        append_review(config, "x", "y", "same_owner", "ana")
    assert config.read_text() == CONFIG


def test_the_review_page_appends_no_mark_to_a_runs_config(sample_index, tmp_path):
    """Through the server: refused at start-up; a file that became no review log after start-up gets no mark
    either (HTTP 422) and stays as it was."""
    from anchor_embed.serving.server import create_app

    config = tmp_path / "config.json"
    config.write_text(CONFIG)
    with pytest.raises(AnchorEmbedError, match="not a review line"):
        create_app(sample_index / "idx", review_log=config, poll=0)
    config.unlink()
    with TestClient(create_app(sample_index / "idx", review_log=config, poll=0)) as c:
        config.write_text(CONFIG)                   # the path taken by another file while the server runs
        r = c.post("/review", json={"a": "s0000", "b": "dup00", "verdict": "same_owner"})
    assert r.status_code == 422 and "its first line is not a review mark" in r.json()["detail"]
    assert config.read_text() == CONFIG
    json.loads(config.read_text())
