"""Fact benchmark: does the customer read the fact they asked for, end to end?

Starts its own stack (generator, action server, Rasa with the latest model; a fresh
tracker store) on free loopback ports and sends every question of a set through the
REST channel, as a customer would: NLU, fixed replies, forms and the answer action all
take part. Each question is a new conversation; a follow-up's two turns share one.

A set (bench/answers/<name>.yml) lists
  - `answerable`: question, page, `fact` (a regex the reply must contain);
  - `unanswerable`: questions no page answers;
  - `followups`: two turns, page and fact, scored on the reply to the last turn.

Per set it reports answerable correct / refused / wrong, unanswerable honest / invented,
follow-ups correct / refused / wrong, replies with an unsupported figure (an amount,
percentage, number or app path that appears neither in the knowledge pages nor in the
bank database), and latency p50/p95 by the path that answered (metadata.source of the
answer action, or the fixed response / form). `development.yml` is for tuning;
`heldout.yml` was written before any tuning and is run once: for it only figures are
printed, never questions.

    .venvs/rasa/bin/python -m bench.answers [--set development heldout] [--limit N] [--details]

Writes bench/results/answers-<set>.md (figures) and build/answers/<set>.json (every turn).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import yaml

from assistant import conversations
from assistant.conversations import ReplySource
from ops import settings, stack
from ops.train import latest_model

SETS_DIR = settings.ROOT / "bench" / "answers"
RESULTS_DIR = settings.ROOT / "bench" / "results"
DETAILS_DIR = settings.ROOT / "build" / "answers"
KNOWLEDGE_DIR = settings.ROOT / "knowledge"

# Replies that decline to answer (the answer action's honest replies, its clarifying
# question, the polite fallback, a handoff) rather than state a fact.
REFUSAL_SOURCES = {ReplySource.NO_KNOWLEDGE.value, ReplySource.FALLBACK.value, ReplySource.CLARIFY.value}
REFUSAL_TEXT = re.compile(
    r"don't have information|couldn't find an answer|can't answer that|rather not guess|"
    r"connecting you to one of our support team|I'm not sure", re.I)

# What counts as a figure in a reply: amounts, percentages, numbers, app paths.
_FIGURE = re.compile(r"[£€$]\s?\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?\s?%|\b\d[\d,]*(?:\.\d+)?\b")
_APP_PATH = re.compile(r"\b[A-Z][\w']*(?: [\w']+){0,3} > [A-Z][\w']*(?: [\w']+){0,3}(?: > [A-Z][\w']*(?: [\w']+){0,3})*")


def _norm(figure: str) -> str:
    return re.sub(r"[\s,]", "", figure).rstrip(".")


def known_figures() -> Tuple[Set[str], str]:
    """The numbers of the knowledge pages and the bank database, and the pages' text (for app paths)."""
    text = []
    for path in sorted(KNOWLEDGE_DIR.glob("*.md")):
        if path.name.lower() != "readme.md":
            body = path.read_text(encoding="utf-8").split("\n---\n", 1)[-1]
            text.append(body)
    from assistant import bank  # the demo bank's seed rows: amounts, dates, card digits

    rows = bank.demo_rows(dt.date.today()) if hasattr(bank, "demo_rows") else {}
    text.append(json.dumps(rows, default=str))
    corpus = "\n".join(text)
    numbers = {_norm(m.group(0)) for m in re.finditer(r"\d[\d,]*(?:\.\d+)?", corpus)}
    # the bank database keeps amounts in minor units (15000 is £150.00)
    numbers |= {f"{int(n) / 100:.2f}" for n in list(numbers) if n.isdigit()}
    numbers |= {str(int(n) // 100) for n in list(numbers) if n.isdigit() and int(n) % 100 == 0}
    return numbers, " ".join(corpus.split())


def unsupported(reply: str, numbers: Set[str], corpus: str) -> List[str]:
    """The figures of a reply that neither the pages nor the bank database state."""
    bad = []
    for match in _FIGURE.finditer(reply):
        digits = re.sub(r"[^\d.]", "", match.group(0)).rstrip(".")
        if digits and _norm(digits) not in numbers:
            bad.append(match.group(0))
    for match in _APP_PATH.finditer(reply):
        path = " ".join(match.group(0).split())
        parts = [p.strip() for p in path.split(">")]
        # every step must appear as a step of a path in the pages ("Card > Freeze" ...)
        if not all(re.search(re.escape(p), corpus) for p in parts):
            bad.append(path)
    return bad


def _bot_events(db_path: Path, sender: str) -> List[Dict[str, Any]]:
    return conversations.read_conversations(f"sqlite:///{db_path}", [sender], "bot")[sender]


def path_of(events: Iterable[Dict[str, Any]]) -> str:
    """How a turn was answered: the answer action's source, a fixed response, or a form."""
    kinds = []
    for event in events:
        meta = event.get("metadata") or {}
        if meta.get("source"):
            kinds.append(str(meta["source"]))
        elif meta.get("utter_action"):
            kinds.append("template")
        else:
            kinds.append("form/action")
    return kinds[-1] if kinds else "none"


def say(url: str, db_path: Path, sender: str, text: str) -> Dict[str, Any]:
    seen = len(_bot_events(db_path, sender))
    started = time.perf_counter()
    status, reply = stack.post(f"{url}/webhooks/rest/webhook",
                               json.dumps({"sender": sender, "message": text}).encode(), timeout=120)
    seconds = time.perf_counter() - started
    texts = [m.get("text") or "" for m in reply] if isinstance(reply, list) else []
    events = _bot_events(db_path, sender)[seen:]
    return {"text": "\n".join(t for t in texts if t), "status": status, "seconds": seconds,
            "path": path_of(events), "sources": [s for e in events for s in (e.get("metadata") or {}).get("sources") or []]}


def refused(turn: Dict[str, Any]) -> bool:
    return turn["path"] in REFUSAL_SOURCES or bool(REFUSAL_TEXT.search(turn["text"])) or not turn["text"]


def score(kind: str, item: Dict[str, Any], turn: Dict[str, Any]) -> str:
    if kind == "unanswerable":
        return "honest" if refused(turn) else "invented"
    if re.search(item["fact"], turn["text"], re.I):
        return "correct"
    return "refused" if refused(turn) else "wrong"


AFTER_UNRELATED = "+after-unrelated"


def load_set(name: str) -> Dict[str, Any]:
    """bench/answers/<name>.yml; `<name>+after-unrelated`: its answerable questions, each
    sent as the second message after an unrelated one (another page's question) and
    scored like a follow-up: a new question must not be read as a continuation."""
    if not name.endswith(AFTER_UNRELATED):
        return yaml.safe_load((SETS_DIR / f"{name}.yml").read_text())
    answerable = yaml.safe_load((SETS_DIR / f"{name[: -len(AFTER_UNRELATED)]}.yml").read_text())["answerable"]
    followups = []
    for i, item in enumerate(answerable):
        before = next(other for step in (7, 13, 1) for other in [answerable[(i + step) % len(answerable)]]
                      if other["page"] != item["page"] or step == 1)
        followups.append({"turns": [before["question"], item["question"]], "page": item["page"], "fact": item["fact"]})
    return {"answerable": [], "unanswerable": [], "followups": followups}


def run_set(name: str, url: str, db_path: Path, limit: Optional[int], numbers: Set[str], corpus: str
            ) -> List[Dict[str, Any]]:
    data = load_set(name)
    rows = []
    for kind in ("answerable", "unanswerable", "followups"):
        items = (data.get(kind) or [])[:limit] if limit else data.get(kind) or []
        for item in items:
            sender = f"bench-{name}-{uuid.uuid4().hex[:8]}"
            turns = item["turns"] if kind == "followups" else [item["question"]]
            said = [say(url, db_path, sender, text) for text in turns]
            last = said[-1]
            rows.append({
                "set": name, "kind": kind, "turns": turns, "page": item.get("page"), "fact": item.get("fact"),
                "replies": [t["text"] for t in said], "paths": [t["path"] for t in said],
                "sources": last["sources"], "seconds": [t["seconds"] for t in said],
                "outcome": score(kind, item, last),
                "unsupported": [f for t in said for f in unsupported(t["text"], numbers, corpus)],
            })
    return rows


def percentile(values: List[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for kind in ("answerable", "unanswerable", "followups"):
        these = [r for r in rows if r["kind"] == kind]
        out[kind] = (len(these), Counter(r["outcome"] for r in these))
        by_path = Counter((r["paths"][-1], r["outcome"]) for r in these)
        out[f"{kind}_paths"] = by_path
    replies = [(r, i) for r in rows for i in range(len(r["replies"]))]
    out["replies"] = len(replies)
    out["unsupported"] = sum(1 for r in rows if r["unsupported"])
    latency: Dict[str, List[float]] = defaultdict(list)
    for r in rows:
        for path, seconds in zip(r["paths"], r["seconds"]):
            latency[path].append(seconds)
    out["latency"] = {p: (len(v), percentile(v, 50), percentile(v, 95)) for p, v in sorted(latency.items())}
    return out


def markdown(name: str, s: Dict[str, Any], model: str, seconds: float, candidates: Optional[int] = None,
             limit: Optional[int] = None) -> str:
    def share(kind: str, outcome: str) -> str:
        n, counts = s[kind]
        return f"{counts.get(outcome, 0)} ({counts.get(outcome, 0) / max(1, n):.1%})"

    lines = [
        f"# Fact benchmark: `{name}`",
        "",
        f"`python -m bench.answers --set {name}"
        + (f" --candidates {candidates}" if candidates is not None else "")
        + (f" --limit {limit}" if limit else "")
        + f"` on {dt.date.today().isoformat()}, model `{model}`, "
        f"{seconds:.0f} s" + (f", the first {limit} questions of each kind" if limit else "")
        + ". Every question went through the REST channel of the real stack "
        "(generator, action server, Rasa); a reply is correct when it contains the fact's pattern.",
        "",
        "| questions | n | correct / honest | refused | wrong / invented |",
        "|---|---:|---:|---:|---:|",
        f"| answerable | {s['answerable'][0]} | {share('answerable', 'correct')} | {share('answerable', 'refused')} "
        f"| {share('answerable', 'wrong')} |",
        f"| unanswerable | {s['unanswerable'][0]} | {share('unanswerable', 'honest')} | - "
        f"| {share('unanswerable', 'invented')} |",
        f"| two-turn follow-ups (second reply) | {s['followups'][0]} | {share('followups', 'correct')} "
        f"| {share('followups', 'refused')} | {share('followups', 'wrong')} |",
        "",
        f"Questions with a reply stating an unsupported figure (in neither the pages nor the bank "
        f"database): {s['unsupported']} of {sum(s[k][0] for k in ('answerable', 'unanswerable', 'followups'))}.",
        "",
        "Outcome by the path that gave the (last) reply:",
        "",
        "| questions | path | outcome | n |",
        "|---|---|---|---:|",
    ]
    for kind in ("answerable", "unanswerable", "followups"):
        for (path, outcome), n in sorted(s[f"{kind}_paths"].items()):
            lines.append(f"| {kind} | {path} | {outcome} | {n} |")
    lines += ["", "Latency of every turn, by path (seconds, REST round trip):", "",
              "| path | turns | p50 | p95 |", "|---|---:|---:|---:|"]
    for path, (n, p50, p95) in s["latency"].items():
        lines.append(f"| {path} | {n} | {p50:.2f} | {p95:.2f} |")
    return "\n".join(lines) + "\n"


# -- offline: the answer action's pipeline in this process, for quick sweeps ---------

ANSWERED_BY_ACTION_EXCEPT = {"greet", "goodbye", "thank", "affirm", "deny", "bot_challenge", "request_human",
                             "handoff_released"}


def form_intents() -> Set[str]:
    """The intents whose rule starts a form after the answer action (data/rules/forms.yml)."""
    rules = yaml.safe_load((settings.ROOT / "data" / "rules" / "forms.yml").read_text())["rules"]
    found = set()
    for rule in rules:
        steps = rule.get("steps") or []
        for step, after in zip(steps, steps[1:]):
            if "intent" in step and after.get("action") == "action_llm_reply" and any(
                    str(s.get("active_loop") or "").endswith("_form") for s in steps):
                found.add(step["intent"])
    return found


def offline_embeddings() -> None:
    """Query embeddings from the NLU's ONNX encoder in this process (the same vectors the
    generator gives), for the offline runs."""
    import numpy as np

    from assistant import generator_client as generator
    from assistant.encoder import DEFAULT_MODEL_DIR, SentenceEncoder

    encoder = SentenceEncoder(DEFAULT_MODEL_DIR, threads=1, quantized=False)

    async def embed(texts: List[str], **_: Any) -> generator.Embeddings:
        return generator.Embeddings(np.asarray(encoder.encode(list(texts), 32)), 0)

    generator.embed = embed  # type: ignore[assignment]


def offline(name: str, limit: Optional[int], details: bool) -> Dict[str, Any]:
    """The set through the Rasa model's NLU (in process) and assistant.reply.answer with
    the NLU's ONNX encoder for the query embeddings (the same vectors the generator gives):
    no servers, a few seconds a run. Turns the rules give to a template or a form are
    scored on what they would say: nothing (counted as `routed`)."""
    import asyncio

    from assistant import reply
    from assistant.answers import asks_something
    from ops.evaluate import parse_all

    offline_embeddings()
    FORM_INTENTS = form_intents()
    data = load_set(name)
    items = []
    for kind in ("answerable", "unanswerable", "followups"):
        for item in (data.get(kind) or [])[:limit] if limit else data.get(kind) or []:
            items.append((kind, item, item["turns"] if kind == "followups" else [item["question"]]))
    texts = sorted({t for _, _, turns in items for t in turns})
    model = latest_model()
    parsed = dict(zip(texts, asyncio.run(parse_all(model, texts))))
    outcomes: Dict[str, Counter] = defaultdict(Counter)
    clarified: Dict[str, Counter] = defaultdict(Counter)  # clarifying questions, and the answer after one

    async def run() -> None:
        for kind, item, turns in items:
            events: List[Dict[str, Any]] = []
            turn: Dict[str, Any] = {}
            for text in turns:
                events.append({"event": "user", "text": text, "parse_data": parsed[text]})
                intent = parsed[text]["intent"]["name"]
                if intent in ANSWERED_BY_ACTION_EXCEPT:
                    turn = {"text": "", "path": "routed:" + intent}
                    continue
                if intent in FORM_INTENTS and not asks_something(text):
                    turn = {"text": "", "path": "routed:" + intent}
                    continue
                result = await reply.answer(events, candidates=0)
                if intent in FORM_INTENTS and result.source == "no_knowledge":
                    turn = {"text": "", "path": "routed:" + intent}
                    continue
                turn = {"text": result.text, "path": result.source, "extract": result.extract}
                events.append({"event": "bot", "text": result.text, "metadata": {"sources": result.sources}})
                if result.source == "clarify":
                    # the customer picks the page the set names, when it is offered
                    chosen = item.get("page") if item.get("page") in [p for p, _ in result.choices] else None
                    clarified[kind]["asked"] += 1
                    if chosen:
                        clarified[kind]["right page offered"] += 1
                        events.append({"event": "user", "text": f'/choose_topic{{"topic_page": "{chosen}"}}'})
                        after = await reply.answer(events, candidates=0, page=chosen)
                        events.append({"event": "bot", "text": after.text, "metadata": {"sources": after.sources}})
                        clarified[kind]["then " + score(kind, item, {"text": after.text, "path": after.source})] += 1
            outcome = "routed" if turn["path"].startswith("routed") else score(kind, item, turn)
            outcomes[kind][outcome] += 1
            if details and name != "heldout" and outcome not in ("correct", "honest"):
                ex = turn.get("extract")
                gate = (f"{ex.why or 'answered'} cov {ex.coverage:.2f} ret {ex.retrieval:.2f} "
                        f"sim {ex.best.similarity if ex.best else 0:.2f} page {ex.page_id}") if ex else ""
                print(f"--- {kind} {outcome} want {item.get('page')} /{item.get('fact')}/ {turn['path']} {gate}")
                for t in turns:
                    print(f"  Q: {t}  [{parsed[t]['intent']['name']} {parsed[t]['intent']['confidence']:.2f}]")
                print(f"  A: {turn['text'][:300]}")

    asyncio.run(run())
    for kind, counts in outcomes.items():
        n = sum(counts.values())
        print(f"{name} {kind:12s} n={n:3d} " + "  ".join(f"{k} {v} ({v / n:.0%})" for k, v in sorted(counts.items())))
    for kind, counts in clarified.items():
        print(f"{name} {kind:12s} clarifying questions: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return outcomes


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.answers", description=__doc__.splitlines()[0])
    parser.add_argument("--set", nargs="+", default=["development"], help="question sets under bench/answers/ "
                        "(NAME+after-unrelated: its answerable questions, each after an unrelated one)")
    parser.add_argument("--limit", type=int, help="at most this many questions of each kind")
    parser.add_argument("--details", action="store_true", help="print each miss (never for heldout)")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    parser.add_argument("--candidates", type=int, help="LLM_CANDIDATES of the action server (generated "
                        "candidates that compete with the extractive answer; default: its setting)")
    parser.add_argument("--offline", action="store_true",
                        help="the answer pipeline in this process, no servers (for tuning; not the result)")
    args = parser.parse_args(argv)
    if args.offline:
        for name in args.set:
            offline(name, args.limit, args.details)
        return 0
    model = latest_model()
    if model is None:
        raise SystemExit("no trained model in models/: run `make train`")
    numbers, corpus = known_figures()
    from assistant import bank

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gen_port, act_port, rasa_port = stack.free_port(), stack.free_port(), stack.free_port()
        db_path, bank_url = work / "tracker.db", f"sqlite:///{work / 'bank.db'}"
        bank.seed(bank_url)
        services = [
            stack.generator_service(gen_port, work),
            stack.actions_service(act_port, work, env={
                "GENERATOR_URL": f"http://127.0.0.1:{gen_port}/v1", "BANK_DB_URL": bank_url,
                **({"LLM_CANDIDATES": str(args.candidates)} if args.candidates is not None else {})}),
            stack.rasa_service(rasa_port, work, model, stack.endpoints_for(act_port, work),
                               env={"TRACKER_STORE_URL": f"sqlite:///{db_path}"}),
        ]
        with stack.running(services):
            url = f"http://127.0.0.1:{rasa_port}"
            for name in args.set:
                started = time.perf_counter()
                rows = run_set(name, url, db_path, args.limit, numbers, corpus)
                seconds = time.perf_counter() - started
                s = summary(rows)
                report = markdown(name, s, model.name, seconds, args.candidates, args.limit)
                print(report)
                DETAILS_DIR.mkdir(parents=True, exist_ok=True)
                (DETAILS_DIR / f"{name}.json").write_text(json.dumps(rows, indent=1))
                if not args.no_write:
                    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
                    suffix = (f"-candidates-{args.candidates}" if args.candidates else "") + (
                        f"-first-{args.limit}" if args.limit else "")
                    (RESULTS_DIR / f"answers-{name}{suffix}.md").write_text(report)
                if args.details and name != "heldout":
                    for r in rows:
                        if r["outcome"] not in ("correct", "honest") or r["unsupported"]:
                            print(f"--- {r['kind']} {r['outcome']} want {r['page']} /{r['fact']}/ "
                                  f"paths {r['paths']} cites {r['sources']} unsupported {r['unsupported']}")
                            for turn, reply in zip(r["turns"], r["replies"]):
                                print(f"  Q: {turn}\n  A: {reply[:400]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
