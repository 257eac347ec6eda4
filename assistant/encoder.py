"""all-MiniLM-L6-v2 as the ONNX file set-up exports (`python -m generator.export_onnx`,
mean pooling and L2 normalisation included), run with onnxruntime and tokenizers: no
torch. The NLU's featurizer (addons/nlu/sentence_embeddings.py) and the offline answer
benchmark use it. Nothing is fetched at run time.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "embeddings" / "all-MiniLM-L6-v2"


class EmbeddingModelMissing(RuntimeError):
    """The ONNX export is not where the configuration says."""


class SentenceEncoder:
    """Tokenizer + ONNX session; encodes texts in length-sorted batches."""

    def __init__(
        self, model_dir: Path, threads: int, quantized: bool = True, max_tokens: Optional[int] = None
    ) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        model_file = model_dir / ("model.int8.onnx" if quantized else "model.onnx")
        files = [model_file, model_dir / "tokenizer.json", model_dir / "export.json"]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise EmbeddingModelMissing(
                f"sentence embedding model not found ({', '.join(missing)}); "
                "run `make setup` (it exports it with `python -m generator.export_onnx`) "
                "or set EMBEDDINGS_MODEL_DIR"
            )
        meta = json.loads((model_dir / "export.json").read_text())
        self.dimensions = int(meta["dimensions"])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_tokens or int(meta["max_seq_length"]))
        self.tokenizer.no_padding()
        # Dynamic int8 quantisation scales activations per batch, so a sentence's vector
        # would depend on its batch mates: encode one at a time (training = serving).
        self.one_at_a_time = quantized
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: List[str], batch_size: int) -> np.ndarray:
        if self.one_at_a_time:
            batch_size = 1
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            (vectors,) = self.session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            out[batch] = vectors
        return out
