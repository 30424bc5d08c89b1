"""Two masked views of a streamer, built on atom rows of the feature cache (never on raw content).

Each view keeps a random subset of the streamer's atoms (text fields, frames, tags) and may drop whole
modalities; atoms shared by both views are capped at `max_overlap` of their union, so the model cannot
match views by copying. A streamer with a single atom gets it in both views (told apart by feature noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Atom = tuple[str, int]  # (kind, position in that streamer's list of that kind)


@dataclass(frozen=True)
class ViewConfig:
    max_overlap: float = 0.5
    modality_drop: float = 0.2
    keep: float = 0.9  # share of atoms that enter the union at all


def split_views(atoms: list[Atom], cfg: ViewConfig, rng: np.random.Generator) -> tuple[list[Atom], list[Atom]]:
    """Two atom subsets whose shared part is at most `max_overlap` of their union (when the union has >1 atom)."""
    n = len(atoms)
    if n == 0:
        return [], []
    if n == 1:
        return list(atoms), list(atoms)
    order = [atoms[i] for i in rng.permutation(n)]
    union = order[:max(2, int(round(cfg.keep * n)))]
    u = len(union)
    max_shared = int(np.floor(cfg.max_overlap * u + 1e-9))
    shared = int(rng.integers(0, max_shared + 1)) if max_shared > 0 else 0
    both, rest = union[:shared], union[shared:]
    cut = int(rng.integers(1, len(rest))) if len(rest) > 1 else len(rest)
    a, b = both + rest[:cut], both + rest[cut:]
    if not b:  # one exclusive atom left: both views hold the same set; noise tells them apart
        b = list(a)
    return _enforce_cap(_drop_modality(a, cfg, rng), _drop_modality(b, cfg, rng), cfg.max_overlap)


def _enforce_cap(a: list[Atom], b: list[Atom], cap: float) -> tuple[list[Atom], list[Atom]]:
    """Dropping a modality shrinks the union: take shared atoms out of the larger view until the cap holds."""
    a, b = list(a), list(b)
    while len(set(a) | set(b)) > 1 and overlap(a, b) > cap + 1e-9:
        shared = [x for x in a if x in set(b)]
        big = a if len(a) >= len(b) else b
        if len(big) <= 1:
            break
        big.remove(shared[-1])
    return a, b


def _drop_modality(view: list[Atom], cfg: ViewConfig, rng: np.random.Generator) -> list[Atom]:
    """Maybe drop one whole modality, never leaving the view empty."""
    kinds = sorted({k for k, _ in view})
    if len(kinds) < 2 or rng.random() >= cfg.modality_drop:
        return view
    gone = kinds[int(rng.integers(len(kinds)))]
    return [a for a in view if a[0] != gone]


def overlap(a: list[Atom], b: list[Atom]) -> float:
    """Shared atoms over the union of two views."""
    sa, sb = set(a), set(b)
    return len(sa & sb) / max(len(sa | sb), 1)
