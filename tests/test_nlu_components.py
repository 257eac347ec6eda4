"""The custom NLU components on the real exported MiniLM model."""
from __future__ import annotations

import numpy as np
import pytest

from addons.nlu.sentence_embeddings import DEFAULT_MODEL_DIR, EmbeddingModelMissing, SentenceEncoder


@pytest.fixture(scope="module")
def encoder():
    if not (DEFAULT_MODEL_DIR / "model.onnx").is_file():
        pytest.fail("ONNX export missing: run `make setup`")
    return SentenceEncoder(DEFAULT_MODEL_DIR, threads=1)


def test_a_missing_export_is_a_clear_error(tmp_path):
    with pytest.raises(EmbeddingModelMissing, match="make setup"):
        SentenceEncoder(tmp_path, threads=1)


def test_embeddings_are_unit_vectors_and_batching_does_not_change_them(encoder):
    texts = ["hi", "my card still hasn't arrived after two weeks, what should I do?", "", "exchange rate"]
    batched = encoder.encode(texts, batch_size=3)
    single = np.vstack([encoder.encode([t], batch_size=1) for t in texts])
    assert batched.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, single, atol=1e-5)  # padding is masked out


def test_similar_questions_are_closer_than_unrelated_ones(encoder):
    a, b, c = encoder.encode(
        ["where is my new card?", "my card has not been delivered yet", "what is the capital of France"],
        batch_size=8,
    )
    assert a @ b > a @ c + 0.2


def test_classifier_probabilities_match_scikit_learn(tmp_path):
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from scipy.sparse import random as sparse_random
    from sklearn.linear_model import LogisticRegression

    from addons.nlu.intent_classifier import LinearIntentClassifier

    X = sparse_random(300, 2000, density=0.01, format="csr", random_state=1)
    y = [f"intent_{i % 5}" for i in range(300)]
    component = LinearIntentClassifier(
        LinearIntentClassifier.get_default_config(), "clf", LocalModelStorage(tmp_path), Resource("clf")
    )
    component.clf = LogisticRegression(C=10, max_iter=500).fit(X, y)
    component._prepare()
    np.testing.assert_allclose(component.predict_proba(X), component.clf.predict_proba(X), atol=1e-9)
