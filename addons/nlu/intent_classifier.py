"""Logistic regression over tf-idf weighted n-grams and dense sentence embeddings.

Rasa's LogisticRegressionClassifier feeds raw n-gram counts to a fixed C=1 model
and, when its file cannot be loaded, silently serves an untrained classifier. This
one re-weights the sparse count features with sublinear tf-idf (fitted at training
time, stored with the model), exposes the regularisation strength, and fails loudly.
On the Banking77 validation split the re-weighting and C=10 add about 4 points.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Text, Tuple

import numpy as np
from scipy.sparse import csr_matrix, hstack, vstack
from scipy.special import softmax
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression

from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.logistic_regression_classifier import LogisticRegressionClassifier
from rasa.shared.exceptions import RasaException
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, INTENT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from addons import prepare_rasa

prepare_rasa()  # Rasa loads this module by its path: patches and logs on purpose (addons/__init__.py)

logger = logging.getLogger(__name__)

# Types a stored classifier may contain: scikit-learn estimators and their arrays.
TRUSTED = ("sklearn.", "scipy.sparse.", "numpy.")


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True
)
class LinearIntentClassifier(LogisticRegressionClassifier):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            **LogisticRegressionClassifier.get_default_config(),
            "C": 10.0,
            "max_iter": 1000,
            "class_weight": None,
            # sublinear tf-idf on the sparse (n-gram count) features
            "tfidf": True,
            # mix in the votes of the k nearest training examples by their dense (sentence
            # embedding) features: (1 - knn_weight) * regression + knn_weight * votes, each
            # neighbour weighted exp((similarity - the best's) / knn_temperature); 0: off
            "knn_weight": 0.0,
            "knn_k": 5,
            "knn_temperature": 0.05,
        }

    def __init__(
        self,
        config: Dict[Text, Any],
        name: Text,
        model_storage: ModelStorage,
        resource: Resource,
    ) -> None:
        super().__init__(config, name, model_storage, resource)
        self.clf = LogisticRegression(
            C=float(self.config["C"]),
            solver=self.config["solver"],
            max_iter=int(self.config["max_iter"]),
            tol=self.config["tol"],
            class_weight=self.config["class_weight"],
            random_state=self.config["random_state"],
        )
        self._weights: Optional[np.ndarray] = None
        self._idf: Optional[np.ndarray] = None
        # the training examples' unit dense features and class indices, for the kNN votes
        self._memory: Optional[np.ndarray] = None
        self._memory_labels: Optional[np.ndarray] = None
        self.tfidf: Optional[TfidfTransformer] = (
            TfidfTransformer(sublinear_tf=True) if self.config["tfidf"] else None
        )

    @staticmethod
    def _features(messages: List[Message]) -> Tuple[Optional[csr_matrix], Optional[np.ndarray]]:
        sparse, dense = [], []
        for message in messages:
            sparse_features = message.get_sparse_features(attribute=TEXT)[1]
            dense_features = message.get_dense_features(attribute=TEXT)[1]
            if sparse_features is not None:
                sparse.append(csr_matrix(sparse_features.features))
            if dense_features is not None:
                dense.append(np.asarray(dense_features.features))
        if sparse and len(sparse) != len(messages) or dense and len(dense) != len(messages):
            raise RasaException("every message needs the same kinds of features")
        return (vstack(sparse).tocsr() if sparse else None), (np.vstack(dense) if dense else None)

    def _create_X(self, messages: List[Message]) -> csr_matrix:
        sparse, dense = self._features(messages)
        blocks = []
        if sparse is not None:
            blocks.append(self.tfidf.transform(sparse) if self.tfidf is not None else sparse)
        if dense is not None:
            blocks.append(csr_matrix(dense))
        if not blocks:
            raise RasaException(f"{self.__class__.__name__} needs a featurizer before it")
        return hstack(blocks).tocsr()

    def _prepare(self) -> None:
        """Keep the weights transposed and contiguous for prediction.

        scikit-learn's predict_proba multiplies by `coef_.T`, a Fortran-ordered view
        that scipy copies on every call (tens of MB with n-gram vocabularies): a fifth
        of a turn's time in profiles. The multinomial probabilities are computed here
        from the same weights instead.
        """
        self._weights = np.ascontiguousarray(self.clf.coef_.T)
        self._bias = self.clf.intercept_
        # scikit-learn recomputes `idf_` from a sparse diagonal matrix on every access
        self._idf = self.tfidf.idf_ if self.tfidf is not None and hasattr(self.tfidf, "idf_") else None

    def predict_proba(self, X: csr_matrix) -> np.ndarray:
        if self.clf.coef_.shape[0] == 1:  # two classes: scikit-learn's own path
            return self.clf.predict_proba(X)
        if getattr(self, "_weights", None) is None:
            self._prepare()
        return softmax(np.asarray(X @ self._weights) + self._bias, axis=1)

    def _message_logits(self, message: Message) -> Optional[np.ndarray]:
        """One message's class scores, straight from its sentence features.

        The same numbers as `_create_X` then `predict_proba` (tests check), without
        building sparse matrices: Rasa's feature combining, scikit-learn's tf-idf and
        scipy's stacking cost more than the arithmetic for one short message. None
        when the message's features do not fit the weights (the matrix path then
        raises the clear error).
        """
        sparse, dense = [], []
        for feature in message.features:
            if feature.attribute == TEXT and feature.type == FEATURE_TYPE_SENTENCE:
                (sparse if feature.is_sparse() else dense).append(feature.features)
        x_dense = np.concatenate([np.asarray(d, dtype=np.float64).ravel() for d in dense]) if dense else np.zeros(0)
        n_sparse = self._weights.shape[0] - x_dense.size
        columns, values, offset = [], [], 0
        for block in sparse:
            block = block.tocoo()
            columns.append(block.col + offset)
            values.append(block.data.astype(np.float64))
            offset += block.shape[1]
        if offset != n_sparse or (self.tfidf is not None and (self._idf is None or len(self._idf) != n_sparse)):
            return None
        cols = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int64)
        vals = np.concatenate(values) if values else np.zeros(0)
        if self.tfidf is not None and vals.size:
            vals = (np.log(vals) + 1.0 if self.tfidf.sublinear_tf else vals) * self._idf[cols]
            norm = np.sqrt(vals @ vals)
            if norm > 0:
                vals = vals / norm
        return vals @ self._weights[cols] + x_dense @ self._weights[n_sparse:] + self._bias

    def _probabilities(self, messages: List[Message]) -> np.ndarray:
        if self.clf.coef_.shape[0] > 1 and (self.tfidf is None or self.tfidf.norm == "l2"):
            if getattr(self, "_weights", None) is None:
                self._prepare()
            logits = [self._message_logits(m) for m in messages]
            if all(row is not None for row in logits):
                return softmax(np.vstack(logits), axis=1)
        return self.predict_proba(self._create_X(messages))

    @staticmethod
    def _unit_dense(messages: List[Message]) -> Optional[np.ndarray]:
        rows = []
        for message in messages:
            dense = [np.asarray(f.features, dtype=np.float32).ravel() for f in message.features
                     if f.attribute == TEXT and f.type == FEATURE_TYPE_SENTENCE and not f.is_sparse()]
            if not dense:
                return None
            rows.append(np.concatenate(dense))
        matrix = np.vstack(rows)
        return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)

    def _with_neighbours(self, messages: List[Message], probabilities: np.ndarray) -> np.ndarray:
        """The regression's probabilities mixed with the k nearest training examples' votes."""
        weight = float(self.config["knn_weight"])
        if weight <= 0 or self._memory is None:
            return probabilities
        queries = self._unit_dense(messages)
        if queries is None or queries.shape[1] != self._memory.shape[1]:
            raise RasaException("the kNN votes need the dense features the classifier was trained with")
        k = min(int(self.config["knn_k"]), len(self._memory))
        similarity = queries @ self._memory.T
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        votes = np.zeros_like(probabilities)
        for row, columns in enumerate(nearest):
            sims = similarity[row, columns]
            weights = np.exp((sims - sims.max()) / float(self.config["knn_temperature"]))
            np.add.at(votes[row], self._memory_labels[columns], weights / weights.sum())
        return (1 - weight) * probabilities + weight * votes

    def process(self, messages: List[Message]) -> List[Message]:
        if not hasattr(self.clf, "coef_"):  # never trained (no intent examples)
            return messages
        probabilities = self._with_neighbours(messages, self._probabilities(messages))
        for message, row in zip(messages, probabilities):
            ranking = sorted(
                ({"name": name, "confidence": float(p)} for name, p in zip(self.clf.classes_, row)),
                key=lambda entry: -entry["confidence"],
            )
            message.set("intent", ranking[0], add_to_output=True)
            if self.config["ranking_length"] > 0:
                ranking = ranking[: self.config["ranking_length"]]
            message.set("intent_ranking", ranking, add_to_output=True)
        return messages

    def train(self, training_data: TrainingData) -> Resource:
        examples = [e for e in training_data.intent_examples if e.get(INTENT) and e.get(TEXT)]
        if not examples:
            logger.debug("No intent examples: %s is not trained.", self.__class__.__name__)
            return self._resource
        if self.tfidf is not None:
            sparse, _ = self._features(examples)
            if sparse is not None:
                self.tfidf.fit(sparse)
        self.clf.fit(self._create_X(examples), [e.get(INTENT) for e in examples])
        if float(self.config["knn_weight"]) > 0:
            memory = self._unit_dense(examples)
            if memory is None:
                raise RasaException("knn_weight needs a dense featurizer (sentence embeddings) before the classifier")
            index = {name: i for i, name in enumerate(self.clf.classes_)}
            self._memory = memory.astype(np.float32)
            self._memory_labels = np.array([index[e.get(INTENT)] for e in examples], dtype=np.int64)
        self._prepare()
        self.persist()
        return self._resource

    def persist(self) -> None:
        import skops.io as sio

        with self._model_storage.write_to(self._resource) as model_dir:
            sio.dump({"clf": self.clf, "tfidf": self.tfidf, "memory": self._memory,
                      "memory_labels": self._memory_labels}, model_dir / "classifier.skops")

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> "LinearIntentClassifier":
        import skops.io as sio

        component = cls(config, execution_context.node_name, model_storage, resource)
        try:
            with model_storage.read_from(resource) as model_dir:
                path = model_dir / "classifier.skops"
                untrusted = [
                    t for t in sio.get_untrusted_types(file=path) if not t.startswith(TRUSTED)
                ]
                if untrusted:
                    raise RasaException(f"untrusted types in {path.name}: {untrusted}")
                stored = sio.load(path, trusted=sio.get_untrusted_types(file=path))
        except ValueError:
            # Rasa's own behaviour when the component was never trained (no data).
            logger.debug("No trained %s in the model.", cls.__name__)
            return component
        component.clf, component.tfidf = stored["clf"], stored["tfidf"]
        component._memory, component._memory_labels = stored.get("memory"), stored.get("memory_labels")
        component._prepare()
        return component
