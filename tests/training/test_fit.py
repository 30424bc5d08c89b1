"""The one training loop: best-epoch selection, early stop, resume, the schedule and the collapse guard."""

import json
import math

import numpy as np
import pytest
import torch

from anchor_embed.errors import AnchorEmbedError, TrainingCollapsed
from anchor_embed.features.cache import open_cache
from anchor_embed.model.batcher import Batcher
from anchor_embed.model.store import load_model
from anchor_embed.training.config import PretrainConfig, TrainingConfig
from anchor_embed.training.fit import Task, fit, open_run
from anchor_embed.training.guard import collapse_reason
from anchor_embed.training.pretrain import build_model
from anchor_embed.training.schedule import lr_at


class Scripted(Task):
    """A real fusion model trained on a simple loss, with validation figures given by a script."""

    label = "scripted"
    monitor = "score"

    def __init__(self, cache, script, uniformity=None):
        torch.manual_seed(0)
        self.model = build_model(cache, PretrainConfig(d_model=16, out_dim=8, layers=1, heads=2))
        self.batch = Batcher.for_model(self.model, cache).make(list(range(16)))
        self.script, self.uniformity, self.calls, self.weights = list(script), uniformity, 0, []

    def steps_per_epoch(self):
        return 3

    def batch_size(self):
        return 16

    def loss(self, epoch, step, rng):
        loss = self.model(self.batch).sum(0).pow(2).mean()   # pulls the vectors apart: weights change every step
        return loss, {"loss": loss.item()}

    def validate(self):
        self.weights.append({k: v.clone() for k, v in self.model.state_dict().items()})
        value = self.script[self.calls]
        self.calls += 1
        out = {"score": value}
        if self.uniformity is not None:
            out["uniformity"] = self.uniformity[self.calls - 1]
        return out


def _cfg(**kw):
    return TrainingConfig(**{"epochs": 8, "lr": 0.01, "patience": 2, "warmup": 0.0, **kw})


def test_best_epoch_is_kept_and_patience_stops(sample_cache, tmp_path):
    task = Scripted(open_cache(sample_cache), [0.1, 0.3, 0.2, 0.25, 0.9, 0.9, 0.9, 0.9])
    cfg = _cfg()
    history = fit(task, tmp_path, cfg, open_run(tmp_path, cfg, False, {}))
    assert len(history) == 4                               # best at epoch 2, then 2 epochs without a better one
    assert [r["best"] for r in history] == [True, True, False, False]
    outcome = json.loads((tmp_path / "outcome.json").read_text())
    assert outcome == {"complete": True, "epochs_run": 4, "stopped_by": "patience", "best_epoch": 2,
                       "monitor": "score", "best": 0.3}
    model, _ = load_model(tmp_path)
    for k, v in model.state_dict().items():                 # the run's model is epoch 2's, not the last one
        assert torch.equal(v, task.weights[1][k]), k
    assert not all(torch.equal(task.weights[1][k], task.weights[3][k]) for k in task.weights[1])
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["validation"] == {"score": 0.3}
    from anchor_embed.data.schemas import EpochMetrics, RunOutcome

    assert [EpochMetrics.model_validate(r).best for r in rows] == [True, True, False, False]   # the contract
    RunOutcome.model_validate(outcome)


def test_resume_keeps_the_best_so_far(sample_cache, tmp_path):
    cache = open_cache(sample_cache)
    script = [0.1, 0.5, 0.2, 0.3, 0.4, 0.45, 0.46, 0.47]
    cfg = _cfg(patience=3, schedule="constant")   # a cosine schedule would bend differently under another cap
    full = tmp_path / "full"
    fit(Scripted(cache, script), full, cfg, open_run(full, cfg, False, {}))
    cut, short = tmp_path / "cut", _cfg(patience=3, schedule="constant", epochs=3)
    fit(Scripted(cache, script), cut, short, open_run(cut, short, False, {}))
    assert json.loads((cut / "outcome.json").read_text())["stopped_by"] == "epochs"
    resumed = Scripted(cache, script[3:])
    info = json.loads((cut / "run.json").read_text())
    (cut / "run.json").write_text(json.dumps({**info, "code": "older"}))    # as if an older version trained it
    fit(resumed, cut, cfg, open_run(cut, cfg, True, {}))
    info = json.loads((cut / "run.json").read_text())
    assert info["earlier_code"] == ["older"] and info["code"] == json.loads((full / "run.json").read_text())["code"]
    a, b = json.loads((full / "outcome.json").read_text()), json.loads((cut / "outcome.json").read_text())
    assert a == b and a["best_epoch"] == 2 and a["epochs_run"] == 5
    for (k, x), y in zip(load_model(full)[0].state_dict().items(), load_model(cut)[0].state_dict().values(),
                         strict=True):
        assert torch.allclose(x, y, atol=1e-6), k


def test_collapse_stops_with_one_clear_error_and_keeps_the_earlier_model(sample_cache, tmp_path):
    task = Scripted(open_cache(sample_cache), [0.2, 0.3, 0.4], uniformity=[-2.0, -1.5, -0.01])
    cfg = _cfg()
    # TrainingCollapsed is an AnchorEmbedError (one line at the CLI) that `transfer --choose` can tell apart
    assert issubclass(TrainingCollapsed, AnchorEmbedError)
    with pytest.raises(TrainingCollapsed, match=r"collapsed at epoch 3 \(vectors have no spread.*epoch 2 stays"):
        fit(task, tmp_path, cfg, open_run(tmp_path, cfg, False, {}))
    model, _ = load_model(tmp_path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, task.weights[1][k]), k       # the collapsed epoch was not saved
    assert not (tmp_path / "outcome.json").exists()        # the run did not finish


def test_collapse_reason_against_the_definitions():
    chance = math.log(256)
    assert collapse_reason(chance * 0.99, 256, -3.0, chance * 0.99) is not None   # stuck at chance
    assert collapse_reason(chance * 1.01, 256, -3.0, chance * 1.0) is not None
    assert collapse_reason(chance * 0.99, 256, -3.0) is None                      # a first epoch starts there
    assert collapse_reason(chance * 0.985, 256, -3.0, chance) is None             # still falling
    assert collapse_reason(chance * 0.95, 256, -3.0, chance * 0.95) is None       # below chance: learning
    assert collapse_reason(2.0, 256, -0.05) is not None                         # no spread
    assert collapse_reason(None, None, None) is None
    x = torch.nn.functional.normalize(torch.ones(50, 8) + 1e-3 * torch.randn(50, 8), dim=1)
    from anchor_embed.losses import uniformity

    assert collapse_reason(None, None, float(uniformity(x))) is not None       # near-identical vectors


def test_lr_schedule_warmup_then_cosine():
    total, base, warm = 100, 0.01, 10
    lrs = [lr_at(s, total, base, warm) for s in range(total)]
    np.testing.assert_allclose(lrs[:warm], base * np.arange(1, warm + 1) / warm)
    assert lrs[warm] == pytest.approx(base) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    mid = warm + (total - warm - 1) // 2
    assert lrs[mid] == pytest.approx(base * 0.5 * (1 + math.cos(math.pi * (mid - warm) / (total - warm - 1))))
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1:], strict=False))
    assert [lr_at(s, total, base, 0, "constant") for s in (0, 50, 99)] == [base] * 3


def test_weight_average_follows_the_polyak_recursion_and_restores_the_trained_weights():
    from anchor_embed.training.averaging import WeightAverage

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    avg = WeightAverage(net, decay=0.8)
    expected = [p.detach().double().clone() for p in net.parameters()]
    for _ in range(5):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        avg.update()
        expected = [0.8 * e + 0.2 * p.detach().double() for e, p in zip(expected, net.parameters(), strict=True)]
    trained = [p.detach().clone() for p in net.parameters()]
    with avg.applied():
        for p, e in zip(net.parameters(), expected, strict=True):
            assert torch.allclose(p.double(), e, atol=1e-6)
    for p, t in zip(net.parameters(), trained, strict=True):
        assert torch.equal(p, t)                            # the optimiser's weights come back untouched


def test_weight_average_is_what_a_run_validates_keeps_and_resumes(sample_cache, tmp_path):
    cache = open_cache(sample_cache)
    script = [0.1, 0.5, 0.2, 0.3, 0.4, 0.45, 0.46, 0.47]
    cfg = _cfg(patience=3, schedule="constant", weight_average=0.7)
    full = tmp_path / "full"
    task = Scripted(cache, script)
    fit(task, full, cfg, open_run(full, cfg, False, {}))
    trained = task.model.state_dict()
    kept = load_model(full)[0].state_dict()
    for k, v in kept.items():                               # the kept model is the average validated at epoch 2
        assert torch.equal(v, task.weights[1][k]), k
    assert not all(torch.equal(task.weights[-1][k], trained[k]) for k in trained)  # validation saw the average
    cut, short = tmp_path / "cut", _cfg(patience=3, schedule="constant", epochs=3, weight_average=0.7)
    fit(Scripted(cache, script), cut, short, open_run(cut, short, False, {}))
    fit(Scripted(cache, script[3:]), cut, cfg, open_run(cut, cfg, True, {}))
    for (k, x), y in zip(kept.items(), load_model(cut)[0].state_dict().values(), strict=True):
        assert torch.allclose(x, y, atol=1e-6), k           # the average survives a resume
    resumed = json.loads((cut / "metrics.jsonl").read_text().splitlines()[-1])
    final = json.loads((full / "metrics.jsonl").read_text().splitlines()[-1])
    assert resumed["loss"] == pytest.approx(final["loss"], rel=1e-5)
