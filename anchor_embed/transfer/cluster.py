"""Cluster pseudo-labels: spherical k-means on ID embeddings, then classify streamers into their cluster."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anchor_embed.transfer.base import TransferMethod, register
from anchor_embed.unit_vectors import normalise_rows


@register("cluster")
class ClusterLabels(TransferMethod):
    def __init__(self, out_dim, data, cfg) -> None:
        import faiss

        super().__init__(out_dim, data, cfg)
        x = np.ascontiguousarray(normalise_rows(data.id_vectors[data.train_rows]))
        k = min(cfg.n_clusters, len(x) // 4)
        km = faiss.Kmeans(x.shape[1], k, niter=25, seed=cfg.seed, spherical=True, verbose=False)
        km.train(x)
        _, labels = km.index.search(x, 1)
        self.labels = np.full(len(data.id_vectors), -1, np.int64)
        self.labels[data.train_rows] = labels[:, 0]
        self.classifier = nn.Linear(out_dim, k)

    def loss(self, embed, batch: dict) -> torch.Tensor:
        logits = self.classifier(embed(batch["rows"])) / self.cfg.temperature
        return F.cross_entropy(logits, torch.from_numpy(self.labels[batch["rows"]]))
