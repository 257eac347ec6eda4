"""The custom NLU components on the real exported MiniLM model."""
from __future__ import annotations

import numpy as np
import pytest

from assistant.encoder import DEFAULT_MODEL_DIR, EmbeddingModelMissing, SentenceEncoder


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


def test_the_per_message_path_gives_the_matrix_path_probabilities(tmp_path):
    """process() scores each message from its features directly; it must equal the
    tf-idf + stacked-matrix path it replaces, feature kinds and order as Rasa makes them."""
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, FEATURE_TYPE_SEQUENCE, INTENT, TEXT
    from rasa.shared.nlu.training_data.features import Features
    from rasa.shared.nlu.training_data.message import Message
    from rasa.shared.nlu.training_data.training_data import TrainingData
    from scipy.sparse import coo_matrix
    from scipy.sparse import random as sparse_random

    from addons.nlu.intent_classifier import LinearIntentClassifier

    rng = np.random.default_rng(3)

    def message(i: int) -> Message:
        m = Message(data={TEXT: f"text {i}", INTENT: f"intent_{i % 4}"})
        words = sparse_random(1, 50, density=0.1, random_state=i, data_rvs=lambda n: rng.integers(1, 4, n))
        chars = sparse_random(1, 80, density=0.1, random_state=1000 + i, data_rvs=lambda n: rng.integers(1, 4, n))
        m.add_features(Features(coo_matrix(words.toarray().repeat(3, axis=0)), FEATURE_TYPE_SEQUENCE, TEXT, "words"))
        m.add_features(Features(coo_matrix(words), FEATURE_TYPE_SENTENCE, TEXT, "words"))
        m.add_features(Features(coo_matrix(chars), FEATURE_TYPE_SENTENCE, TEXT, "chars"))
        m.add_features(Features(rng.normal(size=(1, 16)), FEATURE_TYPE_SENTENCE, TEXT, "embeddings"))
        return m

    component = LinearIntentClassifier(
        LinearIntentClassifier.get_default_config(), "clf", LocalModelStorage(tmp_path), Resource("clf")
    )
    component.train(TrainingData([message(i) for i in range(200)]))
    unseen = [message(i) for i in range(200, 260)] + [Message(data={TEXT: "no words"})]
    unseen[-1].add_features(Features(coo_matrix((1, 50)), FEATURE_TYPE_SENTENCE, TEXT, "words"))
    unseen[-1].add_features(Features(coo_matrix((1, 80)), FEATURE_TYPE_SENTENCE, TEXT, "chars"))
    unseen[-1].add_features(Features(np.zeros((1, 16)), FEATURE_TYPE_SENTENCE, TEXT, "embeddings"))
    from scipy.special import softmax

    direct = softmax(np.vstack([component._message_logits(m) for m in unseen]), axis=1)
    matrix = component.predict_proba(component._create_X(unseen))
    assert direct.shape == matrix.shape == (61, 4)
    np.testing.assert_allclose(direct, matrix, atol=1e-9)
    np.testing.assert_allclose(component._probabilities(unseen), matrix, atol=1e-9)
    # A message whose features do not fit the weights goes the matrix way, to its clear error.
    short = Message(data={TEXT: "x"})
    short.add_features(Features(np.zeros((1, 16)), FEATURE_TYPE_SENTENCE, TEXT, "embeddings"))
    assert component._message_logits(short) is None


def test_the_nearest_training_examples_vote_with_the_regression(tmp_path):
    """knn_weight mixes the regression's probabilities with the votes of the k nearest
    training examples by their dense features; the votes survive persist and load."""
    from rasa.engine.graph import ExecutionContext, GraphSchema
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, INTENT, TEXT
    from rasa.shared.nlu.training_data.features import Features
    from rasa.shared.nlu.training_data.message import Message
    from rasa.shared.nlu.training_data.training_data import TrainingData
    from scipy.sparse import coo_matrix

    from addons.nlu.intent_classifier import LinearIntentClassifier

    rng = np.random.default_rng(5)
    centres = rng.normal(size=(3, 8))

    def message(label: int, vector: np.ndarray, intent: bool = True) -> Message:
        m = Message(data={TEXT: "x", **({INTENT: f"intent_{label}"} if intent else {})})
        m.add_features(Features(coo_matrix(np.ones((1, 5))), FEATURE_TYPE_SENTENCE, TEXT, "words"))
        m.add_features(Features(vector.reshape(1, -1), FEATURE_TYPE_SENTENCE, TEXT, "embeddings"))
        return m

    vectors = [centres[i % 3] + 0.3 * rng.normal(size=8) for i in range(60)]
    train = [message(i % 3, vector) for i, vector in enumerate(vectors)]
    storage = LocalModelStorage(tmp_path)
    config = {**LinearIntentClassifier.get_default_config(), "knn_weight": 0.5, "knn_k": 3}
    plain = LinearIntentClassifier(LinearIntentClassifier.get_default_config(), "plain", storage, Resource("plain"))
    plain.train(TrainingData(train))
    mixed = LinearIntentClassifier(config, "mixed", storage, Resource("mixed"))
    mixed.train(TrainingData(train))
    # a message lying exactly on one training example: its 3 neighbours vote for that class
    probe = [message(0, vectors[3], intent=False)]
    regression = plain._probabilities(probe)
    np.testing.assert_allclose(mixed._probabilities(probe), regression)  # the same regression
    votes = (mixed._with_neighbours(probe, regression) - 0.5 * regression) / 0.5
    assert votes.shape == (1, 3) and abs(votes.sum() - 1) < 1e-6
    # the 3 nearest are all of intent_0 (the centres are far apart): the votes are all its
    assert int(np.argmax(votes)) == list(mixed.clf.classes_).index("intent_0")
    np.testing.assert_allclose(np.sort(votes.ravel()), [0, 0, 1], atol=1e-9)
    assert np.sort(regression.ravel())[1] > 1e-6  # which the regression alone is not
    # off by default; and persisted with the model
    np.testing.assert_allclose(plain._with_neighbours(probe, regression), regression)
    context = ExecutionContext(GraphSchema({}), "test")
    loaded = LinearIntentClassifier.load(config, storage, Resource("mixed"), context)
    np.testing.assert_allclose(loaded._with_neighbours(probe, regression), mixed._with_neighbours(probe, regression))
    [out] = loaded.process([message(0, vectors[3], intent=False)])
    assert out.get("intent")["name"] == "intent_0"


@pytest.mark.parametrize("options", [{"max_ngram": 2}, {"analyzer": "char_wb", "min_ngram": 2, "max_ngram": 4}])
def test_sentence_count_vectors_are_rasas_sentence_features(tmp_path, options):
    """The sentence-only featurizer gives Rasa's sentence features, and no token rows."""
    from rasa.engine.graph import ExecutionContext, GraphSchema
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
    from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer
    from rasa.shared.nlu.constants import INTENT, TEXT
    from rasa.shared.nlu.training_data.message import Message
    from rasa.shared.nlu.training_data.training_data import TrainingData

    from addons.nlu.count_vectors import SentenceCountVectorsFeaturizer
    from ops import settings
    from ops.data import read_banking77

    texts = [t for ts in read_banking77(settings.SHARED_DATA_DIR / "banking77" / "train.csv").values() for t in ts[:6]]
    tokenizer = WhitespaceTokenizer(WhitespaceTokenizer.get_default_config())
    context = ExecutionContext(GraphSchema({}), "test")

    def featurized(cls, name):
        config = {**cls.get_default_config(), **options}
        component = cls.create(config, LocalModelStorage(tmp_path), Resource(name), context)
        train = TrainingData([Message(data={TEXT: t, INTENT: "x"}) for t in texts[::2]])
        tokenizer.process_training_data(train)
        component.train(train)
        messages = [Message(data={TEXT: t}) for t in texts[1::2]] + [Message(data={TEXT: "zzqx unseen words"})]
        tokenizer.process(messages)
        return component.process(messages)

    ours = featurized(SentenceCountVectorsFeaturizer, "ours")
    rasas = featurized(CountVectorsFeaturizer, "rasa")
    assert len(ours) > 200
    for mine, theirs in zip(ours, rasas):
        assert mine.get_sparse_features(TEXT)[0] is None  # no sequence features
        assert theirs.get_sparse_features(TEXT)[0] is not None
        a, b = mine.get_sparse_features(TEXT)[1].features, theirs.get_sparse_features(TEXT)[1].features
        assert a.shape == b.shape and (a.toarray() == b.toarray()).all()
