"""Grounding benchmark: does action_llm_reply cite the page that answers the question?

Runs the action's answer pipeline (actions.llm_reply.answer: retrieval, one batched
generation of N candidates, selection, citation) against the real generator, one
question at a time, for every question of six sets. The settings were chosen on the
first five: bench/grounding/questions.yml (development) and development-2.yml to
development-5.yml (each but the first was held out until its figures were read, on
2026-12-02 and 2026-12-03, and has been used for tuning since).
bench/grounding/heldout-5.yml (held out) was written from the knowledge pages' text
alone, without seeing the others, the pages' example questions or any result, and
never chooses a setting:

  - answerable questions: the fraction whose reply is an LLM answer citing the
    expected page (a refusal counts as a miss), with 1 candidate (greedy) and with N
    (sampled, one request with n=N); latency p50/p95 of the whole turn;
  - unanswerable questions: the fraction that get the honest no-knowledge reply
    (and the fraction that get either honest reply: no_knowledge or no_safe_answer).

Each question first goes through the trained Rasa model (the latest models/*.tar.gz,
loaded in-process with rasa.core.agent.Agent), and its parse data (intent_ranking) is
put in the user event, as the tracker of the running bot has it: retrieval uses the
ranking as the intent prior (KNOWLEDGE_INTENT_WEIGHT, actions/knowledge.py).

It starts its own generator on a free port (as the tests do, ops.stack), unless
--url names a running OpenAI-compatible server. Writes bench/results/grounding.md.

    .venvs/rasa/bin/python -m bench.grounding [--candidates 1 3] [--generate SET ...] [--limit N] [--url URL]
        [--retrieval-only]
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np
import yaml

from actions import settings as action_settings
from actions.clients import generator
from actions.knowledge import unit
from actions.llm_reply import answer, load_index
from ops import settings, stack
from ops.evaluate import fallback_threshold, parse_all, top_intent
from ops.train import latest_model

QUESTION_SETS = {
    "development": settings.ROOT / "bench" / "grounding" / "questions.yml",
    "development 2": settings.ROOT / "bench" / "grounding" / "development-2.yml",
    "development 3": settings.ROOT / "bench" / "grounding" / "development-3.yml",
    "development 4": settings.ROOT / "bench" / "grounding" / "development-4.yml",
    "development 5": settings.ROOT / "bench" / "grounding" / "development-5.yml",
    "held-out": settings.ROOT / "bench" / "grounding" / "heldout-5.yml",
}
TUNING_SETS = ("development", "development 2", "development 3", "development 4", "development 5")
RESULTS = settings.ROOT / "bench" / "results" / "grounding.md"
# Intent prior weights compared on the development questions (retrieval only).
INTENT_WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 1.0)

def percentile(values: List[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def user_event(item: Dict[str, Any]) -> Dict[str, Any]:
    return {"event": "user", "text": item["question"], "parse_data": item.get("parse_data") or {}}


async def ask(item: Dict[str, Any], n: int, url: str) -> Dict[str, Any]:
    started = time.perf_counter()
    result = await answer([user_event(item)], candidates=n, base_url=url, timeout_s=120)
    return {
        "source": result.source,
        "cited": result.sources[0] if result.sources else None,
        "retrieved": result.hits[0].passage.page_id if result.hits else None,
        "score": result.hits[0].score if result.hits else 0.0,
        "rejected": result.rejected,
        "dropped": result.dropped,
        "rounds": result.rounds,
        "seconds": time.perf_counter() - started,
        "text": result.text,
    }


async def retrieval(answerable: List[dict], unanswerable: List[dict], url: str, sweep_weights: bool = False
                    ) -> Dict[str, Any]:
    """Retrieval alone: which page comes first, and how the no-knowledge threshold splits the questions."""
    index = load_index()
    items = answerable + unanswerable
    texts = [q["question"] for q in items]
    rankings = [(q.get("parse_data") or {}).get("intent_ranking") for q in items]
    vectors = (await generator.embed(texts, base_url=url, timeout_s=120)).vectors
    first = [index.search(v, 1, text=t, intent_ranking=r)[0] for v, t, r in zip(vectors, texts, rankings)]
    fused = [index.search(v, 1, text=t, intent_weight=0.0)[0].passage.page_id for v, t in zip(vectors, texts)]
    dense = [index.search(v, 1, intent_weight=0.0)[0].passage.page_id for v in vectors]
    passages_only = [index.passages[int(np.argmax(index.vectors @ unit(v)))].page_id for v in vectors]
    n = len(answerable)
    right = np.array([hit.passage.page_id == q["page"] for hit, q in zip(first, answerable)])
    page_of = {intent: page for page, intents in index.page_intents.items() for intent in intents}
    tops = [top_intent(q.get("parse_data") or {}) for q in answerable]
    nlu_page = np.array([page_of.get(t["name"]) == q["page"] for t, q in zip(tops, answerable)])
    threshold = fallback_threshold() or 0.0
    # these reach action_llm_reply in the running bot
    low = np.array([t["confidence"] < threshold or t["name"] == "out_of_scope" for t in tops])
    # unanswerable questions the NLU puts on a page's intents with confidence >= 0.5
    confident_u = sum(float(index.intent_scores(r).max(initial=0.0)) >= 0.5 for r in rankings[n:])
    fused_right = np.array([p == q["page"] for p, q in zip(fused, answerable)])
    weights = []
    if sweep_weights:
        for w in INTENT_WEIGHTS:
            hits = [index.search(v, 1, text=t, intent_ranking=r, intent_weight=w)[0]
                    for v, t, r in zip(vectors, texts, rankings)]
            ok = np.array([h.passage.page_id == q["page"] for h, q in zip(hits, answerable)])
            kept_a = np.array([h.score >= action_settings.KNOWLEDGE_MIN_SCORE for h in hits[:n]])
            refused_u = [h.score < action_settings.KNOWLEDGE_MIN_SCORE for h in hits[n:]]
            weights.append((w, float(np.mean(ok)), float(np.mean(ok[low])) if low.any() else float("nan"),
                            float(np.mean(ok & kept_a)), float(np.mean(refused_u)) if refused_u else float("nan")))
    best_a = np.array([hit.score for hit in first[:n]])
    best_u = np.array([hit.score for hit in first[n:]])
    sweep = []
    for t in np.round(np.arange(0.40, 0.621, 0.02), 2):
        sweep.append((t, float(np.mean(best_a >= t)), float(np.mean((best_a >= t) & right)),
                      float(np.mean(best_u < t)) if len(best_u) else float("nan")))
    return {
        "passages_only": float(np.mean([p == q["page"] for p, q in zip(passages_only, answerable)])),
        "dense": float(np.mean([p == q["page"] for p, q in zip(dense, answerable)])),
        "fused": float(np.mean(fused_right)),
        "intent": float(np.mean(right)),
        "nlu_alone": float(np.mean(nlu_page)),
        "low": int(low.sum()),
        "confident_unanswerable": (int(confident_u), len(unanswerable)),
        "low_fused": float(np.mean(fused_right[low])) if low.any() else float("nan"),
        "low_intent": float(np.mean(right[low])) if low.any() else float("nan"),
        "sweep": sweep,
        "weights": weights,
    }


async def run_config(n: int, answerable: List[dict], unanswerable: List[dict], url: str) -> Dict[str, Any]:
    rows, refusals = [], []
    for i, item in enumerate(answerable, 1):
        row = await ask(item, n, url)
        row["expected"] = item["page"]
        rows.append(row)
        mark = "ok " if row["cited"] == item["page"] else "MISS"
        print(f"  n={n} {i:3d}/{len(answerable)} {mark} {row['source']:14s} {row['cited'] or '-':34s} "
              f"want {item['page']:34s} {row['seconds']:.1f}s", flush=True)
    for item in unanswerable:
        row = await ask(item, n, url)
        refusals.append(row)
        print(f"  n={n} unanswerable: {row['source']:14s} {item['question']}", flush=True)
    seconds = [r["seconds"] for r in rows + refusals]
    rejected = collections.Counter(reason for r in rows + refusals for reason in r["rejected"])
    return {
        "n": n,
        "rows": rows,
        "refusals": refusals,
        "cited_right": sum(r["cited"] == r["expected"] for r in rows) / len(rows),
        # what the first round alone gave (LLM_RETRY_ROUNDS=0): the second round's answers were refusals
        "cited_right_first": sum(r["cited"] == r["expected"] and r["rounds"] <= 1 for r in rows) / len(rows),
        "second_round": sum(r["rounds"] > 1 for r in rows + refusals),
        "second_round_answers": sum(r["rounds"] > 1 and r["source"] == "llm" for r in rows + refusals),
        "unanswerable_second_round": sum(r["rounds"] > 1 and r["source"] == "llm" for r in refusals),
        "retrieved_right": sum(r["retrieved"] == r["expected"] for r in rows) / len(rows),
        "answered": sum(r["source"] == "llm" for r in rows) / len(rows),
        "no_knowledge": sum(r["source"] == "no_knowledge" for r in refusals) / max(1, len(refusals)),
        "honest": sum(r["source"] in ("no_knowledge", "no_safe_answer") for r in refusals) / max(1, len(refusals)),
        "p50": percentile(seconds, 50),
        "p95": percentile(seconds, 95),
        "rejected": rejected,
        "dropped": collections.Counter(reason for r in rows + refusals for reason in r["dropped"]),
    }


def retrieval_lines(found: Dict[str, Dict[str, Any]], model_name: str) -> List[str]:
    s = action_settings
    lines = [
        "Which page comes first for the answerable questions (the page the reply cites), by the parts of "
        "the score (`actions/knowledge.py`); each column adds one part to the ones before it. The intent prior "
        f"is KNOWLEDGE_INTENT_WEIGHT={s.KNOWLEDGE_INTENT_WEIGHT} times the NLU's summed confidence in the intents "
        f"the page lists (the intent ranking of `{model_name}`, Rasa's top 10). *NLU alone*: the page that "
        "lists the classifier's top intent, for comparison.",
        "",
        "| questions | section similarity alone | + its best sentence and the page's example questions "
        "| + lexical (BM25) | + intent prior | NLU alone |",
        "|---|---|---|---|---|---|",
        *[f"| {name} | {f['passages_only']:.1%} | {f['dense']:.1%} | {f['fused']:.1%} | {f['intent']:.1%} "
          f"| {f['nlu_alone']:.1%} |" for name, f in found.items()],
        "",
        "In the running bot only turns whose top intent confidence is below the FallbackClassifier threshold "
        f"({fallback_threshold()}) or whose intent is out_of_scope reach `action_llm_reply`; the others get the "
        "intent's own answer. Retrieval top-1 on those low-confidence answerable questions: "
        + "; ".join(f"{name}: {f['low']} questions, {f['low_fused']:.1%} without the intent prior, "
                    f"{f['low_intent']:.1%} with it" for name, f in found.items()) + ".",
        "",
        "The intent prior only reorders passages; the no-knowledge threshold (KNOWLEDGE_MIN_SCORE) applies "
        "to the relevance score of the passage ranked first, without the prior. The NLU is no judge of whether "
        "the pages answer a question: it gives a page's intents a summed confidence of 0.5 or more for "
        + "; ".join(f"{c[0]} of the {c[1]} unanswerable {name} questions"
                    for name, f in found.items() for c in [f["confident_unanswerable"]]) + ".",
        "",
    ]
    for name, f in found.items():
        if not f["weights"]:
            continue
        lines += [
            f"KNOWLEDGE_INTENT_WEIGHT on the {name} questions (retrieval only; the weight was chosen here, "
            f"never on the held-out set; KNOWLEDGE_MIN_SCORE={s.KNOWLEDGE_MIN_SCORE}):",
            "",
            "| weight | top-1 page right | top-1 right, low-confidence questions | kept and right page "
            "| unanswerable refused |",
            "|---|---|---|---|---|",
            *[f"| {w:g}{' (default)' if abs(w - s.KNOWLEDGE_INTENT_WEIGHT) < 1e-9 else ''} | {ok:.1%} | {low:.1%} "
              f"| {kept:.1%} | {refused:.0%} |" for w, ok, low, kept, refused in f["weights"]],
            "",
        ]
    for name, f in found.items():
        lines += [
            f"KNOWLEDGE_MIN_SCORE against the best passage's score (the passage ranked first, intent prior "
            f"included in the ranking, not in the score), {name} questions:",
            "",
            "| threshold | answerable kept | kept and right page | unanswerable refused |",
            "|---|---|---|---|",
            *[f"| {t:.2f}{' (default)' if abs(t - s.KNOWLEDGE_MIN_SCORE) < 1e-9 else ''} | {kept:.1%} | {ok:.1%} | "
              f"{refused:.0%} |" for t, kept, ok, refused in f["sweep"]],
            "",
        ]
    return lines


def report(runs: Dict[str, List[Dict[str, Any]]], counts: Dict[str, tuple], started: float,
           found: Dict[str, Dict[str, Any]], model_name: str) -> str:
    s = action_settings
    sizes = "; ".join(f"{name}: {a} answerable and {u} unanswerable "
                      f"(`{QUESTION_SETS[name].relative_to(settings.ROOT)}`)"
                      for name, (a, u) in counts.items())
    lines = [
        "# Grounding benchmark",
        "",
        f"`.venvs/rasa/bin/python -m bench.grounding` on {time.strftime('%Y-%m-%d')}. Questions: {sizes}. "
        "The settings were chosen on the development sets; the held-out set was written from the "
        "knowledge pages' text alone, without seeing the others, the pages' example questions or any "
        "result, and never used to choose one. "
        "Each question is asked on its own (a new conversation) through "
        "`actions.llm_reply.answer` against the local generator (SmolLM2-135M-Instruct, "
        "all-MiniLM-L6-v2, CPU, one torch thread), with the NLU parse of the question by the trained Rasa model "
        f"`{model_name}` in the user event (its intent ranking is the retrieval's intent prior). "
        f"Settings: KNOWLEDGE_TOP_K={s.KNOWLEDGE_TOP_K}, KNOWLEDGE_MIN_SCORE={s.KNOWLEDGE_MIN_SCORE}, "
        f"KNOWLEDGE_LEXICAL_WEIGHT={s.KNOWLEDGE_LEXICAL_WEIGHT}, "
        f"KNOWLEDGE_INTENT_WEIGHT={s.KNOWLEDGE_INTENT_WEIGHT}, "
        f"LLM_MIN_SUPPORT={s.LLM_MIN_SUPPORT}, LLM_MAX_TOKENS={s.LLM_MAX_TOKENS}, "
        f"LLM_CANDIDATE_TEMPERATURE={s.LLM_CANDIDATE_TEMPERATURE} (n > 1; n = 1 is greedy), "
        f"LLM_FREQUENCY_PENALTY={s.LLM_FREQUENCY_PENALTY}. "
        f"Run time {(time.monotonic() - started) / 60:.0f} min.",
        "",
        "| questions | candidates | cites the right page | first round only | answered (not refused) "
        "| retrieval top-1 page right | unanswerable: no_knowledge | unanswerable: honest reply | turn p50 "
        "| turn p95 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, configs in runs.items():
        for c in configs:
            lines.append(
                f"| {name} | {c['n']} | {c['cited_right']:.1%} | {c['cited_right_first']:.1%} | {c['answered']:.1%} "
                f"| {c['retrieved_right']:.1%} "
                f"| {c['no_knowledge']:.0%} | {c['honest']:.0%} | {c['p50']:.2f} s | {c['p95']:.2f} s |"
            )
    lines += [
        "",
        "- *cites the right page*: the reply is an LLM answer whose `Source:` (metadata.sources) is the "
        "page the question names; a refusal or a wrong page is a miss.",
        "- *unanswerable: honest reply*: `no_knowledge` (retrieval below the threshold, nothing "
        "generated) or `no_safe_answer` (every candidate rejected).",
        "- *first round only*: the same, counting an answer from a second round (LLM_RETRY_ROUNDS: asked "
        "when every candidate of the first was rejected) as a miss, as it is with LLM_RETRY_ROUNDS=0. "
        "Second rounds: " + "; ".join(
            f"{name}, n={c['n']}: {c['second_round']} turns, {c['second_round_answers']} answered "
            f"({c['unanswerable_second_round']} of them unanswerable questions)"
            for name, configs in runs.items() for c in configs) + ".",
        "- Latency is the whole turn (query embedding, generation, candidate embeddings) over all questions.",
        *([f"- No replies were generated for the {' and '.join(n for n in counts if n not in runs)} questions in "
           "this run (`--generate`): they have the retrieval figures below."] if set(counts) - set(runs) else []),
        "",
        "## Retrieval and the no-knowledge threshold",
        "",
        *retrieval_lines(found, model_name),
    ]
    lines += [
        "## Candidates",
        "",
        "Rejected candidates by reason: "
        + "; ".join(f"{name}, n={c['n']}: " + (", ".join(f"{k} {v}" for k, v in c["rejected"].most_common()) or "none")
                    for name, configs in runs.items() for c in configs),
        "",
        "Sentences dropped from candidates before the checks (`guardrails.repair`), by reason: "
        + "; ".join(f"{name}, n={c['n']}: " + (", ".join(f"{k} {v}" for k, v in c["dropped"].most_common()) or "none")
                    for name, configs in runs.items() for c in configs),
        "",
    ]
    for name, configs in runs.items():
        for c in configs:
            misses = [r for r in c["rows"] if r["cited"] != r["expected"]]
            lines.append(f"## Misses, {name} questions, {c['n']} candidate{'s' if c['n'] > 1 else ''} ({len(misses)})")
            lines.append("")
            lines.append("| expected | got | retrieval score | rejected |")
            lines.append("|---|---|---|---|")
            for r in misses:
                got = r["cited"] or r["source"]
                lines.append(f"| {r['expected']} | {got} | {r['score']:.3f} | {', '.join(r['rejected']) or '-'} |")
            answered = [r for r in c["refusals"] if r["source"] == "llm"]
            lines.append("")
            lines.append(f"Unanswerable questions that got an answer: {len(answered)}")
            for r in answered:
                lines.append(f"- {r['text'].splitlines()[0][:160]} ({r['cited']})")
            lines.append("")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, nargs="+", default=[1, action_settings.LLM_CANDIDATES])
    parser.add_argument("--sets", nargs="+", choices=list(QUESTION_SETS), default=list(QUESTION_SETS))
    parser.add_argument("--limit", type=int, help="only N questions of each kind (a quick look; nothing written)")
    parser.add_argument("--url", help="a running OpenAI-compatible base URL (…/v1) instead of starting one")
    parser.add_argument("--no-write", action="store_true", help="print, do not write bench/results")
    parser.add_argument("--generate", nargs="+", choices=list(QUESTION_SETS),
                        help="generate replies only for these sets (default: all of --sets); the others get "
                             "the retrieval figures only")
    parser.add_argument("--retrieval-only", action="store_true",
                        help="only the retrieval figures (no generation); print, nothing written")
    args = parser.parse_args(argv)

    sets = {}
    for name in args.sets:
        data = yaml.safe_load(QUESTION_SETS[name].read_text())
        answerable, unanswerable = data["questions"], data["unanswerable"]
        if args.limit:  # spread over the pages
            answerable = answerable[:: max(1, len(answerable) // args.limit)][: args.limit]
            unanswerable = unanswerable[:: max(1, len(unanswerable) // args.limit)][: args.limit]
        sets[name] = (answerable, unanswerable)
    load_index()  # fails with the build command when missing or stale
    model = latest_model()
    if model is None:
        raise SystemExit(f"no trained model in {settings.MODELS_DIR}: run `make train` first")
    items = [item for a, u in sets.values() for item in a + u]
    print(f"parsing {len(items)} questions with {model.name}", flush=True)
    for item, parse in zip(items, asyncio.run(parse_all(model, [item["question"] for item in items]))):
        item["parse_data"] = parse

    started = time.monotonic()
    services = []
    url = args.url
    if url is None:
        port = stack.free_port()
        services = [stack.generator_service(port, settings.ROOT / "build" / "bench-grounding")]
        url = f"http://127.0.0.1:{port}/v1"
    try:
        for service in services:
            service.start()
        stack.wait_healthy(services, settings.STARTUP_TIMEOUT_S)
        # The weights are compared on the development sets only: the held-out set never chooses one.
        found = {name: asyncio.run(retrieval(a, u, url, sweep_weights=name in TUNING_SETS))
                 for name, (a, u) in sets.items()}
        if args.retrieval_only:
            print("\n".join(retrieval_lines(found, model.name)))
            return 0
        runs = {name: [asyncio.run(run_config(n, a, u, url)) for n in args.candidates]
                for name, (a, u) in sets.items() if name in (args.generate or sets)}
    finally:
        stack.stop_all(services)
    text = report(runs, {name: (len(a), len(u)) for name, (a, u) in sets.items()}, started, found, model.name)
    print(text)
    if not args.no_write and not args.limit:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
