"""Which ID embeddings a transfer run may read: the hold-out never, validation apart, and a record of both."""

import numpy as np

from anchor_embed.data.id_embeddings import IdEmbeddings
from anchor_embed.evaluation.metrics import holdout_split
from anchor_embed.features.cache import open_cache
from anchor_embed.transfer.split import split_streamers


def test_holdout_is_per_key_so_any_subset_agrees():
    keys = [f"k{i}" for i in range(2000)]
    held = holdout_split(keys, 0.2, seed=3)
    assert 0.17 < len(held) / len(keys) < 0.23 and held == holdout_split(list(reversed(keys)), 0.2, seed=3)
    subset = keys[::3]                                     # e.g. the streamers a sparse ID file covers
    assert holdout_split(subset, 0.2, seed=3) == held & set(subset)
    assert held != holdout_split(keys, 0.2, seed=4)
    assert not holdout_split(keys, 0.2, seed=3, salt="validation") >= held     # an independent draw
    assert holdout_split(keys, 0.0) == set()


def test_split_removes_the_holdout_and_sets_validation_apart(sample_cache):
    cache = open_cache(sample_cache)
    rng = np.random.default_rng(0)
    keys = cache.keys[:60]
    ids = IdEmbeddings(keys, rng.normal(size=(60, 8)).astype(np.float32))
    split = split_streamers(cache, ids, holdout_frac=0.2, val_frac=0.2, seed=0)
    held = holdout_split(keys, 0.2, 0)
    pos = cache.key_index()
    held_rows = {pos[k] for k in held}
    train, val = set(split.train_rows.tolist()), set(split.val_rows.tolist())
    assert split.held_out == held and not (train & val) and not ((train | val) & held_rows)
    assert train | val | held_rows == {pos[k] for k in keys} and val
    assert not split.id_vectors[sorted(val | held_rows)].any()          # methods never read these
    assert not split.val_vectors[sorted(held_rows)].any()                # validation never reads the hold-out
    np.testing.assert_array_equal(split.val_vectors[sorted(val)], ids.vectors[[keys.index(cache.keys[r])
                                                                                 for r in sorted(val)]])
    assert set(split.seen_keys(cache.keys)) == {cache.keys[r] for r in train | val}
    none = split_streamers(cache, ids, holdout_frac=0.0, val_frac=0.1, seed=0)
    assert not none.held_out and len(none.train_rows) + len(none.val_rows) == 60


def test_a_validation_share_of_one_or_two_streamers_validates_nothing_and_they_train(sample_cache):
    """A --val-frac drawing 1 streamer kept it out of training without validating on it (validation needs 2),
    and one drawing 2 picked epochs and maps by the luck of two streamers: below MIN_VALIDATION the run goes on
    as with --val-frac 0 (every usable streamer trains) and says how many the share gave."""
    from anchor_embed.transfer.split import no_validation_reason
    from anchor_embed.transfer.validation import split_validation

    cache = open_cache(sample_cache)
    keys = cache.keys[:60]
    ids = IdEmbeddings(keys, np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32))
    pos = cache.key_index()
    fracs = np.round(np.arange(0.005, 0.2, 0.005), 3)
    drawn = {f: len(holdout_split(keys, f, 0, salt="validation")) for f in fracs}
    for size in (1, 2, 3):                              # 3: MIN_VALIDATION, the README's figure
        frac = float(next(f for f in fracs if drawn[f] == size))
        split = split_streamers(cache, ids, holdout_frac=0.0, val_frac=frac, seed=0)
        if size < 3:
            assert not len(split.val_rows) and split_validation(split) is None
            assert sorted(split.train_rows.tolist()) == sorted(pos[k] for k in keys)      # they train
            assert split.id_vectors[split.train_rows].any(axis=1).all()
            said = f"--val-frac {frac:g} of 60 streamers gives {size}; validating needs 3 or more"
            assert no_validation_reason(split, frac).startswith(said)
            assert ("so it joins the training streamers" if size == 1 else "so they join the training streamers") \
                in no_validation_reason(split, frac)
        else:
            assert len(split.val_rows) == size and split_validation(split) is not None
            assert len(split.train_rows) == 60 - size
