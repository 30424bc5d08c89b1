"""Filter by the cosine of the pretrained model's content vectors: the default."""

from __future__ import annotations

from anchor_embed.model.batcher import embed_all
from anchor_embed.transfer.filters.base import FilterInputs, Score, cosine_of_rows


def content_score(inputs: FilterInputs) -> Score:
    """Cosine of the two streamers' vectors under the model transfer starts from."""
    return cosine_of_rows(embed_all(inputs.model, inputs.batcher))
