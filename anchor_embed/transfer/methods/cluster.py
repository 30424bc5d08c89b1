"""Cluster pseudo-labels: spherical k-means on ID embeddings, then classify streamers into their cluster."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from anchor_embed.config import RunConfig
from anchor_embed.transfer.methods.base import Embed, TransferMethod
from anchor_embed.vectorspace import normalise_rows, spherical_kmeans


class ClusterLabels(TransferMethod):
    """Each training streamer's k-means cluster of ID embeddings is a class its content vector must predict."""

    class Params(RunConfig):
        n_clusters: int = Field(50, ge=1, description="k of the k-means (capped at a quarter of the streamers).")
        temperature: float = Field(0.1, gt=0)

    def __init__(self, out_dim, data, params, seed=0) -> None:
        super().__init__(out_dim, data, params, seed)
        x = normalise_rows(data.id_vectors[data.train_rows])
        k = max(1, min(params.n_clusters, len(x) // 4))
        labels, _ = spherical_kmeans(x, k, seed, niter=25)
        self.labels = np.full(len(data.id_vectors), -1, np.int64)
        self.labels[data.train_rows] = labels
        self.classifier = nn.Linear(out_dim, k)

    def loss(self, embed: Embed, batch: dict) -> torch.Tensor:
        logits = self.classifier(embed(batch["rows"])) / self.params.temperature
        return F.cross_entropy(logits, torch.from_numpy(self.labels[batch["rows"]]).to(logits.device))
