"""Relational knowledge distillation: match the ID embeddings' pairwise distances and angles (Park et al. 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from anchor_embed.config import RunConfig
from anchor_embed.losses import rkd_angle, rkd_distance
from anchor_embed.transfer.methods.base import Embed, TransferMethod


class RelationalDistillation(TransferMethod):
    """Distance and angle relations of a batch's content vectors should match those of its ID embeddings."""

    class Params(RunConfig):
        distance_weight: float = Field(1.0, ge=0)
        angle_weight: float = Field(2.0, ge=0)

    def loss(self, embed: Embed, batch: dict) -> torch.Tensor:
        z = embed(batch["rows"])
        t = F.normalize(torch.from_numpy(self.data.id_vectors[batch["rows"]]).to(z.device), dim=1)
        return self.params.distance_weight * rkd_distance(z, t) + self.params.angle_weight * rkd_angle(z, t)
