"""CLCRec-style transfer: InfoNCE between each streamer's content vector and its own (projected) ID embedding.

Reference: Wei et al. 2021, "Contrastive Learning for Cold-Start Recommendation" (ACM MM): the content
encoder is trained so that an item's content representation identifies its collaborative embedding among
the batch's, which maximises their mutual information. A cold-start reference row beside our method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from anchor_embed.config import RunConfig
from anchor_embed.losses import info_nce
from anchor_embed.transfer.methods.base import Embed, TransferMethod


class ContentIdContrast(TransferMethod):
    """z_i should pick W id_i (a learned linear map into the content space) among the batch's, and back."""

    class Params(RunConfig):
        temperature: float = Field(0.1, gt=0, description="InfoNCE temperature")

    def __init__(self, out_dim, data, params, seed=0) -> None:
        super().__init__(out_dim, data, params, seed)
        self.project = nn.Linear(data.id_vectors.shape[1], out_dim)

    def chance_candidates(self, batch_size: int) -> int:
        return min(batch_size, len(self.data.train_rows))

    def loss(self, embed: Embed, batch: dict) -> torch.Tensor:
        z = embed(batch["rows"])
        ids = F.normalize(self.project(torch.from_numpy(self.data.id_vectors[batch["rows"]]).to(z.device)), dim=1)
        return info_nce(z, ids, self.params.temperature)
