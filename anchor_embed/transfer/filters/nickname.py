"""Filter by nickname edit distance: matrix accounts and renamed twins share most of their name."""

from __future__ import annotations

import numpy as np
from rapidfuzz.distance import Levenshtein

from anchor_embed.transfer.filters.base import FilterInputs, Score


def name_similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / longer length on case-folded, whitespace-folded names; 0 when either is empty."""
    a, b = " ".join(a.casefold().split()), " ".join(b.casefold().split())
    if not a or not b:
        return 0.0
    return 1.0 - Levenshtein.distance(a, b) / max(len(a), len(b))


def nickname_score(inputs: FilterInputs) -> Score:
    """Edit-distance similarity of the two streamers' nicknames."""
    names = inputs.cache.nicknames()
    return lambda a, b: np.array([name_similarity(names[i], names[j]) for i, j in zip(a, b, strict=True)],
                                 np.float32)
