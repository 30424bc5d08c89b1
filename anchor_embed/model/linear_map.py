"""The map of a transferred model: pooled input features -> the ID-embedding space, blended into its output.

A model taught by the ID neighbours of its training streamers learns where those sit, and two streamers it
never trained on drift apart; a linear map of the pooled input features (what the RidgeCV reference fits)
places new streamers more evenly. The model's output concatenates the unit fusion vector scaled by
sqrt(1 - share) and the unit linear prediction scaled by sqrt(share), so the cosine of two outputs is
(1 - share) x their fusion cosine + share x their linear cosine (docs/tuning.md, fifth round). The weights are
fitted in closed form by `anchor_embed.transfer.linear_fit`, never by gradient. The map is linear in the pooled
features, or in their RBF kernel features against stored landmarks (the training streamers' own pooled
features): kernel ridge regression, which places a streamer by the ID embeddings of the training streamers
its content resembles (docs/tuning.md, tenth round); or both summed, the kernel part fitted on the linear
map's residuals, so a streamer unlike every training streamer falls back to the linear map (the residual map,
docs/tuning.md, thirteenth round).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _unit_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, dim) unit masked mean over the tokens of each row; zeros for a row without tokens."""
    total = (x * mask[..., None]).sum(1)
    return F.normalize(total, dim=-1) if x.shape[-1] else total


def pooled_inputs(batch, skip_tags: torch.Tensor) -> torch.Tensor:
    """(B, F) input of the map: unit means of the text, frame and tag-name tokens, then the multi-hot of the
    frequent tags (vocabulary ids 1..V). `skip_tags` (V+1 bools) marks the ids left out of the tag-name mean
    (metadata buckets, whose names embed as near-identical noise); they still count one-hot."""
    named = batch.tag_mask & ~skip_tags[batch.tag_id]
    hot = batch.text.new_zeros(len(batch.tag_id), len(skip_tags))
    hot.scatter_(1, torch.where(batch.tag_mask, batch.tag_id, 0), 1.0)   # padding lands in column 0, dropped
    return torch.cat([_unit_mean(batch.text, batch.text_mask), _unit_mean(batch.frame, batch.frame_mask),
                      _unit_mean(batch.tag, named), hot[:, 1:]], 1)


def input_width(text_dim: int, image_dim: int, tags: int) -> int:
    """Width of `pooled_inputs` for a model with these feature widths and `tags` vocabulary entries."""
    return 2 * text_dim + image_dim + tags


def rbf(x: torch.Tensor, landmarks: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B, m) exp(-gamma |u - l|^2) of each row u of `x` made unit (a zero row stays zero) against each unit
    landmark row: `evaluation.references.rbf_features` in torch."""
    u = F.normalize(x, dim=-1)
    sq = (u * u).sum(1, keepdim=True) + (landmarks * landmarks).sum(1) - 2 * u @ landmarks.T
    return torch.exp(-gamma * sq.clamp(min=0))


class LinearMap(nn.Module):
    """Fixed affine map of `pooled_inputs` to `out_dim`, L2-normalised; with `landmarks` > 0 the affine map reads
    the inputs' RBF kernel features against that many stored landmarks instead (a kernel ridge map), and with
    `mean` a linear map of the inputs themselves is added to it (a residual map). Its weights are buffers (no
    gradient)."""

    def __init__(self, in_dim: int, out_dim: int, tags: int, landmarks: int = 0, gamma: float = 0.0,
                 mean: bool = False) -> None:
        super().__init__()
        if mean and not landmarks:
            raise ValueError("a residual map (mean=True) needs landmarks")
        self.gamma = float(gamma)
        self.register_buffer("weight", torch.zeros(out_dim, landmarks or in_dim))
        self.register_buffer("bias", torch.zeros(out_dim))
        self.register_buffer("skip_tags", torch.zeros(tags + 1, dtype=torch.bool))
        if landmarks:
            self.register_buffer("landmarks", torch.zeros(landmarks, in_dim))
        if mean:
            self.register_buffer("mean_weight", torch.zeros(out_dim, in_dim))

    @property
    def kind(self) -> str:
        """'residual', 'kernel' or 'linear'."""
        if hasattr(self, "mean_weight"):
            return "residual"
        return "kernel" if hasattr(self, "landmarks") else "linear"

    def forward(self, batch) -> torch.Tensor:
        x = pooled_inputs(batch, self.skip_tags).float()
        if self.kind == "linear":
            return F.normalize(F.linear(x, self.weight, self.bias), dim=-1)
        y = F.linear(rbf(x, self.landmarks, self.gamma), self.weight, self.bias)
        if self.kind == "residual":
            y = y + F.linear(x, self.mean_weight)
        return F.normalize(y, dim=-1)
