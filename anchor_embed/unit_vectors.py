"""Row-wise L2 normalisation: every similarity in the project is a cosine of unit vectors."""

from __future__ import annotations

import numpy as np


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """A float32 copy of `x` with unit-length rows (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
