"""Low-rank patches of a fusion model (LoRA, Hu et al. 2021; a patch of a shared model per task, as in
PeterRec, Yuan et al. 2020): W' = W + (alpha / r) B A on the transformer's projections and the output heads.

Deltas are weight parametrizations, so every code path that reads a weight (PyTorch's fused encoder fast
path included) reads the patched one. A patch file holds only A, B and the task head; a base model plus
its patch rebuilds the adapted model.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from anchor_embed.model.fusion import FusionModel


class LowRankDelta(nn.Module):
    """The parametrization W -> W + scale * B @ A, with B zero at the start (the patch starts as a no-op)."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, in_features))
        self.B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.B @ self.A)


def target_weights(model: FusionModel) -> list[tuple[nn.Module, str, str]]:
    """(module, parameter name, dotted path) of every weight a patch adapts: each encoder layer's attention
    input and output projections and both feed-forward layers, and the two output heads."""
    out = []
    for i, layer in enumerate(model.encoder.layers):
        out += [(layer.self_attn, "in_proj_weight", f"encoder.layers.{i}.self_attn.in_proj_weight"),
                (layer.self_attn.out_proj, "weight", f"encoder.layers.{i}.self_attn.out_proj.weight"),
                (layer.linear1, "weight", f"encoder.layers.{i}.linear1.weight"),
                (layer.linear2, "weight", f"encoder.layers.{i}.linear2.weight")]
    out += [(model.head, "weight", "head.weight"), (model.pool_head, "weight", "pool_head.weight")]
    return out


def add_patch(model: FusionModel, rank: int, alpha: float | None = None) -> dict[str, LowRankDelta]:
    """Freeze `model` and add a low-rank delta to each target weight; returns them by dotted path."""
    model.requires_grad_(False)
    deltas = {}
    for module, name, path in target_weights(model):
        w = getattr(module, name)
        delta = LowRankDelta(w.shape[0], w.shape[1], rank, alpha if alpha is not None else 2.0 * rank)
        parametrize.register_parametrization(module, name, delta)
        deltas[path] = delta
    return deltas


def patch_tensors(deltas: dict[str, LowRankDelta]) -> dict[str, torch.Tensor]:
    """The patch as flat tensors: PATH.A and PATH.B for each delta."""
    return {f"{p}.{n}": getattr(d, n).detach().contiguous() for p, d in deltas.items() for n in ("A", "B")}


def load_patch(model: FusionModel, tensors: dict[str, torch.Tensor], rank: int, alpha: float) -> None:
    """Apply a saved patch to a base model in place (the deltas stay parametrizations)."""
    deltas = add_patch(model, rank, alpha)
    with torch.no_grad():
        for path, d in deltas.items():
            d.A.copy_(tensors[f"{path}.A"])
            d.B.copy_(tensors[f"{path}.B"])
