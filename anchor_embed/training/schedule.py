"""Learning-rate schedules as pure functions of the step, so a resumed run needs no scheduler state."""

from __future__ import annotations

import math


def lr_at(step: int, total: int, base: float, warmup: int, kind: str = "cosine", floor: float = 0.0) -> float:
    """The learning rate of optimisation step `step` (0-based) of `total`.

    Linear warmup from base/warmup to base over the first `warmup` steps, then `constant` (base) or `cosine`
    decay from base to base * floor at the last step (Loshchilov & Hutter 2017, SGDR, without restarts).
    """
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    if kind == "constant" or total <= warmup + 1:
        return base
    progress = min(1.0, (step - warmup) / (total - warmup - 1))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
