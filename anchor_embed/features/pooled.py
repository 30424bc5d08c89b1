"""Frozen-feature vectors without any training: per streamer, the mean feature of each modality.

The 'frozen backbones' reference of evaluate (all modalities, or one at a time to show where the signal
lives), the input of the ridge reference and the 'text' pair filter of transfer.
"""

from __future__ import annotations

import numpy as np

from anchor_embed.features.cache import KINDS, FeatureCache
from anchor_embed.vectorspace import normalise_rows


def pooled_block(cache: FeatureCache, kind: str) -> np.ndarray:
    """(n, dim) unit mean feature of each streamer's atoms of one kind; zeros where a streamer has none."""
    dim = cache.dim(kind)
    m = np.zeros((cache.n, dim), np.float32)
    for i in range(cache.n):
        rows = cache.rows(kind, i)
        if len(rows):
            v = np.asarray(cache.feats[kind][np.sort(rows)], np.float32).mean(0)
            m[i] = v / max(np.linalg.norm(v), 1e-12)
    return m


def frozen_vectors(cache: FeatureCache, kinds: tuple[str, ...] = KINDS) -> np.ndarray:
    """The unit concatenation of the pooled blocks of `kinds` (kinds without features are left out)."""
    blocks = [pooled_block(cache, kind) for kind in kinds if cache.dim(kind)]
    return normalise_rows(np.concatenate(blocks, 1))
