"""ALDI-style transfer: relational distillation from the ID embeddings, each streamer weighted by how much
behaviour stands behind its ID embedding.

Reference: Huang et al. 2023, "Aligning Distillation For Warm and Cold Recommendation" (SIGIR): a cold
(content) student is aligned to a warm (ID) teacher, and items with more interactions, whose teacher
embeddings are more reliable, weigh more (a tanh of their interaction count). Here the student's softmax
over the batch's similarities matches the teacher's (the rating-distribution alignment), with the weight
tanh(weight_scale x count) per streamer from an optional `anchor_id,count` CSV; equal weights without one.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from anchor_embed.config import RunConfig
from anchor_embed.errors import AnchorEmbedError
from anchor_embed.losses import soft_target_nce
from anchor_embed.transfer.methods.base import Embed, TransferData, TransferMethod
from anchor_embed.vectorspace import normalise_rows


def read_counts(path: str | Path, keys: list[str]) -> np.ndarray:
    """Interaction counts by cache row from a CSV of `anchor_id,count` (a header row is allowed); 0 if absent."""
    path = Path(path)
    if not path.is_file():
        raise AnchorEmbedError(f"{path}: no such weights file (anchor_id,count per line)")
    where = {k: i for i, k in enumerate(keys)}
    counts = np.zeros(len(keys), np.float32)
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.reader(f), 1):
            if len(row) < 2 or (line == 1 and not row[1].strip().replace(".", "", 1).isdigit()):
                continue
            try:
                value = float(row[1])
            except ValueError:
                raise AnchorEmbedError(f"{path}: line {line}: count {row[1]!r} is not a number") from None
            if row[0] in where:
                counts[where[row[0]]] = value
    return counts


def reliability_weights(data: TransferData, weights_file: str | None, scale: float) -> torch.Tensor:
    """Per cache row tanh(scale x interaction count) from `weights_file` (ALDI's reliability); ones without one."""
    weights = np.ones(len(data.id_vectors), np.float32)
    if weights_file:
        if data.keys is None:
            raise AnchorEmbedError("a weights file needs the streamers' keys")
        weights = np.tanh(scale * read_counts(weights_file, data.keys))
    return torch.from_numpy(weights.astype(np.float32))


class ReliabilityDistillation(TransferMethod):
    """Match the teacher's similarity distribution over the batch, weighting streamers by tanh(scale x count)."""

    class Params(RunConfig):
        temperature: float = Field(0.1, gt=0, description="Student softmax temperature")
        target_temperature: float = Field(0.05, gt=0, description="Teacher (ID similarity) softmax temperature")
        weights_file: str | None = Field(None, description="CSV of anchor_id,interaction count (reliability)")
        weight_scale: float = Field(0.1, gt=0, description="w = tanh(weight_scale x count)")

    def __init__(self, out_dim, data, params, seed=0) -> None:
        super().__init__(out_dim, data, params, seed)
        self.unit_ids = torch.from_numpy(normalise_rows(data.id_vectors))
        self.weights = reliability_weights(data, params.weights_file, params.weight_scale)

    def loss(self, embed: Embed, batch: dict) -> torch.Tensor:
        rows = torch.as_tensor(batch["rows"])
        z = embed(batch["rows"])
        u = self.unit_ids[rows].to(z.device)
        teacher = torch.softmax((u @ u.T / self.params.target_temperature).fill_diagonal_(float("-inf")), dim=1)
        return soft_target_nce(z, teacher, self.params.temperature, row_weights=self.weights[rows].to(z.device))
