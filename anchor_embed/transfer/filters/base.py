"""What a filter reads (the cache, the starting model) and returns (a pair scorer, or None to keep all)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anchor_embed.features.cache import FeatureCache
from anchor_embed.model.batcher import Batcher
from anchor_embed.model.fusion import FusionModel
from anchor_embed.vectorspace import normalise_rows

Score = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (query rows, neighbour rows) -> content score per pair


@dataclass
class FilterInputs:
    """Everything a filter may look at: the streamers' cached features and the model transfer starts from."""

    cache: FeatureCache
    model: FusionModel
    batcher: Batcher


def cosine_of_rows(vectors: np.ndarray) -> Score:
    """A scorer: cosine of two streamers' rows of a vector table."""
    v = normalise_rows(vectors)
    return lambda a, b: np.sum(v[a] * v[b], axis=1)


def keep_all(inputs: FilterInputs) -> Score | None:
    """No filter: every mined pair is kept."""
    return None
