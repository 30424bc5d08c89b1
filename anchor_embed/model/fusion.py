"""The fusion model: a small transformer over a streamer's modality tokens -> one L2-normalised vector.

Tokens: one per text field, frame and tag (tag = projected name feature + a learned embedding for frequent
tags), each plus a modality-type embedding, after a learned [CLS] token; padding is masked with
`key_padding_mask`. A streamer with any modality missing, or with nothing at all, still gets a vector.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anchor_embed.features.cache import FeatureCache
from anchor_embed.model.linear_map import LinearMap, input_width
from anchor_embed.model.packed import encode_cls

# token types: 0 [CLS], 1 nickname, 2 profile, 3 other text, 4 frame, 5 tag
TYPE_CLS, TYPE_FRAME, TYPE_TAG = 0, 4, 5


@dataclass
class FusionConfig:
    text_dim: int
    image_dim: int
    out_dim: int = 256
    d_model: int = 256
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    tag_vocab: list[str] = field(default_factory=list)  # frequent tags with a learned embedding
    # what shapes the input: atoms per streamer read of each kind (saved, so every consumer feeds the same)
    max_texts: int = 16
    max_frames: int = 8
    max_tags: int = 16
    # the linear map of a transferred model (model/linear_map.py): its output width and its share of the blend
    linear_dim: int = 0
    linear_share: float = 0.0
    # a kernel map (model/linear_map.py): its landmarks and RBF gamma; 0 landmarks = a linear map
    map_landmarks: int = 0
    map_gamma: float = 0.0
    # a residual map (model/linear_map.py): the kernel map plus a linear map of the same inputs
    map_mean: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TokenBatch:
    """Padded tokens of B streamers; `*_mask` is True where a token is real."""

    text: torch.Tensor        # (B, Lt, text_dim)
    text_type: torch.Tensor   # (B, Lt) long
    text_mask: torch.Tensor   # (B, Lt) bool
    frame: torch.Tensor       # (B, Lf, image_dim)
    frame_mask: torch.Tensor
    tag: torch.Tensor         # (B, Lg, text_dim)
    tag_id: torch.Tensor      # (B, Lg) long, 0 = not frequent
    tag_mask: torch.Tensor

    def __getitem__(self, rows: slice | np.ndarray) -> TokenBatch:
        """The batch of some of its streamers (a rank's share: a slice, or row numbers), padding kept."""
        if isinstance(rows, np.ndarray):
            rows = torch.from_numpy(rows)
        return TokenBatch(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def to(self, device: torch.device) -> TokenBatch:
        """The batch on `device` (through pinned memory to a GPU, asynchronously); itself when already there."""
        if self.text.device == device:
            return self
        pin = device.type == "cuda"
        return TokenBatch(**{f.name: (getattr(self, f.name).pin_memory() if pin else getattr(self, f.name))
                             .to(device, non_blocking=pin) for f in fields(self)})


class FusionModel(nn.Module):
    """Modality tokens -> transformer encoder -> [CLS] -> linear -> L2 normalise; with a linear map (transfer),
    that vector and the map's side by side."""

    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.text_proj = nn.Linear(cfg.text_dim, d)
        self.tag_proj = nn.Linear(cfg.text_dim, d)
        self.frame_proj = nn.Linear(max(cfg.image_dim, 1), d)
        self.tag_embed = nn.Embedding(len(cfg.tag_vocab) + 1, d, padding_idx=0)
        self.type_embed = nn.Embedding(6, d)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        # small learned embeddings: N(0, 1) defaults would drown the content tokens
        for emb in (self.cls, self.type_embed.weight, self.tag_embed.weight):
            nn.init.normal_(emb, std=0.02)
        with torch.no_grad():
            self.tag_embed.weight[0].zero_()
        # backbone features are L2-normalised (components ~ 1/sqrt(dim)): rescale to unit variance
        self.text_scale = float(np.sqrt(cfg.text_dim))
        self.frame_scale = float(np.sqrt(max(cfg.image_dim, 1)))
        layer = nn.TransformerEncoderLayer(d, cfg.heads, dim_feedforward=2 * d, dropout=cfg.dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.out_dim)
        self.pool_head = nn.Linear(d, cfg.out_dim, bias=False)  # skip path: masked mean of the input tokens
        # the [CLS] path starts near zero, so early outputs follow the content (a shared start invites
        # collapse); not exactly zero, so a streamer with no atoms still gets a unit vector
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.normal_(self.head.bias, std=1e-3)
        self.linear_map = (LinearMap(input_width(cfg.text_dim, cfg.image_dim, len(cfg.tag_vocab)), cfg.linear_dim,
                                     len(cfg.tag_vocab), cfg.map_landmarks, cfg.map_gamma, cfg.map_mean)
                           if cfg.linear_dim else None)

    @property
    def dim(self) -> int:
        """Width of the vectors `forward` returns."""
        return self.cfg.out_dim + (self.cfg.linear_dim if self.linear_map is not None else 0)

    def set_linear_map(self, linear: LinearMap | None, share: float) -> None:
        """Install a fitted map (linear, kernel or residual) with its share of the blend (None removes any); the
        config records it."""
        kernel = linear is not None and linear.kind in ("kernel", "residual")
        self.cfg = replace(self.cfg, linear_dim=linear.weight.shape[0] if linear is not None else 0,
                           linear_share=float(share) if linear is not None else 0.0,
                           map_landmarks=linear.landmarks.shape[0] if kernel else 0,
                           map_gamma=linear.gamma if kernel else 0.0,
                           map_mean=linear is not None and linear.kind == "residual")
        self.linear_map = linear.to(self.cls.device) if linear is not None else None

    def forward(self, batch: TokenBatch, linear: bool = True) -> torch.Tensor:
        """Unit vectors of the batch; `linear=False` gives the fusion vector alone (what transfer trains)."""
        batch = batch.to(self.cls.device)        # once: to a GPU through pinned memory
        z = self.fusion(batch)
        if not linear or self.linear_map is None:
            return z
        s = self.cfg.linear_share
        return torch.cat([z * np.sqrt(1 - s), self.linear_map(batch) * np.sqrt(s)], 1)

    def fusion(self, batch: TokenBatch) -> torch.Tensor:
        """(B, out_dim) unit fusion vectors of a batch on the model's device."""
        b = batch.text.shape[0]
        dev = self.cls.device
        parts = [self.cls.expand(b, 1, -1) + self.type_embed.weight[TYPE_CLS]]
        masks = [torch.ones(b, 1, dtype=torch.bool, device=dev)]
        # projections of the real atoms only (`[m]`), not of the padding (most of a padded batch of small
        # views); `_padded` puts them back in their slots
        if batch.text.shape[1]:
            m = batch.text_mask
            parts.append(_padded(m, self.text_proj(batch.text[m] * self.text_scale)
                                 + self.type_embed(batch.text_type[m])))
            masks.append(m)
        if batch.frame.shape[1] and self.cfg.image_dim:
            m = batch.frame_mask
            parts.append(_padded(m, self.frame_proj(batch.frame[m] * self.frame_scale)
                                 + self.type_embed.weight[TYPE_FRAME]))
            masks.append(m)
        if batch.tag.shape[1]:
            m = batch.tag_mask
            parts.append(_padded(m, self.tag_proj(batch.tag[m] * self.text_scale) + self.tag_embed(batch.tag_id[m])
                                 + self.type_embed.weight[TYPE_TAG]))
            masks.append(m)
        x = torch.cat(parts, 1)
        valid = torch.cat(masks, 1)
        cls = encode_cls(self.encoder, x, valid)   # = self.encoder(x, src_key_padding_mask=~valid)[:, 0]
        content = valid.clone()
        content[:, 0] = False
        pooled = (x * content[..., None]).sum(1) / content.sum(1, keepdim=True).clamp(min=1)
        # fp32 out, whatever the autocast inside: losses and their statistics stay in full precision
        return F.normalize((self.head(self.norm(cls)) + self.pool_head(pooled)).float(), dim=-1)


def _padded(mask: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, L, d): the (N, d) rows `real` in the N True slots of the (B, L) `mask`, zeros elsewhere."""
    return real.new_zeros(*mask.shape, real.shape[-1]).index_put((mask,), real)


def tag_vocabulary(cache: FeatureCache, min_count: int = 3, max_size: int = 10000) -> list[str]:
    """Tags shown by at least `min_count` streamers, most frequent first."""
    order = np.argsort(-cache.tag_counts, kind="stable")
    return [cache.tag_names[i] for i in order[:max_size] if cache.tag_counts[i] >= min_count]
