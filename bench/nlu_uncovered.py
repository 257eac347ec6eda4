"""Confident misroutes: banking questions no intent covers that the NLU still puts on an intent.

Loads a trained model (default: the newest in models/) in-process, as the Rasa server
would, and parses three sets one message at a time:

- bench/nlu/uncovered.yml: banking questions that no Banking77 intent covers, written by
  hand for issue 22. A *confident misroute* is one the model's whole pipeline (the
  classifier, then the fallback classifier with the model's own thresholds) leaves on an
  intent other than `nlu_fallback` or `out_of_scope`: the bot then acts on that intent
  (a form, the handoff, small talk, or the intent's page as the answer's prior) instead
  of treating the message as an open question.
- the validation split (build/validation/nlu.yml): in-scope accuracy and macro F1 of the
  classifier's top intent, as `ops evaluate` measures them;
- CLINC150 oos_val (in the same file, as `out_of_scope`): recall, the share that reaches
  the open-question path (`out_of_scope`, or `nlu_fallback` after the fallback classifier).

    .venvs/rasa/bin/python -m bench.nlu_uncovered [--model models/X.tar.gz] [--json out.json]

Prints the figures, the misroutes by topic and the misrouted questions; writes nothing
unless --json is given. Training on or tuning against bench/nlu/uncovered.yml would make
its figure meaningless: it is an evaluation set.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

import yaml

from ops import evaluate, settings
from ops.data import OUT_OF_SCOPE

UNCOVERED = settings.ROOT / "bench" / "nlu" / "uncovered.yml"
OPEN_QUESTION = {evaluate.FALLBACK, OUT_OF_SCOPE}
THRESHOLDS = (0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7)
# The topics that data/nlu/out_of_scope_banking.yml names in its own (different) words;
# the others measure how far that training data generalises to topics it never saw.
TOPICS_IN_TRAINING = {
    "joint_accounts", "mortgages", "loans", "overdrafts", "savings_and_interest", "isas", "cheques",
    "business_accounts", "credit_scores_and_credit_cards", "standing_orders_and_payments",
    "statements_and_letters", "switching_and_accounts",
}


def load_uncovered(path: Path = UNCOVERED) -> List[Tuple[str, str]]:
    """(question, topic) pairs."""
    topics = yaml.safe_load(path.read_text(encoding="utf-8"))["topics"]
    return [(text, topic) for topic, texts in topics.items() for text in texts]


def banking_intents() -> set:
    from rasa.shared.nlu.training_data.loading import load_data

    banking = settings.NLU_DIR / "banking77.yml"
    return {m.get("intent") for m in load_data(str(banking)).intent_examples}


def measure(model: Path) -> Dict:
    uncovered = load_uncovered()
    validation = evaluate.load_examples(settings.VALIDATION_FILE)
    texts = [text for text, _ in uncovered] + [text for text, _ in validation]
    started = time.monotonic()
    parsed = asyncio.run(evaluate.parse_all(model, texts))
    seconds = time.monotonic() - started
    parsed_uncovered, parsed_validation = parsed[: len(uncovered)], parsed[len(uncovered):]

    banking = banking_intents()
    rows = []
    for (text, topic), result in zip(uncovered, parsed_uncovered):
        final = result.get("intent") or {}
        top = evaluate.top_intent(result)
        rows.append({
            "text": text, "topic": topic,
            "intent": final.get("name"), "top_intent": top["name"],
            "top_confidence": float(top["confidence"]),
        })
    misroutes = [r for r in rows if r["intent"] not in OPEN_QUESTION]

    gold = [intent for _, intent in validation]
    predicted = [(t["name"], float(t["confidence"])) for t in map(evaluate.top_intent, parsed_validation)]
    summary = evaluate.summarise(gold, predicted)
    oos = [r for g, r in zip(gold, parsed_validation) if g == OUT_OF_SCOPE]
    in_scope = [(g, r) for g, r in zip(gold, parsed_validation) if g != OUT_OF_SCOPE]
    return {
        "model": model.name,
        "parse_s": seconds,
        "uncovered": len(rows),
        "confident_misroutes": len(misroutes),
        "misroutes_to_banking77": sum(r["intent"] in banking for r in misroutes),
        "questions_on_trained_topics": sum(r["topic"] in TOPICS_IN_TRAINING for r in rows),
        "misroutes_on_trained_topics": sum(r["topic"] in TOPICS_IN_TRAINING for r in misroutes),
        "misroutes_by_topic": dict(Counter(r["topic"] for r in misroutes).most_common()),
        "misroutes_by_intent": dict(Counter(r["intent"] for r in misroutes).most_common()),
        # what a plain global threshold on the classifier's top confidence would leave
        "misroutes_at_threshold": {
            t: sum(r["top_intent"] not in OPEN_QUESTION and r["top_confidence"] >= t for r in rows)
            for t in THRESHOLDS
        },
        "validation_accuracy": summary["accuracy_in_scope"],
        "validation_macro_f1": summary["macro_f1_in_scope"],
        "in_scope_examples": summary["in_scope_examples"],
        # in-scope turns the pipeline answers with the right intent (not sent to fallback)
        "in_scope_routed_correctly": sum((r.get("intent") or {}).get("name") == g for g, r in in_scope)
        / max(1, len(in_scope)),
        "oos_examples": len(oos),
        "oos_val_recall": sum((r.get("intent") or {}).get("name") in OPEN_QUESTION for r in oos) / max(1, len(oos)),
        "rows": rows,
    }


def report(m: Dict) -> str:
    lines = [
        f"model {m['model']} ({m['parse_s']:.0f} s to parse {m['uncovered'] + m['in_scope_examples'] + m['oos_examples']} messages)",
        "",
        "| uncovered questions | confident misroutes | of them to a Banking77 intent "
        "| validation acc. | macro F1 | in-scope routed right | CLINC oos_val recall |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {m['uncovered']} | {m['confident_misroutes']} ({m['confident_misroutes'] / m['uncovered']:.0%}) "
        f"| {m['misroutes_to_banking77']} | {m['validation_accuracy']:.2%} | {m['validation_macro_f1']:.2%} "
        f"| {m['in_scope_routed_correctly']:.2%} | {m['oos_val_recall']:.0%} |",
        "",
        f"on the topics out_of_scope_banking.yml names: {m['misroutes_on_trained_topics']} of "
        f"{m['questions_on_trained_topics']}; on the others (unseen topics and neighbours): "
        f"{m['confident_misroutes'] - m['misroutes_on_trained_topics']} of "
        f"{m['uncovered'] - m['questions_on_trained_topics']}",
        "misroutes if only the classifier's top confidence were thresholded: "
        + ", ".join(f"{float(t):.2f}: {n}" for t, n in m["misroutes_at_threshold"].items()),
        "misroutes by topic: " + ", ".join(f"{k} {v}" for k, v in m["misroutes_by_topic"].items()),
        "misroutes by intent: " + ", ".join(f"{k} {v}" for k, v in m["misroutes_by_intent"].items()),
        "",
        "misrouted questions:",
    ]
    for r in sorted(m["rows"], key=lambda r: -r["top_confidence"]):
        if r["intent"] not in OPEN_QUESTION:
            lines.append(f"  {r['top_confidence']:.2f} {r['intent']:<40} {r['text']}")
    return "\n".join(lines)


def main() -> int:
    from ops.train import latest_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="model file (default: the newest in models/)")
    parser.add_argument("--json", default="", help="also write the figures and every parse here")
    args = parser.parse_args()
    model = Path(args.model) if args.model else latest_model()
    if model is None or not model.is_file():
        print("no trained model: run `make train` first", file=sys.stderr)
        return 1
    if not settings.VALIDATION_FILE.is_file():
        print("validation split missing: run `make data` first", file=sys.stderr)
        return 1
    measured = measure(model)
    print(report(measured))
    if args.json:
        Path(args.json).write_text(json.dumps(measured, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
