"""Feature distillation (FitNets-style): regress the ID embedding from the content vector through a linear map."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from anchor_embed.config import RunConfig
from anchor_embed.transfer.methods.base import Embed, TransferMethod


class FeatureDistillation(TransferMethod):
    """A linear map of the content vector should reproduce the streamer's ID embedding (Romero et al. 2015)."""

    class Params(RunConfig):
        feature_loss: Literal["cosine", "mse"] = "cosine"

    def __init__(self, out_dim, data, params, seed=0) -> None:
        super().__init__(out_dim, data, params, seed)
        self.map = nn.Linear(out_dim, data.id_vectors.shape[1])

    def loss(self, embed: Embed, batch: dict) -> torch.Tensor:
        pred = self.map(embed(batch["rows"]))
        target = torch.from_numpy(self.data.id_vectors[batch["rows"]]).to(pred.device)
        if self.params.feature_loss == "mse":
            return F.mse_loss(pred, target)
        return (1 - F.cosine_similarity(pred, target, dim=1)).mean()
