"""Relational knowledge distillation: match the ID embeddings' pairwise distances and angles (Park et al. 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anchor_embed.losses import rkd_angle, rkd_distance
from anchor_embed.transfer.base import TransferMethod, register


@register("rkd")
class RelationalDistillation(TransferMethod):
    def loss(self, embed, batch: dict) -> torch.Tensor:
        z = embed(batch["rows"])
        t = F.normalize(torch.from_numpy(self.data.id_vectors[batch["rows"]]), dim=1)
        return self.cfg.rkd_distance_weight * rkd_distance(z, t) + self.cfg.rkd_angle_weight * rkd_angle(z, t)
