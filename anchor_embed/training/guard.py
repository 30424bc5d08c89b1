"""Collapse guard: a contrastive model whose loss sits at chance or whose vectors all coincide has failed."""

from __future__ import annotations

import math

CHANCE_SHARE = 0.02      # a loss within 2% of ln(candidates) is what every-vector-alike scores
SPREAD_FLOOR = -0.1      # uniformity (Wang & Isola) above this: almost all vectors at the same point


def collapse_reason(loss: float | None, candidates: int | None, uniformity: float | None,
                    previous_loss: float | None = None) -> str | None:
    """Why an epoch looks collapsed (no spread, or a loss stuck at chance), or None when it does not.

    `candidates` is how many entries the InfoNCE softmax chooses among (B, or B + queue); `uniformity` is
    log E exp(-2 |x - y|^2) over pairs of the epoch's vectors: 0 when all coincide, about -4 when spread
    over a sphere of many dimensions. A first epoch starts at chance by construction, so the loss counts
    only from the second epoch on, when it sits at chance and has not fallen since the epoch before. A loss or
    spread that is NaN or infinite (bad inputs, an overflow) has failed too: every comparison with NaN is False,
    so it would otherwise pass as a good epoch and its NaN weights be saved as the run's model.
    """
    if loss is not None and not math.isfinite(loss):
        return f"loss is {loss} (NaN or infinite: the weights are no longer numbers)"
    if uniformity is not None and not math.isfinite(uniformity):
        return f"vectors' uniformity is {uniformity} (NaN or infinite vectors)"
    if uniformity is not None and uniformity > SPREAD_FLOOR:
        return f"vectors have no spread (uniformity {uniformity:.3f} > {SPREAD_FLOOR})"
    if loss is not None and previous_loss is not None and candidates and candidates > 1:
        chance = math.log(candidates)
        if abs(loss - chance) <= CHANCE_SHARE * chance and loss >= previous_loss * (1 - CHANCE_SHARE / 4):
            return (f"loss {loss:.4f} stays within {CHANCE_SHARE:.0%} of chance ln({candidates}) = {chance:.4f} "
                    f"(epoch before: {previous_loss:.4f})")
    return None
