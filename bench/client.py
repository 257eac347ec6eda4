"""The load client of the benchmarks and the reliability tests.

Simulated customers hold conversations through Rasa's REST channel, closed loop: each
sends its next message as soon as the reply to the last one arrives. Every turn is
recorded (what was sent, status, reply, latency, attempts, which replica answered when
the load balancer says so), and `stored_events` / `stored_turns` read back what the SQL
tracker store kept, so a test or benchmark can compare the two.

Retries: with `retries` > 0 a turn that got no reply (connection error, timeout, 5xx,
or an empty reply, which is how Rasa's REST channel answers a turn that failed inside
Rasa) is sent again after `retry_delay_s`, with the same `metadata.client_message_id`.
Rasa stores a UserUttered event's metadata, so a message that was processed by a
replica that died before answering and then again after the retry shows up twice in
the tracker store with one id: at-least-once delivery, duplicates detectable.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import aiohttp

from assistant import conversations

# A conversation script: (kind, text) per turn; kind is a label for the report
# ("intent", "llm", ...).
Script = List[Tuple[str, str]]


@dataclass
class Turn:
    sender: str
    index: int
    kind: str
    text: str
    message_id: str
    ok: bool = False
    status: Optional[int] = None
    reply: Any = None
    latency_ms: float = 0.0  # from the first send to the last answer, retries included
    attempts: int = 0
    failures: List[str] = field(default_factory=list)
    upstream: Optional[str] = None  # the replica that answered (X-Upstream), if shown
    started: float = 0.0  # time.monotonic()
    finished: float = 0.0
    handoff: bool = False  # the bot handed the conversation to a person


def hands_off(reply: Any) -> bool:
    """Whether a reply hands the conversation to a person (custom: {handoff: true})."""
    return isinstance(reply, list) and any(
        isinstance(m, dict) and isinstance(m.get("custom"), dict) and m["custom"].get("handoff") is True
        for m in reply
    )


def is_reply(status: Optional[int], reply: Any) -> bool:
    return status == 200 and isinstance(reply, list) and len(reply) > 0


async def converse(
    session: aiohttp.ClientSession,
    url: str,
    sender: str,
    script: Script,
    *,
    retries: int = 0,
    retry_delay_s: float = 0.5,
    message_ids: bool = True,
    headers: Optional[Dict[str, str]] = None,
) -> List[Turn]:
    """One customer's conversation, turn after turn; returns every turn's record.

    A customer whose conversation the bot hands to a person stops there (the bot is
    silent until a person releases it), so the conversation may be shorter than its
    script; its last turn has `handoff` set.
    """
    turns = []
    for index, (kind, text) in enumerate(script):
        turn = Turn(sender, index, kind, text, uuid.uuid4().hex, started=time.monotonic())
        body: Dict[str, Any] = {"sender": sender, "message": text}
        if message_ids:
            body["metadata"] = {"client_message_id": turn.message_id}
        for attempt in range(retries + 1):
            turn.attempts = attempt + 1
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    turn.status = response.status
                    turn.upstream = response.headers.get("X-Upstream")
                    raw = await response.read()
                try:
                    turn.reply = json.loads(raw) if raw else None
                except ValueError:  # e.g. the load balancer's HTML error page
                    turn.reply = raw[:200].decode(errors="replace")
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                turn.status, turn.reply = None, None
                turn.failures.append(type(error).__name__)
            else:
                if is_reply(turn.status, turn.reply):
                    turn.ok = True
                    break
                turn.failures.append(f"http {turn.status}" if turn.status != 200 else "empty reply")
                if turn.status is not None and 400 <= turn.status < 500:
                    break  # the request itself is wrong: sending it again won't help
            if attempt < retries:
                await asyncio.sleep(retry_delay_s)
        turn.finished = time.monotonic()
        turn.latency_ms = (turn.finished - turn.started) * 1000
        turn.handoff = turn.ok and hands_off(turn.reply)
        turns.append(turn)
        if turn.handoff:
            break
    return turns


async def run_load(
    url: str,
    scripts: Dict[str, Script],
    *,
    retries: int = 0,
    retry_delay_s: float = 0.5,
    timeout_s: float = 120,
    message_ids: bool = True,
    headers: Optional[Dict[str, str]] = None,
) -> Tuple[List[Turn], float]:
    """All conversations at once (one customer per script); (turns, wall seconds)."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        started = time.perf_counter()
        results = await asyncio.gather(*[
            converse(session, url, sender, script, retries=retries, retry_delay_s=retry_delay_s,
                     message_ids=message_ids, headers=headers)
            for sender, script in scripts.items()
        ])
        wall = time.perf_counter() - started
    return [turn for turns in results for turn in turns], wall


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _figures(turns: Sequence[Turn]) -> Dict[str, Any]:
    latencies = [t.latency_ms for t in turns]
    return {
        "turns": len(turns),
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "errors": sum(not t.ok for t in turns),
        "retried": sum(t.attempts > 1 for t in turns),
    }


def summarize(turns: Sequence[Turn], wall_s: float) -> Dict[str, Any]:
    """turns/s, latency percentiles (ms) and errors, overall and by turn kind."""
    by_kind: Dict[str, List[Turn]] = defaultdict(list)
    for turn in turns:
        by_kind[turn.kind].append(turn)
    summary = _figures(turns)
    summary["wall_s"] = wall_s
    summary["turns_s"] = len(turns) / wall_s if wall_s else float("nan")
    summary["by_kind"] = {kind: _figures(group) for kind, group in sorted(by_kind.items())}
    return summary


# --- What the tracker store kept --------------------------------------------------------

def stored_events(db_url: str, senders: Iterable[str]) -> Dict[str, List[Dict[str, Any]]]:
    """Each sender's events from the SQL tracker store's `events` table, in insertion
    order (id), as dicts with `event` (the type), `_id` and the stored JSON's fields."""
    return conversations.read_conversations(db_url, senders)


@dataclass
class StoredTurn:
    """One user message and what the bot did until it listened again."""

    text: str
    message_id: Optional[str]  # metadata.client_message_id
    actions: List[str]
    bot: List[Dict[str, Any]]  # the bot events
    complete: bool  # ended with action_listen
    # (action, bot event) for each bot event: Rasa logs an action, then its events
    said_by: List[Tuple[str, Dict[str, Any]]] = field(default_factory=list)

    def sources(self, action: str = "action_llm_reply") -> List[Optional[str]]:
        """metadata.source of each message the action sent."""
        return [(bot.get("metadata") or {}).get("source") for name, bot in self.said_by if name == action]


def stored_turns(events: Sequence[Dict[str, Any]]) -> List[StoredTurn]:
    turns: List[StoredTurn] = []
    for event in events:
        if event["event"] == "user":
            metadata = event.get("metadata") or {}
            turns.append(StoredTurn(event.get("text") or "", metadata.get("client_message_id"), [], [], False))
        elif turns and event["event"] == "action":
            if turns[-1].complete:
                turns[-1].actions.append(f"after listen: {event.get('name')}")
            elif event.get("name") == "action_listen":
                turns[-1].complete = True
            else:
                turns[-1].actions.append(event.get("name"))
        elif turns and event["event"] == "bot":
            turns[-1].bot.append(event)
            turns[-1].said_by.append((turns[-1].actions[-1] if turns[-1].actions else "", event))
    return turns


def answered_by(turns: Sequence[Turn], stored: Dict[str, List[Dict[str, Any]]]) -> Dict[str, str]:
    """How the bot answered each turn (by message id), from the tracker store:
    "template" (a response or form, no LLM), the metadata.source of action_llm_reply's
    message ("knowledge", "llm", "no_knowledge", "fallback"), or "not stored"."""
    by_id = {}
    for events in stored.values():
        for turn in stored_turns(events):
            by_id[turn.message_id] = turn
    answers = {}
    for turn in turns:
        found = by_id.get(turn.message_id)
        if found is None:
            answers[turn.message_id] = "not stored"
        elif "action_llm_reply" in found.actions:
            answers[turn.message_id] = ",".join(sorted({str(s) for s in found.sources()})) or "no message"
        else:
            answers[turn.message_id] = "template"
    return answers


def routes(turns: Sequence[Turn], stored: Dict[str, List[Dict[str, Any]]]) -> Dict[str, Dict[str, int]]:
    """Per sent kind: how many turns were answered which way (see answered_by; the
    action_llm_reply ones as "llm: <source>")."""
    answers = answered_by(turns, stored)
    table: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for turn in turns:
        answer = answers[turn.message_id]
        table[turn.kind][answer if answer in ("template", "not stored") else f"llm: {answer}"] += 1
    return {kind: dict(counts) for kind, counts in table.items()}


def figures(turns: Sequence[Turn]) -> Dict[str, Any]:
    """Count, p50/p95/p99 latency (ms), errors and retried turns of some turns."""
    return _figures(turns)


# --- What the customers say ---------------------------------------------------------------

def message_pools(seed: int = 8) -> Tuple[List[str], List[str]]:
    """(banking questions, out-of-scope questions) from the validation split that
    `make data` writes (Banking77's held-out 10 %, CLINC150's oos_val): messages the
    model was not trained on. Shuffled with a fixed seed."""
    import random

    from ops import settings
    from ops.evaluate import load_examples

    if not settings.VALIDATION_FILE.exists():
        raise FileNotFoundError(f"{settings.VALIDATION_FILE} is missing: run `make data`")
    examples = load_examples(settings.VALIDATION_FILE)
    banking = sorted({text for text, intent in examples if intent != "out_of_scope"})
    out_of_scope = sorted({text for text, intent in examples if intent == "out_of_scope"})
    rng = random.Random(seed)
    rng.shuffle(banking)
    rng.shuffle(out_of_scope)
    return banking, out_of_scope


def mixed_scripts(prefix: str, customers: int, turns: int, llm_every: int = 5) -> Dict[str, Script]:
    """`customers` conversations of `turns` turns: every `llm_every`-th turn an
    out-of-scope question (kind "llm": the bot sends those to action_llm_reply), the
    others banking questions (kind "intent": answered from a template), staggered so
    the LLM turns of different customers do not all come at once. No message repeats
    within a conversation (a stored message can be matched to what was sent)."""
    banking, out_of_scope = message_pools()
    scripts: Dict[str, Script] = {}
    b = o = 0
    for customer in range(customers):
        script: Script = []
        for turn in range(turns):
            if llm_every and (turn + customer) % llm_every == llm_every - 1:
                script.append(("llm", out_of_scope[o % len(out_of_scope)]))
                o += 1
            else:
                script.append(("intent", banking[b % len(banking)]))
                b += 1
        scripts[f"{prefix}-{customer}"] = script
    return scripts
