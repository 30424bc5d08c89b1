"""The map choice's one-standard-error rule of a transfer run's validation, against scipy's standard error of
the mean."""

import numpy as np
from scipy.stats import sem

from anchor_embed.transfer.validation import choose_map


def test_choose_map_keeps_the_residual_only_beyond_one_standard_error():
    """The plain maps compete by their mean (the first of equal ones); the residual map replaces the best of them
    only when its mean lead exceeds the standard error of the paired differences (scipy's sem); a residual
    map alone is kept; identical figures keep the plain map."""
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, 200)
    kernel, linear = base.copy(), base - 0.01
    assert choose_map({"kernel": kernel, "linear": linear}) == "kernel"
    assert choose_map({"kernel": kernel, "linear": kernel.copy()}) == "kernel"
    noise = rng.normal(0, 0.2, 200)
    small = base + noise - noise.mean() + 0.5 * sem(noise)          # leads by half a standard error
    large = base + noise - noise.mean() + 2.0 * sem(noise)          # leads by two
    assert choose_map({"kernel": kernel, "linear": linear, "residual": small}) == "kernel"
    assert choose_map({"kernel": kernel, "linear": linear, "residual": large}) == "residual"
    assert choose_map({"linear": linear, "kernel": linear - 0.2, "residual": linear + noise - noise.mean() +
                       2.0 * sem(noise)}) == "residual"              # judged against the best plain map
    assert choose_map({"kernel": kernel, "residual": kernel.copy()}) == "kernel"
    assert choose_map({"kernel": kernel, "residual": kernel + 0.01}) == "residual"     # a lead with no spread
    assert choose_map({"residual": small}) == "residual"
    assert choose_map({"kernel": kernel[:1], "residual": kernel[:1] + 1}) == "kernel"   # one query: no error bar
