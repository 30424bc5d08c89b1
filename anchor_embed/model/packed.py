"""The fusion transformer's forward on real tokens only, computing just the one output the model reads.

`nn.TransformerEncoder` over a padded batch spends its linear layers (most of the work) on padding too, and
computes every position of the last layer although the model reads only [CLS]. `encode_cls` runs the same
layers with the same weights on the batch's real tokens packed into one (N, d) matrix (padding exists only
inside attention, where it is masked), and in the last layer projects queries, attention output and
feed-forward for [CLS] alone (keys and values still come from every real token). Same result as the
padded encoder's position 0 (tests check outputs and gradients); about half the floating-point work on
views that hold a few atoms each. Attention and dropout are written out (model/dropout.py): torch's CPU
kernels for them cost more than the matrix products at these sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anchor_embed.model.dropout import dropout


def encode_cls(encoder: nn.TransformerEncoder, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, d): what `encoder(x, src_key_padding_mask=~valid)[:, 0]` gives, for pre-norm layers whose position
    0 is real in every row (the [CLS] token)."""
    b, length, d = x.shape
    where = valid.reshape(-1).nonzero().squeeze(1)            # rows of the real tokens in the (B*L, d) view
    counts = valid.sum(1)
    cls_rows = torch.cumsum(counts, 0) - counts               # each streamer's [CLS] among the packed rows
    mask = valid[:, None, None, :]                            # (B, 1, 1, L): True = may be attended to
    h = x.reshape(b * length, d)[where]
    layers = list(encoder.layers)
    for i, layer in enumerate(layers):
        h = _layer(layer, h, where, b, length, mask, cls_rows if i == len(layers) - 1 else None)
    return h


def _layer(layer: nn.TransformerEncoderLayer, h: torch.Tensor, where: torch.Tensor, b: int, length: int,
           mask: torch.Tensor, only: torch.Tensor | None) -> torch.Tensor:
    """One pre-norm encoder layer over packed tokens `h`; with `only`, its output for those rows alone."""
    attn = layer.self_attn
    d, heads = h.shape[1], attn.num_heads
    y = layer.norm1(h)
    w, bias = attn.in_proj_weight, attn.in_proj_bias
    kv = F.linear(y, w[d:], bias[d:])                         # keys and values of every real token
    q = F.linear(y if only is None else y[only], w[:d], bias[:d])
    kv = kv.new_zeros(b * length, 2 * d).index_copy(0, where, kv).view(b, length, 2, heads, d // heads)
    k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
    if only is None:
        q = q.new_zeros(b * length, d).index_copy(0, where, q).view(b, length, heads, d // heads).transpose(1, 2)
    else:
        q = q.view(b, 1, heads, d // heads).transpose(1, 2)
    o = _attention(q, k, v, mask, attn.dropout if layer.training else 0.0)
    o = o.transpose(1, 2).reshape(-1, d)
    if only is None:
        o = o[where]
    p, on = layer.dropout.p, layer.training
    h = (h if only is None else h[only]) + dropout(attn.out_proj(o), p, on)
    return h + dropout(layer.linear2(dropout(layer.activation(layer.linear1(layer.norm2(h))), p, on)), p, on)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) where `mask`, else -inf) v, dropout p on the weights: what
    `F.scaled_dot_product_attention` computes, written out because its CPU kernels are slow on these short
    sequences (in bf16, 10x slower than the three ops here; fp32 about even). Softmax in fp32."""
    s = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    weights = torch.softmax(s.float().masked_fill(~mask, float("-inf")), dim=-1).to(v.dtype)
    return dropout(weights, p) @ v
