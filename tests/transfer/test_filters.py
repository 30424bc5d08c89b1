"""Pair filters: the registry, the nickname similarity against the textbook recursion, each filter's score."""

import math
from functools import lru_cache
from itertools import product

import numpy as np
import pytest

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.features.cache import open_cache
from anchor_embed.features.pooled import frozen_vectors
from anchor_embed.model.batcher import Batcher, embed_all
from anchor_embed.model.store import load_model
from anchor_embed.transfer.filters import FILTERS
from anchor_embed.transfer.filters.base import FilterInputs
from anchor_embed.transfer.filters.nickname import name_similarity


def _levenshtein(a: str, b: str) -> int:
    """The recursive definition (insert, delete, substitute; each costs 1), memoised."""
    @lru_cache(None)
    def d(i: int, j: int) -> int:
        if not i or not j:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
    return d(len(a), len(b))


def test_name_similarity_against_recursive_levenshtein():
    words = ["", "a", "ab", "ba", "kitten", "sitting", "ninja", "ninja_2", "Ninja", "主播小明", "主播小红"]
    for a, b in product(words, words):
        fa, fb = a.casefold(), b.casefold()
        want = 0.0 if not fa or not fb else 1 - _levenshtein(fa, fb) / max(len(fa), len(fb))
        assert math.isclose(name_similarity(a, b), want), (a, b)
    assert name_similarity("Ninja", "ninja") == 1.0 and name_similarity("", "x") == 0.0
    assert math.isclose(name_similarity("ninja", "ninja_2"), 1 - 2 / 7)


def test_registry_names_and_unknown_name():
    assert FILTERS.names() == ["content", "text", "nickname", "none"]
    with pytest.raises(AnchorEmbedError, match="filter 'contnet': unknown; choose from content, text"):
        FILTERS.load("contnet")


def test_each_filter_scores_what_it_says(sample_cache, pretrained):
    cache = open_cache(sample_cache)
    model, _ = load_model(pretrained)
    batcher = Batcher.for_model(model, cache)
    inputs = FilterInputs(cache, model, batcher)
    a, b = np.arange(0, 20), np.arange(20, 40)
    v = embed_all(model, batcher)
    np.testing.assert_allclose(FILTERS.load("content")(inputs)(a, b), np.sum(v[a] * v[b], 1), atol=1e-5)
    f = frozen_vectors(cache)
    np.testing.assert_allclose(FILTERS.load("text")(inputs)(a, b), np.sum(f[a] * f[b], 1), atol=1e-5)
    names = cache.nicknames()
    want = [name_similarity(names[i], names[j]) for i, j in zip(a, b, strict=True)]
    np.testing.assert_allclose(FILTERS.load("nickname")(inputs)(a, b), want, atol=1e-6)
    assert FILTERS.load("none")(inputs) is None
