"""Rasa's CountVectorsFeaturizer without the per-token (sequence) features.

Rasa's featurizer vectorizes every message twice: once per token (sequence features,
one row per token, for DIET and other sequence models) and once as a whole (sentence
features). This bot's classifier (addons.nlu.intent_classifier) reads only sentence
features, so the sequence pass is half the featurizer's work for nothing, on every
turn and on every training example. This class skips it; vocabulary, options, training
and the sentence features are Rasa's own (tests/test_nlu_components.py compares them).

Use it only in front of components that read sentence features; a pipeline with DIET,
ResponseSelector or an entity extractor that needs token features keeps Rasa's class.
"""
from __future__ import annotations

from typing import List, Optional, Text, Tuple

import scipy.sparse
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.constants import DENSE_FEATURIZABLE_ATTRIBUTES
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer

from addons import prepare_rasa

prepare_rasa()  # Rasa loads this module by its path: patches and logs on purpose (addons/__init__.py)


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=True)
class SentenceCountVectorsFeaturizer(CountVectorsFeaturizer):
    """CountVectorsFeaturizer that adds sentence features only."""

    def _create_features(
        self, attribute: Text, all_tokens: List[List[Text]]
    ) -> Tuple[List[Optional[scipy.sparse.spmatrix]], List[Optional[scipy.sparse.spmatrix]]]:
        vectorizer = self.vectorizers.get(attribute) if self.vectorizers else None
        if not vectorizer:
            return [None], [None]
        sentence_features: List[Optional[scipy.sparse.spmatrix]] = []
        for tokens in all_tokens:
            if not tokens or attribute not in DENSE_FEATURIZABLE_ATTRIBUTES:
                sentence_features.append(None)
                continue
            vector = vectorizer.transform([" ".join(tokens)])
            vector.sort_indices()
            sentence_features.append(vector.tocoo())
        return [None] * len(all_tokens), sentence_features
