"""Answer the customer's questions from the knowledge base (knowledge/*.md): the rasa-sdk
action around assistant/reply.py, which holds the pipeline below.

action_llm_reply answers every informational intent (data/rules/banking.yml), open
questions (nlu_fallback, out_of_scope), questions the NLU reads as `inform`, and
follow-ups. One turn:

  1. Context: a short, elliptical message continues the earlier question of the
     session (answers.followup_context); the query is then both together.
  2. Retrieve: embed the query (redacted, capped) through the generator's
     /v1/embeddings and rank passages (assistant/knowledge.py, with the NLU's intent
     ranking as a prior: the earlier question's for a follow-up).
  3. Extract: the sentences of the best page that state what was asked, verbatim, or
     nothing when the answerability gate says the pages do not cover the question
     (assistant/answers.py). Then the honest reply with a person offered (source
     "no_knowledge"): nothing is made up. When the two best pages are about as likely
     (ANSWER_CLARIFY_MARGIN), the customer is asked which one they mean instead (source
     "clarify"): a button per page, whose payload (/choose_topic{"topic_page": ...})
     brings the question back here to be answered from that page.
  4. Optionally generate (LLM_CANDIDATES > 0; 0 by default): N candidates from one
     batched request, phrased from the answer's page; each is tidied, repaired and
     checked by the guardrails, and one replaces the extractive answer only when it is
     at least as faithful (`faithful`: the same figures, no others, close in meaning).
     Source "llm" when one wins, "knowledge" otherwise.
  5. Cite: the reply ends with "Source: <page title>"; metadata.sources lists the page
     id, metadata.gate the gate's figures. The intent's own buttons (utter_<intent>)
     come with the answer.

If the generator fails or the turn takes longer than GENERATOR_TIMEOUT_S, the customer
gets the polite template utter_llm_fallback (source "fallback").
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Dict, List, Mapping, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions import metrics
from assistant import answers, knowledge
from assistant import generator_client as generator
from assistant.prompt import last_user_text
from assistant.reply import (  # noqa: F401 (the answer pipeline, also used through this module)
    CHOOSE_ENTITY, CHOOSE_INTENT, FALLBACK_RESPONSE, HUMAN_BUTTON, NO_KNOWLEDGE_TEXT, Answer, Candidate, answer,
    choose_button, cite, faithful, last_intent_ranking, load_index, load_sentences,
)
from actions.forms import FORM_INTENTS

logger = logging.getLogger(__name__)

def intent_buttons(domain: Mapping[str, Any], intent: Optional[str]) -> List[Dict[str, Any]]:
    """The buttons of the intent's own response (utter_<intent>), which lead on from its topic
    (not utter_inform's: its buttons offer the forms, for a detail with nothing to go on)."""
    if intent == "inform":
        return []
    variants = ((domain or {}).get("responses") or {}).get(f"utter_{intent}") or []
    return list(variants[0].get("buttons") or []) if variants and isinstance(variants[0], dict) else []


class ActionLLMReply(Action):
    """Answer a question from the knowledge base; on any failure, send a polite template.

    It answers every informational intent (data/rules/banking.yml), the questions of the
    intents that start a form (data/rules/forms.yml), open questions (nlu_fallback,
    out_of_scope) and follow-ups. The bot message carries `source` in its
    metadata ("knowledge": sentences of a page; "llm": a generated reply that beat them;
    "no_knowledge"; "fallback"; "intent": the intent's own response, which leads into a
    form, or utter_inform), which the tracker store keeps, so analytics and tests
    can tell them apart; `sources` lists the cited page ids.
    """

    def name(self) -> Text:
        return "action_llm_reply"

    async def run(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: Dict[Text, Any],
    ) -> List[Dict[Text, Any]]:
        started = time.monotonic()
        error_reason = None
        intent = (tracker.latest_message or {}).get("intent", {}).get("name")
        text = (tracker.latest_message or {}).get("text") or ""
        if intent == "inform" and not answers.is_question(text) and answers.followup_context(tracker.events) is None:
            # a bare detail ("£150", "yesterday") with no form asking and nothing to continue
            dispatcher.utter_message(response="utter_inform", source="intent")
            return []
        # An intent that starts a form: a question ("is a replacement free?") gets its answer,
        # anything else ("I lost my card") and any failure the intent's own words; then the
        # form asks its first question (data/rules/forms.yml).
        leads_to_form = intent in FORM_INTENTS
        if leads_to_form and not answers.asks_something(text):
            dispatcher.utter_message(response=f"utter_{intent}", source="intent")
            return []
        chosen = None  # the page a clarifying question's button chose
        if intent == CHOOSE_INTENT:
            chosen = next((e.get("value") for e in (tracker.latest_message or {}).get("entities") or []
                           if e.get("entity") == CHOOSE_ENTITY), None)
            chosen = chosen if isinstance(chosen, str) else ""
        if chosen is None and last_user_text(tracker.events) is None:  # no text to answer (an empty message)
            error_reason = "no user text"
        else:
            try:
                result = await answer(tracker.events, tracker.slots, page=chosen)
            except generator.GeneratorError as error:
                logger.warning("answer failed for %s: %s", tracker.sender_id, error.reason)
                metrics.LLM_CALLS.labels(error.reason.split(":")[0]).inc()
                error_reason = error.reason
            except knowledge.KnowledgeError as error:
                logger.error("answer failed for %s: %s", tracker.sender_id, error)
                error_reason = "knowledge index"
        if error_reason is not None and leads_to_form:
            dispatcher.utter_message(response=f"utter_{intent}", source="intent")
            return []
        if error_reason is not None:
            metrics.FALLBACKS.inc()
            metrics.LLM_REPLIES.labels("fallback").inc()
            dispatcher.utter_message(response=FALLBACK_RESPONSE, source="fallback", llm_error=error_reason)
            return []
        metrics.LLM_CALLS.labels("ok").inc()
        for reason in result.errors:
            metrics.LLM_CALLS.labels(reason).inc()
        metrics.LLM_SECONDS.observe(result.latency_ms / 1000)
        metrics.LLM_REPLIES.labels(result.source).inc()
        for reason in result.rejected:
            metrics.REJECTED_CANDIDATES.labels(reason).inc()
        for reason in result.dropped:
            metrics.DROPPED_SENTENCES.labels(reason).inc()
        if result.rounds > 1:
            metrics.RETRY_ROUNDS.inc(result.rounds - 1)
        retrieval = [
            {"page": h.passage.page_id, "section": h.passage.heading, "score": round(h.score, 3),
             "lexical": round(h.lexical, 3), "intent": round(h.intent, 3)}
            for h in result.hits[:3]
        ]
        extract = result.extract
        gate = {"coverage": round(extract.coverage, 3), "retrieval": round(extract.retrieval, 3),
                "followup": result.followup} if extract else {}
        if extract and extract.probability is not None:
            gate["probability"] = round(extract.probability, 3)  # the learned gate's estimate
        if extract and extract.why:
            gate["refused"] = extract.why
        logger.info(
            "answer for %s: %s %s (intent %s, gate %s, rejected %s) in %.2f s",
            tracker.sender_id, result.source, result.sources, intent, gate, result.rejected,
            time.monotonic() - started,
        )
        if result.source in ("no_knowledge", "clarify") and leads_to_form:
            dispatcher.utter_message(response=f"utter_{intent}", source="intent")
            return []
        if result.source == "no_knowledge":
            dispatcher.utter_message(
                text=result.text, buttons=[HUMAN_BUTTON], source="no_knowledge", retrieval=retrieval, gate=gate
            )
            return []
        if result.source == "clarify":
            dispatcher.utter_message(
                text=result.text, buttons=[choose_button(page, title) for page, title in result.choices] + [HUMAN_BUTTON],
                source="clarify", choices=[page for page, _ in result.choices], retrieval=retrieval, gate=gate,
            )
            return []
        extra: Dict[str, Any] = {}
        if result.rounds:
            extra["llm"] = {
                "model": result.model,
                "completion_tokens": result.completion_tokens,
                "latency_ms": result.latency_ms,
                "candidates": len(result.candidates),
                "rounds": result.rounds,
                "rejected": result.rejected,
                "dropped": result.dropped,
            }
        dispatcher.utter_message(
            text=result.text, buttons=intent_buttons(domain, intent), source=result.source,
            sources=result.sources, retrieval=retrieval, gate=gate, **extra,
        )
        return []
