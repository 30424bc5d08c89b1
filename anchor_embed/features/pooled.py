"""Frozen-feature vectors without any training: per streamer, the mean feature of each modality.

The 'frozen backbones' reference of evaluate (all modalities, or one at a time to show where the signal
lives), the input of the ridge reference and the 'text' pair filter of transfer.
"""

from __future__ import annotations

import numpy as np

from anchor_embed.features.cache import KINDS, FeatureCache
from anchor_embed.features.meta_tags import meta_tag_mask
from anchor_embed.vectorspace import normalise_rows


def pooled_block(cache: FeatureCache, kind: str) -> np.ndarray:
    """(n, dim) unit mean feature of each streamer's atoms of one kind; zeros where a streamer has none.

    Tags made from meta fields (`features --meta-tags`) are left out: their names are bucket labels, which a
    text backbone embeds as near-identical noise that would drown the real tags; their identity reaches the
    ridge reference one-hot and the fusion model through learned embeddings.
    """
    dim = cache.dim(kind)
    m = np.zeros((cache.n, dim), np.float32)
    skip = meta_tag_mask(cache.tag_names, cache.meta.get("meta_tags")) if kind == "tag" else None
    if skip is not None and not skip.any():
        skip = None
    for i in range(cache.n):
        rows = cache.rows(kind, i)
        if skip is not None:
            rows = rows[~skip[rows]]
        if len(rows):
            v = np.asarray(cache.feats[kind][np.sort(rows)], np.float32).mean(0)
            m[i] = v / max(np.linalg.norm(v), 1e-12)
    return m


def frozen_vectors(cache: FeatureCache, kinds: tuple[str, ...] = KINDS) -> np.ndarray:
    """The unit concatenation of the pooled blocks of `kinds` (kinds without features are left out)."""
    blocks = [pooled_block(cache, kind) for kind in kinds if cache.dim(kind)]
    return normalise_rows(np.concatenate(blocks, 1))
