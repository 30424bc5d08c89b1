"""The bench report's claims: the paired per-seed difference of the default against the best other row,
re-derived by hand."""

import statistics

from benchmarks.report import claims, paired


def _rows(figures: dict[int, float]) -> list[dict]:
    return [{"seed": s, "recall_at_10": v} for s, v in figures.items()]


def test_paired_difference_is_over_the_shared_seeds_only():
    a = _rows({0: 0.30, 1: 0.20, 2: 0.25})
    b = _rows({0: 0.28, 2: 0.26})                          # seed 1 failed
    mean, sd, wins, n = paired(a, b)
    want = [0.30 - 0.28, 0.25 - 0.26]
    assert n == 2 and wins == 1
    assert abs(mean - statistics.mean(want)) < 1e-12 and abs(sd - statistics.stdev(want)) < 1e-12
    assert paired(a, _rows({1: 0.1})) == (0.20 - 0.1, 0.0, 1, 1)        # one seed: no spread
    assert paired(a, _rows({5: 0.1})) is None
    assert paired([{"recall_at_10": 0.3}], b) is None                   # rows without seeds (an older report)


def test_claims_pair_the_default_with_the_best_other_row_not_the_frozen_or_teaching_rows():
    """A split-wide swing (seed 1 harder for every row) makes the margin in standard deviations small while the
    default is ahead on every seed by the same amount; frozen rows and the teaching IDs never count as 'other'."""
    per_model = {
        "contrastive": _rows({0: 0.30, 1: 0.20, 2: 0.26}),
        "ridge (reference)": _rows({0: 0.25, 1: 0.15, 2: 0.21}),
        "residual ridge (reference)": _rows({0: 0.29, 1: 0.19, 2: 0.25}),
        "frozen backbones": _rows({0: 0.9, 1: 0.9, 2: 0.9}),
        "ID embeddings used for training": _rows({0: 0.9, 1: 0.9, 2: 0.9}),
    }
    c = claims(per_model)
    assert c["best_other"] == "residual ridge (reference)"
    assert c["margin_sd"] < 0.5
    mean, sd, wins, n = c["paired"]
    assert abs(mean - 0.01) < 1e-12 and sd < 1e-12 and (wins, n) == (3, 3)
