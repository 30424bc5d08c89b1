"""Feature distillation (FitNets-style): regress the ID embedding from the content vector through a linear map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anchor_embed.transfer.base import TransferMethod, register


@register("feature")
class FeatureDistillation(TransferMethod):
    def __init__(self, out_dim, data, cfg) -> None:
        super().__init__(out_dim, data, cfg)
        self.map = nn.Linear(out_dim, data.id_vectors.shape[1])

    def loss(self, embed, batch: dict) -> torch.Tensor:
        pred = self.map(embed(batch["rows"]))
        target = torch.from_numpy(self.data.id_vectors[batch["rows"]])
        if self.cfg.feature_loss == "mse":
            return F.mse_loss(pred, target)
        return (1 - F.cosine_similarity(pred, target, dim=1)).mean()
