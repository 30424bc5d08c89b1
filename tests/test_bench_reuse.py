"""The bench reuses a finished run only when it was made with today's settings (defaults included)."""

from __future__ import annotations

import json

from anchor_embed.config import resolve
from anchor_embed.transfer.config import TransferConfig
from benchmarks.quality import _settled


def _finished(run, **overrides):
    run.mkdir(parents=True)
    cfg = resolve(TransferConfig, None, overrides)
    (run / "config.json").write_text(cfg.model_dump_json())
    (run / "outcome.json").write_text(json.dumps({"complete": True}))


def test_a_finished_run_with_the_same_settings_is_reused(tmp_path):
    _finished(tmp_path / "a", method="contrastive", seed=1, epochs=100)
    assert _settled(tmp_path / "a", TransferConfig, {"method": "contrastive", "seed": 1, "epochs": 100})
    assert (tmp_path / "a" / "outcome.json").is_file()


def test_a_run_of_other_settings_or_older_defaults_is_removed(tmp_path, capsys):
    _finished(tmp_path / "b", method="contrastive", params={"group": 4})          # what an older default made
    assert not _settled(tmp_path / "b", TransferConfig, {"method": "contrastive"})
    assert not (tmp_path / "b").exists() and "other settings" in capsys.readouterr().err
    assert not _settled(tmp_path / "never", TransferConfig, {"method": "rkd"})       # nothing there yet
