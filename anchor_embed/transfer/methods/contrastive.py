"""Contrastive transfer: InfoNCE on (streamer, kept behavioural neighbour) pairs with false negatives masked."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from anchor_embed.config import RunConfig
from anchor_embed.losses import info_nce
from anchor_embed.transfer.methods.base import Embed, TransferMethod


def false_negative_mask(query: np.ndarray, neighbour: np.ndarray, kept_codes: np.ndarray, n: int) -> torch.Tensor:
    """(B, B) True where q[i] and k[j] must not be each other's negatives: the same streamer, the same
    streamer as i's positive, or a kept pair in either direction (k[j] a kept neighbour of q[i], or q[i] one
    of k[j]'s: mining is not symmetric, behaviour is).

    `kept_codes` holds query * n + neighbour of every kept pair, sorted.
    """
    q, nb = query.astype(np.int64), neighbour.astype(np.int64)
    mask = (nb[None, :] == q[:, None]) | (nb[None, :] == nb[:, None])
    mask |= np.isin(q[:, None] * n + nb[None, :], kept_codes)
    mask |= np.isin(nb[None, :] * n + q[:, None], kept_codes)
    np.fill_diagonal(mask, False)
    return torch.from_numpy(mask)


class Contrastive(TransferMethod):
    """Positives are mined-and-filtered neighbours; in-batch negatives, false negatives masked."""

    class Params(RunConfig):
        temperature: float = Field(0.1, gt=0, description="InfoNCE temperature: 0.1 beat 0.05 on both benchmark datasets.")

    def __init__(self, out_dim, data, params, seed=0) -> None:
        super().__init__(out_dim, data, params, seed)
        self.n = len(data.id_vectors)
        self.kept_codes = np.unique(data.pair_query * self.n + data.pair_neighbour)

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict:
        n = len(self.data.pair_query)
        pick = rng.choice(n, size=min(batch_size, n), replace=False)
        return {"query": self.data.pair_query[pick], "neighbour": self.data.pair_neighbour[pick]}

    def chance_candidates(self, batch_size: int) -> int:
        return min(batch_size, len(self.data.pair_query))

    def loss(self, embed: Embed, batch: dict) -> torch.Tensor:
        zq, zn = embed(batch["query"]), embed(batch["neighbour"])
        mask = false_negative_mask(batch["query"], batch["neighbour"], self.kept_codes, self.n)
        return info_nce(zq, zn, self.params.temperature, not_negative=mask)
