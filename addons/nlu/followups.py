"""Rasa's FallbackClassifier, plus: a continuation ("and after that?", "what about
Spain?") that the classifier puts on an intent with little confidence is an open
question.

Such a message only makes sense after the previous one, and the classifier, which sees
it alone, guesses: "and after that?" reads as `deny`, "and if the shop never completes
it?" as a transfer that hasn't arrived, which starts a form. As `nlu_fallback` it goes
to the answer action, which reads it in the context of the earlier question
(assistant/answers.py). Above `followup_threshold` the classifier's intent stands, so
"and I lost my card" still starts the lost card form.
"""
from __future__ import annotations

from typing import Any, Dict, Text

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.fallback_classifier import FallbackClassifier
from rasa.shared.nlu.constants import INTENT, PREDICTED_CONFIDENCE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from assistant.answers import opens_as_continuation
from addons import prepare_rasa

prepare_rasa()  # Rasa loads this module by its path: patches and logs on purpose (addons/__init__.py)


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class FollowUpFallbackClassifier(FallbackClassifier):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {**FallbackClassifier.get_default_config(), "followup_threshold": 0.5}

    def _should_fallback(self, message: Message) -> bool:
        if super()._should_fallback(message):
            return True
        confidence = (message.data.get(INTENT) or {}).get(PREDICTED_CONFIDENCE_KEY) or 0.0
        return confidence < self.component_config["followup_threshold"] and opens_as_continuation(
            message.get(TEXT) or "")
