"""Answer open-ended and low-confidence turns with the language model."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions import metrics
from actions.clients import generator
from actions.conversation import build_prompt

logger = logging.getLogger(__name__)

FALLBACK_RESPONSE = "utter_llm_fallback"


class ActionLLMReply(Action):
    """Ask the generator for a reply; on any failure, send a polite template.

    The bot message carries `source` in its metadata ("llm" or "fallback"), which
    the tracker store keeps, so analytics and tests can tell the two apart.
    """

    def name(self) -> Text:
        return "action_llm_reply"

    async def run(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: Dict[Text, Any],
    ) -> List[Dict[Text, Any]]:
        messages = build_prompt(tracker.events)
        if len(messages) < 2:  # no user text to answer (e.g. an empty message)
            metrics.FALLBACKS.inc()
            dispatcher.utter_message(response=FALLBACK_RESPONSE, source="fallback", llm_error="no user text")
            return []
        try:
            reply = await generator.chat(messages)
        except generator.GeneratorError as error:
            logger.warning("LLM reply failed for %s: %s", tracker.sender_id, error.reason)
            metrics.LLM_CALLS.labels(error.reason.split(":")[0]).inc()
            metrics.FALLBACKS.inc()
            dispatcher.utter_message(response=FALLBACK_RESPONSE, source="fallback", llm_error=error.reason)
            return []
        metrics.LLM_CALLS.labels("ok").inc()
        metrics.LLM_SECONDS.observe(reply.latency_ms / 1000)
        dispatcher.utter_message(
            text=reply.texts[0],
            source="llm",
            llm={
                "model": reply.model,
                "completion_tokens": reply.completion_tokens,
                "latency_ms": reply.latency_ms,
            },
        )
        return []
