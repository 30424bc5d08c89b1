"""Which streamers' ID embeddings a transfer run may use, and which it validates on.

Evaluate's hold-out (when `holdout_frac` > 0) is removed first and never read again; a seeded validation
share of the rest is set aside for epoch selection; the run trains on what is left. The keys of every ID
embedding the run used (training and validation, and those its starting model saw) are saved in
RUN/seen_ids.txt, so `evaluate` can refuse a model that has seen its hold-out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anchor_embed.data.id_embeddings import IdEmbeddings
from anchor_embed.data.key_file import read_keys
from anchor_embed.evaluation.metrics import holdout_split
from anchor_embed.features.cache import FeatureCache

SEEN_IDS = "seen_ids.txt"
MIN_TO_VALIDATE = 20     # streamers with ID embeddings (after the hold-out) a validation share is carved from
# validation streamers a share must hold to validate: a figure on one or two streamers picks the epoch, the map
# and the residual map's alpha by the luck of those few (their Recall@10 moves in steps of .05 or more); a
# smaller share trains on its streamers and the run goes on as with --val-frac 0, saying so. Tiny still: the
# tests' 75-streamer sample validates on 3 to 8, and even 100-150 cannot tell runs .005 apart (docs/tuning.md,
# eighth round)
MIN_VALIDATION = 3


@dataclass
class TransferSplit:
    """Cache rows of the training and validation streamers, with their ID embeddings laid out by cache row."""

    id_vectors: np.ndarray     # (n_cache, D): training rows only, zeros elsewhere (what methods and mining read)
    val_vectors: np.ndarray    # (n_cache, D): training and validation rows (what validation's truth reads)
    train_rows: np.ndarray
    val_rows: np.ndarray
    held_out: set[str]
    drawn: int = 0             # validation streamers the share drew: fewer than MIN_VALIDATION train instead

    def seen_keys(self, keys: list[str]) -> list[str]:
        """anchor_ids whose ID embeddings this run uses."""
        return [keys[r] for r in np.sort(np.concatenate([self.train_rows, self.val_rows]))]


def split_streamers(cache: FeatureCache, ids: IdEmbeddings, holdout_frac: float, val_frac: float,
                    seed: int) -> TransferSplit:
    """Hold-out first (evaluate's split), then validation from the rest (an independent seeded draw); a draw of
    fewer than MIN_VALIDATION streamers validates nothing and its streamers train."""
    held = holdout_split(ids.keys, holdout_frac, seed) if holdout_frac > 0 else set()
    usable = [k for k in ids.keys if k not in held]
    val = (holdout_split(usable, val_frac, seed, salt="validation")
           if val_frac > 0 and len(usable) >= MIN_TO_VALIDATE else set())
    drawn = len(val)
    if drawn < MIN_VALIDATION:
        val = set()
    pos, where = cache.key_index(), ids.index_of()
    id_vectors = np.zeros((cache.n, ids.dim), np.float32)
    val_vectors = np.zeros((cache.n, ids.dim), np.float32)
    for k in usable:
        val_vectors[pos[k]] = ids.vectors[where[k]]
        if k not in val:
            id_vectors[pos[k]] = ids.vectors[where[k]]
    train = np.array(sorted(pos[k] for k in usable if k not in val), np.int64)
    return TransferSplit(id_vectors, val_vectors, train, np.array(sorted(pos[k] for k in val), np.int64), held,
                         drawn)


def no_validation_reason(split: TransferSplit, val_frac: float) -> str:
    """Why a split has no validation (fewer than MIN_VALIDATION validation streamers), in words for the run's
    log."""
    usable = len(split.train_rows) + len(split.val_rows)
    if val_frac == 0:
        return "--val-frac 0"
    if usable < MIN_TO_VALIDATE:
        return (f"{usable} streamer(s) with ID embeddings to learn from; a validation share needs "
                f"{MIN_TO_VALIDATE} or more")
    return (f"--val-frac {val_frac:g} of {usable} streamers gives {split.drawn}; validating needs "
            f"{MIN_VALIDATION} or more" + ("" if not split.drawn else
                                           f", so {'it joins' if split.drawn == 1 else 'they join'} the training "
                                           "streamers"))


def read_seen(run: Path) -> set[str]:
    """The anchor_ids whose ID embeddings a run (and the runs it started from) used; empty for pretraining."""
    f = Path(run) / SEEN_IDS
    return set(read_keys(f)) if f.is_file() else set()
