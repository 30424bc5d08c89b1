"""Filter by the cosine of frozen backbone features (mean text, frame and tag features)."""

from __future__ import annotations

from anchor_embed.features.pooled import frozen_vectors
from anchor_embed.transfer.filters.base import FilterInputs, Score, cosine_of_rows


def text_score(inputs: FilterInputs) -> Score:
    """Cosine of the two streamers' frozen-feature vectors: content likeness no training has shaped."""
    return cosine_of_rows(frozen_vectors(inputs.cache))
