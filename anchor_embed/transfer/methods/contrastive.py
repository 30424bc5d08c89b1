"""Contrastive transfer: content vectors of streamers that behave alike should find each other.

Two batch shapes:
- `pairs` (the original form): a batch of kept (streamer, neighbour) pairs, InfoNCE from each streamer to
  its neighbour among the batch's neighbours, false negatives masked;
- `neighbourhoods`: a batch of whole neighbourhoods (seed streamers with some of their kept neighbours, so
  positives meet in the batch), and every streamer of the batch picks among all the others. Its targets
  mix the kept neighbours present (`positives`: the one mined pair, or all of them weighted by ID-similarity
  rank) with soft targets from the ID similarities themselves (`soft_weight`).

Options: a learned temperature, mined-but-filtered-out neighbours as hard negatives, and a linear
ID-regression head as an auxiliary term.

References: van den Oord et al. 2018 (InfoNCE); Khosla et al. 2020 (supervised contrastive, several
positives); Hinton et al. 2015 and Fang et al. 2021 (SEED: soft targets from a teacher's similarities);
Robinson et al. 2021 (hard negatives).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from anchor_embed.config import RunConfig
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.losses import info_nce, soft_target_nce
from anchor_embed.transfer.methods.aldi import check_weights, reliability_weights
from anchor_embed.transfer.methods.base import Embed, TransferMethod
from anchor_embed.vectorspace import normalise_rows


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


def _csr(query: np.ndarray, neighbour: np.ndarray, score: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's neighbours, best ID score first, as (pointer, neighbours) arrays."""
    order = np.lexsort((-score, query))
    ptr = np.zeros(n + 1, np.int64)
    np.add.at(ptr, query + 1, 1)
    return np.cumsum(ptr), neighbour[order]


def _refuse_weights_on_pairs(params) -> None:
    """Reliability weights weigh a neighbourhood's seed: one-pair batches have none to weigh."""
    if params.weights_file and params.batches == "pairs":
        raise AnchorEmbedError("params.weights_file: reliability weights need batches 'neighbourhoods'")


class Contrastive(TransferMethod):
    """Mined-and-filtered behavioural neighbours are positives; see the module docstring for the options."""

    input_dropout = 0.2   # chosen on validation: keeps new streamers near each other (docs/tuning.md, fourth round)
    linear_share = 0.5    # chosen on validation: new streamers placed by a closed-form map too (docs/tuning.md,
    #                       fifth and tenth rounds)

    class Params(RunConfig):
        temperature: float = Field(0.1, gt=0, description="InfoNCE temperature (the start, if learned)")
        learn_temperature: bool = Field(False, description="Learn the temperature")
        batches: Literal["pairs", "neighbourhoods"] = Field("neighbourhoods", description="How a batch is drawn")
        group: int = Field(2, ge=2, description="neighbourhoods: streamers per neighbourhood (seed + neighbours)")
        positives: Literal["pair", "multi"] = Field(
            "multi", description="neighbourhoods: the seed's mined pair only, or every kept neighbour in the "
            "batch weighted by 1/rank of its ID similarity")
        soft_weight: float = Field(0.5, ge=0, le=1, description="neighbourhoods: share of soft targets from "
                                   "the ID similarities (1 = soft targets only)")
        target_temperature: float = Field(0.05, gt=0, description="Temperature of the soft targets")
        hard_negatives: int = Field(0, ge=0, description="neighbourhoods: filtered-out neighbours added per seed")
        id_head_weight: float = Field(0.0, ge=0, description="Weight of a linear ID-regression head (cosine)")
        weights_file: str | None = Field(None, description="neighbourhoods: CSV of anchor_id,interaction count; "
                                         "each streamer's term weighs tanh(weight_scale x count) (ALDI)")
        weight_scale: float = Field(0.1, gt=0, description="w = tanh(weight_scale x count)")

    def __init__(self, out_dim, data, params, seed=0) -> None:
        super().__init__(out_dim, data, params, seed)
        self.n = len(data.id_vectors)
        self.kept_codes = np.unique(data.pair_query * self.n + data.pair_neighbour)
        self.log_t = nn.Parameter(torch.tensor(float(np.log(params.temperature))),
                                  requires_grad=params.learn_temperature)
        self.id_head = nn.Linear(out_dim, data.id_vectors.shape[1]) if params.id_head_weight > 0 else None
        self.unit_ids = torch.from_numpy(normalise_rows(data.id_vectors))
        self.kept_ptr, self.kept_nb = _csr(data.pair_query, data.pair_neighbour, data.pair_score, self.n)
        self.drop_ptr, self.drop_nb = _csr(data.dropped_query, data.dropped_neighbour,
                                           np.zeros(len(data.dropped_query), np.float32), self.n)
        self.seeds = data.train_rows[np.diff(self.kept_ptr)[data.train_rows] > 0]
        _refuse_weights_on_pairs(params)
        self.weights = (reliability_weights(data, params.weights_file, params.weight_scale)
                        if params.weights_file else None)

    @classmethod
    def check_inputs(cls, params, keys: list[str], train_rows: np.ndarray) -> np.ndarray | None:
        _refuse_weights_on_pairs(params)
        return check_weights(params.weights_file, keys, train_rows)

    def temperature(self) -> torch.Tensor:
        return self.log_t.exp().clamp(min=0.01)

    def chance_candidates(self, batch_size: int) -> int | None:
        if self.params.batches == "pairs":
            return min(batch_size, len(self.data.pair_query))
        return None  # soft or several positives: the loss at chance depends on the targets

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict:
        if self.params.batches == "pairs":
            n = len(self.data.pair_query)
            pick = rng.choice(n, size=min(batch_size, n), replace=False)
            return {"query": self.data.pair_query[pick], "neighbour": self.data.pair_neighbour[pick]}
        return {"rows": self._neighbourhoods(rng, batch_size)}

    def _neighbourhoods(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """Seeds with up to group-1 kept neighbours each (and hard negatives), topped up with random streamers."""
        p = self.params
        seeds = rng.choice(self.seeds, size=min(len(self.seeds), max(1, batch_size // p.group)), replace=False)
        rows: list[int] = []
        for s in seeds:
            near = self.kept_nb[self.kept_ptr[s]:self.kept_ptr[s + 1]]
            rows.append(int(s))
            rows += rng.choice(near, size=min(len(near), p.group - 1), replace=False).tolist()
            if p.hard_negatives:
                far = self.drop_nb[self.drop_ptr[s]:self.drop_ptr[s + 1]]
                rows += rng.choice(far, size=min(len(far), p.hard_negatives), replace=False).tolist()
        rows = list(dict.fromkeys(rows))[:batch_size]
        if len(rows) < batch_size:
            rest = np.setdiff1d(self.data.train_rows, rows)
            rows += rng.choice(rest, size=min(len(rest), batch_size - len(rows)), replace=False).tolist()
        return np.array(rows, np.int64)

    def targets(self, rows: np.ndarray) -> torch.Tensor:
        """(B, B) target distribution of each row over the others (zero rows: no target in this batch)."""
        p, b = self.params, len(rows)
        where = {int(r): i for i, r in enumerate(rows)}
        pos = np.zeros((b, b), np.float32)
        for i, r in enumerate(rows):
            near = self.kept_nb[self.kept_ptr[r]:self.kept_ptr[r + 1]]
            if p.positives == "pair":
                near = near[:1]
            for rank, nb in enumerate(near, 1):
                j = where.get(int(nb))
                if j is not None and j != i:
                    pos[i, j] = 1.0 / rank
        total = pos.sum(1, keepdims=True)
        pos = np.divide(pos, total, out=np.zeros_like(pos), where=total > 0)
        target = torch.from_numpy(pos)
        if p.soft_weight > 0:
            u = self.unit_ids[torch.as_tensor(rows)]
            logits = (u @ u.T / p.target_temperature).fill_diagonal_(float("-inf"))
            soft = torch.softmax(logits, dim=1)
            has_pos = torch.from_numpy(total[:, 0] > 0)[:, None]
            target = torch.where(has_pos, (1 - p.soft_weight) * target + p.soft_weight * soft, soft)
        return target

    def loss(self, embed: Embed, batch: dict) -> torch.Tensor:
        t = self.temperature()
        if self.params.batches == "pairs":
            zq, zn = embed(batch["query"]), embed(batch["neighbour"])
            mask = false_negative_mask(batch["query"], batch["neighbour"], self.kept_codes, self.n).to(zq.device)
            loss = info_nce(zq, zn, t, not_negative=mask)
            rows, z = batch["query"], zq
        else:
            rows = batch["rows"]
            z = embed(rows)
            w = None if self.weights is None else self.weights[torch.as_tensor(rows)].to(z.device)
            loss = soft_target_nce(z, self.targets(rows).to(z.device), t, row_weights=w)
        if self.id_head is not None:
            pred = self.id_head(z)
            loss = loss + self.params.id_head_weight * (1 - F.cosine_similarity(
                pred, self.unit_ids[torch.as_tensor(rows)].to(pred.device), dim=1)).mean()
        return loss
