"""Dense sentence features from all-MiniLM-L6-v2, run with onnxruntime.

The Rasa environment has no torch (only a multi-GB CUDA build would install), so the
encoder runs as the ONNX file that set-up exports (`python -m generator.export_onnx`,
mean pooling and L2 normalisation included). The fp32 file gives embeddings identical
to sentence-transformers (about 10 ms a sentence); the int8 file, used by default,
takes about 3 ms with the same intent accuracy on the validation split. Nothing is
fetched at run time.
Only sentence-level features are produced: they are what the linear intent
classifier uses.

While serving, Rasa runs the NLU graph synchronously on its event loop. The encoder is
the largest single cost of a turn there, and onnxruntime and the tokenizer release the
GIL, so `prefetch` (awaited by MessageProcessor.parse_message, see addons/fixes.py)
encodes the message on this component's own worker thread first: the event loop serves
other conversations meanwhile, and `process` takes the ready vector.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Text

import numpy as np

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.exceptions import RasaException
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from addons import prepare_rasa
from assistant import encoder
from assistant.config import embeddings_model_dir
from assistant.encoder import DEFAULT_MODEL_DIR, SentenceEncoder

prepare_rasa()  # Rasa loads this module by its path: patches and logs on purpose (addons/__init__.py)

logger = logging.getLogger(__name__)

# Prefetched vectors kept at most (a parse that fails after its prefetch leaves one).
MAX_READY = 1024


class EmbeddingModelMissing(RasaException):
    """The ONNX export is not where the configuration says (Rasa shows the message alone)."""


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False
)
class SentenceEmbeddingFeaturizer(DenseFeaturizer, GraphComponent):
    """Adds a 384-dimensional sentence embedding to each message's text."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            **DenseFeaturizer.get_default_config(),
            # folder of the ONNX export; EMBEDDINGS_MODEL_DIR overrides it
            "model_dir": None,
            "batch_size": 64,
            "threads": 1,
            # int8 weights: about 3 ms instead of 10 ms a sentence, same accuracy here
            "quantized": True,
        }

    @staticmethod
    def required_packages() -> List[Text]:
        return ["onnxruntime", "tokenizers"]

    @classmethod
    def validate_config(cls, config: Dict[Text, Any]) -> None:
        if int(config["batch_size"]) < 1 or int(config["threads"]) < 1:
            raise RasaException("batch_size and threads must be at least 1")

    def __init__(self, config: Dict[Text, Any], name: Text) -> None:
        super().__init__(name, config)
        model_dir = Path(
            embeddings_model_dir() or config["model_dir"] or DEFAULT_MODEL_DIR
        )
        try:
            self.encoder = SentenceEncoder(model_dir, int(config["threads"]), bool(config["quantized"]))
        except encoder.EmbeddingModelMissing as error:
            raise EmbeddingModelMissing(str(error)) from None
        # Vectors encoded ahead by `prefetch`, by text, until `process` takes them.
        self._ready: Dict[Text, np.ndarray] = {}
        self._worker: Optional[ThreadPoolExecutor] = None

    async def prefetch(self, text: Text) -> None:
        """Encode `text` on the worker thread; the next `process` of it uses the vector."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="sentence-embeddings")
        vectors = await asyncio.get_running_loop().run_in_executor(
            self._worker, self.encoder.encode, [text], 1
        )
        if len(self._ready) >= MAX_READY:  # vectors of parses that never ran
            self._ready.clear()
        self._ready[text] = vectors[0]

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "SentenceEmbeddingFeaturizer":
        return cls(config, execution_context.node_name)

    def process(self, messages: List[Message]) -> List[Message]:
        ready, with_text = [], []
        for message in messages:
            text = message.get(TEXT)
            if text in self._ready:
                ready.append((message, self._ready.pop(text)))
            elif text is not None:
                with_text.append(message)
        if with_text:
            vectors = self.encoder.encode(
                [m.get(TEXT) for m in with_text], int(self._config["batch_size"])
            )
            ready += zip(with_text, vectors)
        for message, vector in ready:
            self.add_features_to_message(None, vector[np.newaxis, :], TEXT, message)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        self.process(training_data.training_examples)
        return training_data
