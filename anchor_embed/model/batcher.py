"""Cached features of chosen atoms -> padded model input (TokenBatch); every streamer's vector at once."""

from __future__ import annotations

from itertools import chain

import numpy as np
import torch

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.features.cache import FIELD_PROFILE, FeatureCache
from anchor_embed.model.dropout import dropout
from anchor_embed.model.fusion import FusionModel, TokenBatch
from anchor_embed.progress import say


class Batcher:
    """Gathers cached features of chosen atoms into a TokenBatch (optionally with feature noise)."""

    def __init__(self, cache: FeatureCache, tag_vocab: list[str], max_texts: int = 16, max_frames: int = 8,
                 max_tags: int = 16) -> None:
        """Prefer `Batcher.for_model`: a model must be fed within the limits it was trained with."""
        self.cache = cache
        self.limits = {"text": max_texts, "frame": max_frames, "tag": max_tags}
        vocab = {t: i + 1 for i, t in enumerate(tag_vocab)}
        self.tag_id_of_row = np.array([vocab.get(t, 0) for t in cache.tag_names], dtype=np.int64)
        self.dims = {"text": cache.dim("text"), "tag": cache.dim("text"), "frame": cache.dim("frame")}

    @classmethod
    def for_model(cls, model: FusionModel, cache: FeatureCache) -> Batcher:
        """The batcher that feeds `model` what it saw in training: its tag vocabulary and its atom limits. A cache
        whose feature widths differ from the model's (made by other backbones) is refused in one line. A cache
        without frames feeds a frame model (and its map's frame mean) as streamers without frames, with a warning;
        a model without frames is fed none of a cache's frames."""
        c = model.cfg
        frames = cache.dim("frame")
        if cache.dim("text") != c.text_dim or (frames and c.image_dim and frames != c.image_dim):
            raise AnchorEmbedError(f"{cache.path}: features {cache.dim('text')}-d text and {frames}-d frames, but the "
                                   f"model reads {c.text_dim}-d text and {c.image_dim}-d frames: use a feature cache "
                                   "made by the backbones the model was trained on")
        if c.image_dim and not frames:
            say(f"[yellow]warning[/]: {cache.path} has no frames and the model reads {c.image_dim}-d frames: its "
                "streamers are embedded from their text and tags alone, as streamers without frames")
        out = cls(cache, c.tag_vocab, c.max_texts, c.max_frames if c.image_dim else 0, c.max_tags)
        out.dims["frame"] = c.image_dim          # zero frame tokens of the model's width when the cache has none
        return out

    def all_atoms(self, i: int) -> list[tuple[str, int]]:
        """Every atom of streamer i (within the limits), as (kind, position)."""
        return [(kind, p) for kind in ("text", "frame", "tag")
                for p in range(min(len(self.cache.rows(kind, i)), self.limits[kind]))]

    def without_atoms(self) -> np.ndarray:
        """The streamers (rows) with no atom the model reads: no text, no tag and no frame it is fed (frames only
        when the model reads frames, and only those read from their files)."""
        shows = np.zeros(self.cache.n, bool)
        for kind, limit in self.limits.items():
            if limit:
                shows |= np.diff(self.cache.ptr[kind]) > 0
        return np.flatnonzero(~shows)

    def make(self, streamers: list[int], atoms: list[list[tuple[str, int]]] | None = None,
             noise: float = 0.0, feature_dropout: float = 0.0, rng: np.random.Generator | None = None
             ) -> TokenBatch:
        """Tokens for `streamers`, restricted to `atoms[j]` when given (else all atoms)."""
        b = len(streamers)
        who = np.asarray(streamers, np.int64)
        out = {}
        for kind in ("text", "frame", "tag"):
            # every chosen atom of the batch at once: its streamer j, its slot in j's row and its atom index
            ptr, limit = self.cache.ptr[kind], self.limits[kind]
            if atoms is None:
                counts = np.minimum(ptr[who + 1] - ptr[who], limit)
                pos = None
            else:
                picked = [sorted(p for k, p in sel if k == kind)[:limit] for sel in atoms]
                counts = np.array([len(x) for x in picked], np.int64)
                pos = np.fromiter(chain.from_iterable(picked), np.int64, int(counts.sum()))
            total = int(counts.sum())
            j = np.repeat(np.arange(b), counts)
            slot = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            atom = ptr[who][j] + (slot if pos is None else pos)
            rows = self.cache.idx[kind][atom]
            length = int(counts.max()) if total else 0
            feats = np.zeros((b, length, self.dims[kind]), np.float32)
            mask = np.zeros((b, length), bool)
            extra = np.zeros((b, length), np.int64)
            if total:
                order = np.argsort(rows, kind="stable")  # one sorted gather from the memory map
                block = np.empty((total, self.dims[kind]), np.float32)
                block[order] = self.cache.feats[kind][rows[order]]
                if rng is not None and (noise or feature_dropout):   # on real atoms only: padding stays zero
                    block = _perturb(block, noise, feature_dropout, rng)
                feats[j, slot] = block
                mask[j, slot] = True
                if kind == "text":
                    extra[j, slot] = 1 + np.minimum(self.cache.text_field[atom], FIELD_PROFILE + 1)
                elif kind == "tag":
                    extra[j, slot] = self.tag_id_of_row[rows]
            out[kind] = (torch.from_numpy(feats), torch.from_numpy(mask), torch.from_numpy(extra))
        return TokenBatch(text=out["text"][0], text_type=out["text"][2], text_mask=out["text"][1],
                          frame=out["frame"][0], frame_mask=out["frame"][1],
                          tag=out["tag"][0], tag_id=out["tag"][2], tag_mask=out["tag"][1])


def _perturb(block: np.ndarray, noise: float, feature_dropout: float, rng: np.random.Generator) -> np.ndarray:
    """`block` + N(0, noise), then inverted dropout: drawn by torch from a generator seeded by `rng` (numpy's
    float32 Gaussian takes 2.7x as long, and this runs every training step)."""
    g = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
    x = torch.from_numpy(block)
    if noise:
        x += noise * torch.randn(x.shape, generator=g)
    if feature_dropout:
        x = dropout(x, feature_dropout, generator=g)
    return x.numpy()


MODALITIES = ("text", "frame", "tag")


@torch.inference_mode()
def embed_rows(model: FusionModel, batcher: Batcher, rows, batch_size: int = 512, only: str | None = None
               ) -> np.ndarray:
    """Vectors of the cache's streamers `rows`, each with all its atoms (or only those of kind `only`), in
    eval mode (the mode is restored)."""
    was = model.training
    model.eval()
    rows = [int(r) for r in rows]
    out = np.zeros((len(rows), model.dim), np.float32)
    for s in range(0, len(rows), batch_size):
        chunk = rows[s:s + batch_size]
        atoms = None if only is None else [[a for a in batcher.all_atoms(i) if a[0] == only] for i in chunk]
        out[s:s + len(chunk)] = model(batcher.make(chunk, atoms)).float().cpu().numpy()
    model.train(was)
    return out


def embed_modalities(model: FusionModel, batcher: Batcher, batch_size: int = 512) -> np.ndarray:
    """(n, 3, d) vectors of every streamer from its text atoms only, frames only, tags only (the fusion model
    reads any subset); all zeros where a streamer shows nothing of that kind. What `similar --explain` compares."""
    n = batcher.cache.n
    out = np.zeros((n, len(MODALITIES), model.dim), np.float32)
    for m, kind in enumerate(MODALITIES):
        has = np.flatnonzero(np.diff(batcher.cache.ptr[kind]) > 0)
        if len(has):
            out[has, m] = embed_rows(model, batcher, has, batch_size, only=kind)
    return out


def embed_all(model: FusionModel, batcher: Batcher, batch_size: int = 512) -> np.ndarray:
    """Vectors of every streamer in the cache."""
    return embed_rows(model, batcher, range(batcher.cache.n), batch_size)
