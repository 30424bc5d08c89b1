"""The bench reuses a finished run only when it was made with today's settings (defaults included)."""

from __future__ import annotations

import json

from anchor_embed.config import resolve
from anchor_embed.transfer.config import TransferConfig
from benchmarks.quality import _settled


def _finished(run, record=True, **overrides):
    """A finished run folder of these settings, recorded as made by today's code unless `record` is False."""
    from anchor_embed.fingerprint import code_digest

    run.mkdir(parents=True)
    cfg = resolve(TransferConfig, None, overrides)
    (run / "config.json").write_text(cfg.model_dump_json())
    (run / "outcome.json").write_text(json.dumps({"complete": True}))
    if record:
        (run / "run.json").write_text(json.dumps({"code": code_digest()}))


def test_a_finished_run_with_the_same_settings_is_reused(tmp_path):
    _finished(tmp_path / "a", method="contrastive", seed=1, epochs=100)
    assert _settled(tmp_path / "a", TransferConfig, {"method": "contrastive", "seed": 1, "epochs": 100})
    assert (tmp_path / "a" / "outcome.json").is_file()


def test_a_run_of_other_settings_or_older_defaults_is_removed(tmp_path, capsys):
    _finished(tmp_path / "b", method="contrastive", params={"group": 4})          # what an older default made
    assert not _settled(tmp_path / "b", TransferConfig, {"method": "contrastive"})
    assert not (tmp_path / "b").exists() and "other settings" in capsys.readouterr().err
    assert not _settled(tmp_path / "never", TransferConfig, {"method": "rkd"})       # nothing there yet


def test_a_run_of_other_code_or_another_cache_is_removed(tmp_path, capsys, sample_cache):
    from anchor_embed.fingerprint import cache_digest, code_digest

    def made_by(run, code, features):
        (run / "run.json").write_text(json.dumps({"code": code, "inputs": {"features": features}}))

    overrides = {"method": "contrastive", "seed": 1, "epochs": 100}
    for name, code, features, kept in (("same", code_digest(), cache_digest(sample_cache), True),
                                       ("older-code", "0123456789abcdef", cache_digest(sample_cache), False),
                                       ("other-cache", code_digest(), "feedfeedfeedfeed", False),
                                       ("no-record", None, None, False)):
        _finished(tmp_path / name, record=False, **overrides)
        if code is not None:
            made_by(tmp_path / name, code, features)
        assert _settled(tmp_path / name, TransferConfig, overrides, cache_digest(sample_cache)) is kept, name
        assert (tmp_path / name).exists() is kept
    err = capsys.readouterr().err
    assert "older-code: made by other code" in err and "other-cache: made by another feature cache" in err


def test_the_code_digest_is_what_a_run_records(pretrained):
    from anchor_embed.fingerprint import code_digest

    digest = code_digest()
    assert len(digest) == 16 and json.loads((pretrained / "run.json").read_text())["code"] == digest


def test_a_failing_run_is_recorded_and_the_bench_goes_on(sample, sample_cache, pretrained, tmp_path):
    """A transfer that refuses (here: a content threshold no pair reaches) is named in `failed`, not raised."""
    from anchor_embed.fingerprint import cache_digest
    from benchmarks.quality import Budget, _transfer

    failed: list[str] = []
    budget = Budget(transfer_epochs=1, patience=0)
    run = _transfer(pretrained, sample / "ids.npy", tmp_path / "clean" / "seed0" / "contrastive", 0, budget,
                    {"method": "contrastive", "threshold": 2.0, "quantile": None}, cache_digest(sample_cache), failed)
    assert run is None and len(failed) == 1
    assert failed[0].startswith("clean/seed0/contrastive") and "fewer than 2 mined pairs" in failed[0]
    ok = _transfer(pretrained, sample / "ids.npy", tmp_path / "ok", 0, budget, {"method": "rkd"},
                   cache_digest(sample_cache), failed)
    assert ok == tmp_path / "ok" and (ok / "outcome.json").is_file() and len(failed) == 1
