"""anchor-embed: one content vector per live-streamer, taught by ID embeddings.

The public API (everything else is internal; heavy dependencies load only when used):

    model = anchor_embed.load("runs/transfer")          # a trained run
    vectors = model.encode(records)                      # dicts, a DataFrame, a pyarrow Table or a JSONL path
    lookup = anchor_embed.Lookup.open("index")           # an index folder; never imports torch
    for answer in lookup.similar(["s0001"], k=10): ...   # typed Neighbours / Neighbour results
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["AnchorEmbedError", "Lookup", "Model", "Neighbour", "Neighbours", "__version__", "load"]

from anchor_embed.errors import AnchorEmbedError

if TYPE_CHECKING:
    from anchor_embed.serving.encoder import Model
    from anchor_embed.serving.similar import Lookup, Neighbour, Neighbours

_LAZY = {"Lookup": "anchor_embed.serving.similar", "Neighbour": "anchor_embed.serving.similar",
         "Neighbours": "anchor_embed.serving.similar", "Model": "anchor_embed.serving.encoder"}


def load(run, adapter=None) -> Model:
    """Open a run folder (pretrain or transfer) for encoding: `load(run).encode(records)`; with `adapter` (an
    `adapt` run of it) the patched model, and `load(run, adapter=a).predict(records)` gives its labels."""
    from anchor_embed.serving.encoder import Model

    return Model(run, adapter)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'anchor_embed' has no attribute {name!r}")
