"""A loss that goes NaN or infinite stops the run with one error and keeps the last good epoch's model (QA 6, F3:
a NaN loss passed the collapse guard, and NaN weights were saved as a complete run)."""

import json
import math

import pytest
import torch

from anchor_embed.errors import TrainingCollapsed
from anchor_embed.features.cache import open_cache
from anchor_embed.model.store import load_model
from anchor_embed.training.fit import fit, open_run
from anchor_embed.training.guard import collapse_reason
from tests.training.test_fit import Scripted, _cfg


class GoesNaN(Scripted):
    """Trains normally for `good` epochs, then every loss is NaN (as NaN reliability weights made it)."""

    def __init__(self, cache, good):
        super().__init__(cache, [0.1 * (i + 1) for i in range(10)])
        self.good = good

    def loss(self, epoch, step, rng):
        loss, stats = super().loss(epoch, step, rng)
        if epoch >= self.good:
            loss = loss * float("nan")
            stats = {"loss": loss.item()}
        return loss, stats


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_the_guard_sees_a_loss_or_spread_that_is_no_number(bad):
    assert "NaN or infinite" in collapse_reason(bad, 16, -2.0, 2.0)
    assert "NaN or infinite" in collapse_reason(2.0, 16, bad, 2.0)
    assert collapse_reason(2.0, 16, -2.0, None) is None


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_epoch(sample_cache, tmp_path):
    task = GoesNaN(open_cache(sample_cache), good=2)
    cfg = _cfg(patience=0)
    with pytest.raises(TrainingCollapsed, match=r"at epoch 3 \(loss is nan.*epoch 2 stays in.*Check the inputs for NaN"):
        fit(task, tmp_path, cfg, open_run(tmp_path, cfg, False, {}))
    assert not (tmp_path / "outcome.json").exists()               # not a finished run
    model, _ = load_model(tmp_path)
    for k, v in model.state_dict().items():                        # epoch 2's weights, all numbers
        assert torch.equal(v, task.weights[1][k]), k
        assert not v.is_floating_point() or bool(torch.isfinite(v).all()), k
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["epoch"] == 2
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert math.isnan(rows[-1]["loss"]) and not rows[-1]["best"]
