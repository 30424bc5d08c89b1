"""What every transfer method gets (TransferData, its own typed Params) and must provide (a loss)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from anchor_embed.config import RunConfig

Embed = Callable[[np.ndarray], torch.Tensor]  # cache rows -> (B, out_dim) unit vectors of the model in training


@dataclass
class TransferData:
    """Training data in cache-row terms; held-out and validation streamers appear nowhere in it."""

    id_vectors: np.ndarray                       # (n_cache, D) float32, zeros where a streamer has none (the
    #                                              teacher: the ID embeddings, or their blend, teacher_share < 1)
    train_rows: np.ndarray                       # cache rows with an ID embedding to learn from
    pair_query: np.ndarray                       # kept mined pairs (cache rows)
    pair_neighbour: np.ndarray
    pair_score: np.ndarray | None = None         # their cosine in id_vectors (what they were mined by)
    dropped_query: np.ndarray | None = None      # mined pairs the filter dropped
    dropped_neighbour: np.ndarray | None = None
    keys: list[str] | None = None                # anchor_id of each cache row (for per-streamer inputs)
    checked_inputs: object | None = None         # what the method's check_inputs read (a weights file's counts)

    def __post_init__(self) -> None:
        empty = np.zeros(0, np.int64)
        if self.pair_score is None:
            self.pair_score = np.zeros(len(self.pair_query), np.float32)
        self.dropped_query = empty if self.dropped_query is None else self.dropped_query
        self.dropped_neighbour = empty if self.dropped_neighbour is None else self.dropped_neighbour


class TransferMethod(nn.Module):
    """A loss on model vectors for one sampled batch; extra parameters (a map, a classifier) live on the module.

    Subclasses set `Params` to their own settings model; `params` arrives validated against it.
    """

    # dropout on a training batch's input features unless --input-dropout says otherwise: 0 for methods whose
    # regression or distillation target collapses under it (feature collapses on twitch at 0.2)
    input_dropout: float = 0.0
    # weight of the linear map blended into the output unless --linear-share says otherwise (model/linear_map.py)
    linear_share: float = 0.0

    class Params(RunConfig):
        """No settings."""

    def __init__(self, out_dim: int, data: TransferData, params: RunConfig, seed: int = 0) -> None:
        super().__init__()
        self.data, self.params, self.seed = data, params, seed

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict:
        """Default batch: distinct training streamers."""
        rows = rng.choice(self.data.train_rows, size=min(batch_size, len(self.data.train_rows)), replace=False)
        return {"rows": rows}

    def loss(self, embed: Embed, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def check_inputs(cls, params: RunConfig, keys: list[str], train_rows: np.ndarray) -> object | None:
        """Read the method's own inputs (a weights file) and refuse a bad one before the run mines; what it
        returns reaches the method as `TransferData.checked_inputs`, so the run reads them once. None by
        default."""
        return None

    def chance_candidates(self, batch_size: int) -> int | None:
        """For an InfoNCE loss, how many entries its softmax chooses among (the collapse guard's chance level)."""
        return None
