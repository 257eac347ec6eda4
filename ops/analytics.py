"""Conversation analytics from the tracker store, as text and as an HTML page.

Reads Rasa's `events` table (SQLite or PostgreSQL, TRACKER_STORE_URL): conversations
per day, turns per conversation, top intents, the rates of fallback, handoff and LLM
replies, how handoffs ended (answered by an agent in the agent console, handed back to
the bot, closed, still open), and the least confident user messages, which are also
written as an NLU file of candidate training examples for a person to review.
"""
from __future__ import annotations

import base64
import html
import io
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import sqlalchemy as sa

from assistant import conversations
from assistant.conversations import ReplySource

FALLBACK_INTENT = "nlu_fallback"
HANDOFF_ACTION = "utter_request_human"
LLM_ACTION = "action_llm_reply"
RELEASE_INTENT = "handoff_released"  # triggered by a hand back (console, ops release)


@dataclass
class Analytics:
    conversations_per_day: Dict[str, int] = field(default_factory=dict)
    turns_per_conversation: List[int] = field(default_factory=list)
    top_intents: List[Tuple[str, int]] = field(default_factory=list)
    user_turns: int = 0
    fallback_turns: int = 0
    handoff_turns: int = 0
    llm_turns: int = 0
    llm_fallback_replies: int = 0
    agent_messages: int = 0  # replies people wrote in the agent console
    agent_conversations: int = 0  # conversations a person answered
    handoffs_released: int = 0  # handed back to the bot
    handoffs_closed: int = 0  # closed by an agent
    low_confidence: List[Tuple[float, str, str, str]] = field(default_factory=list)

    def rate(self, count: int) -> float:
        return count / self.user_turns if self.user_turns else 0.0


def _top_non_fallback(parse_data: Dict) -> Tuple[str, float]:
    for entry in parse_data.get("intent_ranking") or [parse_data.get("intent") or {}]:
        if entry.get("name") and entry["name"] != FALLBACK_INTENT:
            return entry["name"], float(entry.get("confidence") or 0.0)
    intent = parse_data.get("intent") or {}
    return intent.get("name") or "", float(intent.get("confidence") or 0.0)


def collect(url: str, since_days: Optional[float] = None, lowest: int = 50) -> Analytics:
    engine = sa.create_engine(url)
    since = time.time() - since_days * 86400 if since_days is not None else None
    first_seen: Dict[str, float] = {}
    turns: Dict[str, int] = defaultdict(int)
    intents: Counter = Counter()
    answered_by_agent = set()
    result = Analytics()
    with engine.connect() as connection:
        if not conversations.has_events(connection):
            return result
        for _, sender, kind, timestamp, intent, action, data in conversations.rows(connection, since=since):
            first_seen.setdefault(sender, timestamp or 0.0)
            if kind == "user":
                if intent == RELEASE_INTENT:
                    result.handoffs_released += 1
                    continue  # not typed by the customer
                result.user_turns += 1
                turns[sender] += 1
                intents[intent or "?"] += 1
                result.fallback_turns += intent == FALLBACK_INTENT
                event = json.loads(data)
                guess, confidence = _top_non_fallback(event.get("parse_data") or {})
                result.low_confidence.append((confidence, event.get("text") or "", guess, sender))
            elif kind == "action":
                result.handoff_turns += action == HANDOFF_ACTION
                result.llm_turns += action == LLM_ACTION
            elif kind == "bot" and '"fallback"' in (data or ""):
                result.llm_fallback_replies += conversations.reply_source(json.loads(data)) == ReplySource.FALLBACK
            elif kind == "bot" and '"agent"' in (data or ""):
                event = json.loads(data)
                if conversations.reply_source(event) == ReplySource.AGENT:
                    result.agent_messages += 1
                    answered_by_agent.add(sender)
                    custom = (event.get("data") or {}).get("custom") or {}
                    result.handoffs_closed += isinstance(custom, dict) and custom.get("handoff") is False
    result.agent_conversations = len(answered_by_agent)
    days = Counter(time.strftime("%Y-%m-%d", time.gmtime(ts)) for ts in first_seen.values())
    result.conversations_per_day = dict(sorted(days.items()))
    result.turns_per_conversation = sorted(turns.values())
    result.top_intents = intents.most_common(15)
    result.low_confidence = sorted(t for t in result.low_confidence if t[1])[:lowest]
    return result


def to_text(a: Analytics) -> str:
    lines = [f"conversations: {len(a.turns_per_conversation)}, user turns: {a.user_turns}"]
    if a.turns_per_conversation:
        t = a.turns_per_conversation
        lines.append(f"turns per conversation: median {t[len(t) // 2]}, max {t[-1]}")
    lines.append(
        f"fallback (low confidence) {a.rate(a.fallback_turns):.1%}, LLM replies {a.rate(a.llm_turns):.1%}, "
        f"LLM unavailable {a.rate(a.llm_fallback_replies):.1%}, handoff {a.rate(a.handoff_turns):.1%}"
    )
    still_open = max(0, a.handoff_turns - a.handoffs_released - a.handoffs_closed)
    lines.append(
        f"handoffs: {a.handoff_turns} requested; a person answered {a.agent_conversations} conversations "
        f"({a.agent_messages} messages); {a.handoffs_released} handed back to the bot, {a.handoffs_closed} closed, "
        f"{still_open} still open"
    )
    lines.append("conversations per day: " + ", ".join(f"{d} {n}" for d, n in a.conversations_per_day.items()))
    lines.append("top intents: " + ", ".join(f"{i} {n}" for i, n in a.top_intents))
    lines.append("least confident messages:")
    lines += [f"  {c:.2f}  {guess:<28} {text}" for c, text, guess, _ in a.low_confidence[:10]]
    return "\n".join(lines) + "\n"


def candidates_yaml(a: Analytics) -> str:
    """Low-confidence messages grouped by the model's guess, to review before training."""
    by_guess: Dict[str, List[str]] = defaultdict(list)
    for _, text, guess, _ in a.low_confidence:
        by_guess[guess].append(" ".join(text.split()))
    lines = ["# Candidate training examples: the model's guess is NOT checked. Review every line,",
             "# move each to the right intent (or delete it), then add the file to data/nlu/.",
             'version: "3.1"', "nlu:"]
    for guess, texts in sorted(by_guess.items()):
        lines += [f"- intent: {guess}", "  examples: |"] + [f"    - {t}" for t in texts]
    return "\n".join(lines) + "\n"


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def to_html(a: Analytics) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = []
    for title, draw in (
        ("Conversations per day", lambda ax: ax.bar(list(a.conversations_per_day), list(a.conversations_per_day.values()))),
        ("Turns per conversation", lambda ax: ax.hist(a.turns_per_conversation or [0], bins=20)),
        ("Top intents", lambda ax: ax.barh([i for i, _ in a.top_intents][::-1], [n for _, n in a.top_intents][::-1])),
    ):
        figure, ax = plt.subplots(figsize=(7, 3.2))
        draw(ax)
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=30)
        charts.append(f'<img alt="{title}" src="data:image/png;base64,{_png(figure)}">')
        plt.close(figure)
    rows = "".join(
        f"<tr><td>{c:.2f}</td><td>{html.escape(g)}</td><td>{html.escape(t)}</td></tr>"
        for c, t, g, _ in a.low_confidence
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>Assistant analytics</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 8px}</style>"
        f"<h1>Assistant analytics</h1><pre>{html.escape(to_text(a))}</pre>{''.join(charts)}"
        f"<h2>Least confident messages</h2><table><tr><th>confidence</th><th>guess</th><th>message</th></tr>{rows}</table>"
    )


def write_report(url: str, out_dir: Path, since_days: Optional[float] = None) -> Analytics:
    result = collect(url, since_days)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "analytics.txt").write_text(to_text(result))
    (out_dir / "analytics.html").write_text(to_html(result))
    (out_dir / "candidates.yml").write_text(candidates_yaml(result))
    return result
