"""Transfer methods from ID embeddings: a registry; adding one is one module and one line below.

Each method owns its trainable extras (a linear map, a classifier) and turns a sampled batch into a loss
on the fusion model's vectors; the loop, data, budget and checkpoints are shared (`anchor_embed.transfer_run`).
"""

from __future__ import annotations

from anchor_embed.transfer import cluster, contrastive, feature, rkd  # noqa: E402,F401  (each registers itself)
from anchor_embed.transfer.base import METHODS, TransferData, TransferMethod, register

__all__ = ["METHODS", "TransferData", "TransferMethod", "register"]
