"""What every transfer method gets (TransferData) and must provide (TransferMethod)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

METHODS: dict[str, type[TransferMethod]] = {}


def register(name: str):
    """Class decorator: make a method selectable as `--method NAME`."""
    def deco(cls):
        cls.name = name
        METHODS[name] = cls
        return cls
    return deco


@dataclass
class TransferData:
    """Training data in cache-row terms; held-out streamers appear nowhere in it."""

    id_vectors: np.ndarray            # (n_cache, D) float32, zeros where a streamer has none
    train_rows: np.ndarray            # cache rows with an ID embedding, not held out
    pair_query: np.ndarray            # kept mined pairs (cache rows)
    pair_neighbour: np.ndarray


class TransferMethod(nn.Module):
    """A loss on model vectors for one sampled batch; extra parameters live on the module."""

    name = "base"

    def __init__(self, out_dim: int, data: TransferData, cfg) -> None:
        super().__init__()
        self.data, self.cfg = data, cfg

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict:
        """Default batch: distinct training streamers."""
        rows = rng.choice(self.data.train_rows, size=min(batch_size, len(self.data.train_rows)), replace=False)
        return {"rows": rows}

    def loss(self, embed, batch: dict) -> torch.Tensor:  # embed: rows -> (B, out_dim) vectors
        raise NotImplementedError
