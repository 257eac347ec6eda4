"""Fit the answerability gate (assistant/answers.py `Gate`) on the development question sets.

Every question of the sets goes through the answer pipeline in this process (the Rasa
model's NLU, assistant.reply with the ONNX encoder: the same path as `bench.answers
--offline`) with the gate off, so each reading yields an answer and the figures the gate
weighs (answers.GATE_FEATURES). A reading is labelled right when its answer contains the
question's fact; every answer to an unanswerable question is labelled wrong. A logistic
regression on those labels is the gate; its threshold is the one that maximises the mean
of answerable-correct, unanswerable-honest and follow-up-correct rates over the sets each
left out in turn (`cross_validated_threshold`).

Before fitting on all sets, each set is left out in turn and scored with a gate fitted
on the others: that figure, printed and written to bench/results/answer-gate.md, is the
estimate for questions the gate never saw. The held-out set is never used. It runs twice:
the first time the earlier turn of each follow-up is answered with the `rules` gate, the
second time with the first fit, as the bot would answer it.

    .venvs/rasa/bin/python -m bench.gate [--set development development-2 ...] [--no-write]

Writes assistant/answer_gate.json (ANSWER_GATE_FILE).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
from collections import Counter, defaultdict
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from bench.answers import ANSWERED_BY_ACTION_EXCEPT, RESULTS_DIR, form_intents, load_set

SETS = ["development", "development-2", "development-3", "development-4", "development-5", "development-6",
        "development-7", "development-8", "development-9", "development-10", "development-11"]
KINDS = ("answerable", "unanswerable", "followups")
THRESHOLDS = [round(t, 2) for t in np.arange(0.3, 0.76, 0.05)]
C = 0.3  # inverse regularisation strength
MATCH_C = 1.0  # the same for the `match` model (answers.pair_features: 1,536 inputs)


async def readings(names: Sequence[str], earlier_gate: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """One record per scored turn: its set and kind, whether the rules route it away from
    the answer action, and its readings (alone; and in context when it may lean on the
    conversation), each with the gate's features and whether the answer is right. The
    earlier turn of a follow-up is answered with `earlier_gate` (the `rules` without)."""
    from assistant import answers, reply, settings
    from assistant.answers import asks_something
    from bench.answers import offline_embeddings
    from ops.evaluate import parse_all
    from ops.train import latest_model

    offline_embeddings()
    if earlier_gate is not None:
        answers._gate = answers.Gate(**earlier_gate)
    answering = "rules" if earlier_gate is None else "learned"
    settings.ANSWER_GATE = "off"
    forms = form_intents()
    model = latest_model()
    records = []
    for name in names:
        data = load_set(name)
        items = [(kind, item, item["turns"] if kind == "followups" else [item["question"]])
                 for kind in KINDS for item in data.get(kind) or []]
        texts = sorted({t for _, _, turns in items for t in turns})
        parsed = dict(zip(texts, await parse_all(model, texts)))
        for kind, item, turns in items:
            events: List[Dict[str, Any]] = [{"event": "session_started"}]
            record: Dict[str, Any] = {"set": name, "kind": kind, "routed": False, "readings": []}
            for n, text in enumerate(turns):
                events.append({"event": "user", "text": text, "parse_data": parsed[text]})
                intent = parsed[text]["intent"]["name"]
                routed = intent in ANSWERED_BY_ACTION_EXCEPT or (intent in forms and not asks_something(text))
                if n < len(turns) - 1:  # an earlier turn: answered as the bot would (gate on)
                    if not routed:
                        settings.ANSWER_GATE = answering
                        earlier = await reply.answer(events, candidates=0)
                        settings.ANSWER_GATE = "off"
                        events.append({"event": "bot", "text": earlier.text, "metadata": {"sources": earlier.sources}})
                    continue
                record["routed"], record["form_intent"] = routed, intent in forms
                if routed:
                    break
                sentences = reply.load_sentences()
                strict = answers.followup_context(events, sentences.is_topic)
                contexts = [strict]
                if strict is None:
                    loose = answers.followup_context(events, sentences.is_topic, loose=True)
                    if loose is not None:
                        contexts.append(loose)
                for context in contexts:
                    _, extract, _ = await reply._extract(events, text, context, reply._Deadline(60), None)
                    right = kind != "unanswerable" and bool(re.search(item["fact"], extract.text, re.I))
                    record["readings"].append({"features": extract.features, "right": right, "pair": extract.pair})
            records.append(record)
    return records


def outcomes(records: Sequence[Dict[str, Any]], passes: Callable[[Dict[str, float]], bool]) -> Dict[str, Counter]:
    """What the customers would get with this gate, per kind (as reply.answer reads a
    message: alone first, then in context when alone is refused)."""
    counts: Dict[str, Counter] = defaultdict(Counter)
    for record in records:
        kind = record["kind"]
        if record["routed"]:
            counts[kind]["routed"] += 1
            continue
        chosen = next((r for r in record["readings"] if passes(r["features"])), None)
        if chosen is None:
            counts[kind]["routed" if record["form_intent"] else "honest" if kind == "unanswerable" else "refused"] += 1
        elif kind == "unanswerable":
            counts[kind]["invented"] += 1
        else:
            counts[kind]["correct" if chosen["right"] else "wrong"] += 1
    return counts


def rates(counts: Dict[str, Counter]) -> Dict[str, float]:
    return {kind: (counts[kind]["correct"] + counts[kind]["honest"]) / max(1, sum(counts[kind].values()))
            for kind in KINDS}


# fitted match models by the records they were fitted on (kept, so that no id is reused)
_match_models: Dict[frozenset, Any] = {}


def fit_match(records: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The gate's `match` model (`answers.Gate.match`): a logistic regression over the
    readings' `answers.pair_features`, labelled right or wrong like the gate; None when
    the readings carry no pairs. Remembered per set of records (the fits below reuse it)."""
    from sklearn.linear_model import LogisticRegression

    key = frozenset(id(record) for record in records)
    if key not in _match_models:
        rows = [(r.get("pair"), r["right"]) for record in records if not record["routed"] for r in record["readings"]]
        match = None
        if rows and all(pair is not None for pair, _ in rows) and len({right for _, right in rows}) == 2:
            model = LogisticRegression(C=MATCH_C, max_iter=5000).fit(
                np.array([pair for pair, _ in rows]), np.array([int(right) for _, right in rows]))
            match = {"match_coef": [round(float(c), 6) for c in model.coef_[0]],
                     "match_intercept": float(model.intercept_[0])}
        _match_models[key] = (list(records), match)
    return _match_models[key][1]


def with_match(records: Sequence[Dict[str, Any]], match: Optional[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The records with each reading's `match` feature computed by this match model."""
    if match is None:
        return list(records)
    from assistant.answers import Gate

    gate = Gate([], [], [], [], 0.0, 0.0, **match)
    return [{**record, "readings": [{**r, "features": {**r["features"], "match": gate.match(r["pair"])}}
                                    for r in record["readings"]]} for record in records]


def out_of_set_match(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The records with `match` computed, for each set, by a match model fitted on the other
    sets: the gate then learns how far to trust `match` on questions the match model never
    saw, as in use (in-sample, it would trust it far too much)."""
    names = sorted({record["set"] for record in records})
    if len(names) < 2:
        return with_match(records, fit_match(records))
    scored: List[Dict[str, Any]] = []
    for name in names:
        scored += with_match([r for r in records if r["set"] == name],
                             fit_match([r for r in records if r["set"] != name]))
    return scored


def fit(records: Sequence[Dict[str, Any]], threshold: Optional[float] = None) -> Dict[str, Any]:
    """The gate fitted on these records (their `match` out of set, and the match model on
    all of them); its threshold maximises the mean rate on them unless given."""
    from sklearn.linear_model import LogisticRegression

    from assistant.answers import GATE_FEATURES, Gate

    match = fit_match(records)
    records = out_of_set_match(records)
    rows = [([float(r["features"][f]) for f in GATE_FEATURES], r["right"])
            for record in records if not record["routed"] for r in record["readings"]]
    x = np.array([row for row, _ in rows])
    y = np.array([int(right) for _, right in rows])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=C, max_iter=5000).fit((x - mean) / scale, y)
    gate = {"features": list(GATE_FEATURES), "mean": mean.tolist(), "scale": scale.tolist(),
            "coef": model.coef_[0].tolist(), "intercept": float(model.intercept_[0]), "threshold": 0.5}
    if threshold is None:  # on the out-of-set `match` figures (the records here)
        def mean_rate(t: float) -> float:
            g = Gate(**{**gate, "threshold": t})
            return sum(rates(outcomes(records, lambda f: g.probability(f) >= t)).values())
        threshold = max(THRESHOLDS, key=mean_rate)
    gate["threshold"] = float(threshold)
    if match is not None:
        gate.update(match)
    return gate


def leave_one_set_out(records: Sequence[Dict[str, Any]], names: Sequence[str],
                      threshold: Optional[float] = None) -> Dict[str, Counter]:
    """Each set scored with a gate fitted on the other sets (with this threshold, or the
    one that suits those sets best)."""
    from assistant.answers import Gate

    total: Dict[str, Counter] = defaultdict(Counter)
    for name in names:
        fitted = fit([r for r in records if r["set"] != name], threshold)
        gate = Gate(**fitted)
        held = with_match([r for r in records if r["set"] == name], {k: v for k, v in fitted.items() if "match" in k}
                          if "match_coef" in fitted else None)
        for kind, counts in outcomes(held,
                                     lambda f: gate.probability(f) >= gate.threshold).items():
            total[kind].update(counts)
    return total


def cross_validated_threshold(records: Sequence[Dict[str, Any]], names: Sequence[str]) -> float:
    """The threshold whose leave-one-set-out mean rate is highest: chosen on questions each
    fit did not see, rather than on the questions it was fitted to (which favours refusing)."""
    return max(THRESHOLDS, key=lambda t: sum(rates(leave_one_set_out(records, names, t)).values()))


def rules_gate() -> Callable[[Dict[str, float]], bool]:
    """The `rules` gate on the same figures, for comparison."""
    from assistant import settings

    def passes(f: Dict[str, float]) -> bool:
        alone = not f["followup"]
        return not ((alone and f["retrieval"] < settings.KNOWLEDGE_MIN_SCORE)
                    or (alone and f["similarity"] < settings.ANSWER_MIN_SIMILARITY)
                    or f["coverage"] < settings.ANSWER_MIN_COVERAGE or f["kind_missing"])
    return passes


def line(label: str, counts: Dict[str, Counter]) -> str:
    cells = []
    for kind in KINDS:
        good = counts[kind]["correct"] + counts[kind]["honest"]
        n = sum(counts[kind].values())
        cells.append(f"{good}/{n} ({good / max(1, n):.1%})")
    return f"| {label} | " + " | ".join(cells) + f" | {sum(rates(counts).values()) / 3:.1%} |"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", nargs="+", default=SETS, help="development sets under bench/answers/")
    parser.add_argument("--no-write", action="store_true", help="write neither the gate nor bench/results/")
    args = parser.parse_args(argv)
    if "heldout" in args.set:
        parser.error("the held-out set is never used for fitting")
    from assistant import settings

    # twice: the second time the earlier turns of follow-ups are answered with the first fit
    gate = fit(asyncio.run(readings(args.set)))
    records = asyncio.run(readings(args.set, gate))
    threshold = cross_validated_threshold(records, args.set)
    gate = fit(records, threshold)
    from assistant.answers import Gate
    fitted = Gate(**gate)
    table = [
        "| gate | answerable correct | unanswerable honest | follow-ups correct | mean |",
        "|---|---:|---:|---:|---:|",
        line("off (every question answered): the ceiling", outcomes(records, lambda features: True)),
        line("rules (today's thresholds), on these sets", outcomes(records, rules_gate())),
        line("learned, each set left out in turn (threshold chosen in each fit)", leave_one_set_out(records, args.set)),
        line(f"learned, each set left out in turn (threshold {threshold}, chosen on these rows)",
             leave_one_set_out(records, args.set, threshold)),
        line("learned, fitted on all (in-sample)",
             outcomes(with_match(records, {k: v for k, v in gate.items() if "match" in k} if "match_coef" in gate
                                 else None), lambda f: fitted.probability(f) >= fitted.threshold)),
    ]
    print("\n".join(table))
    print(f"threshold {gate['threshold']}; " + ", ".join(
        f"{f} {c:+.2f}" for f, c in zip(gate["features"], gate["coef"])))
    if args.no_write:
        return
    # the match model's 1,536 coefficients on one line
    text = json.dumps({k: v for k, v in gate.items() if k != "match_coef"}, indent=1)
    if "match_coef" in gate:
        text = text[:-2] + ',\n "match_coef": ' + json.dumps(gate["match_coef"]) + "\n}"
    settings.ANSWER_GATE_FILE.write_text(text + "\n")
    n = Counter(r["kind"] for r in records)
    (RESULTS_DIR / "answer-gate.md").write_text("\n".join([
        "# Answerability gate",
        "",
        f"`python -m bench.gate --set {' '.join(args.set)}` on {dt.date.today()}: "
        f"{n['answerable']} answerable, {n['unanswerable']} unanswerable and {n['followups']} follow-up questions, "
        "through the answer pipeline in process (offline, as `bench.answers --offline`; turns the rules route to "
        "a template or a form count as not answered). The learned gate is a logistic regression over "
        "`answers.GATE_FEATURES`; the row that leaves each set out is the estimate for unseen questions. "
        "Its `match` feature is the log-odds of a second logistic regression over the question's and the best "
        f"sentence's embeddings (`answers.pair_features`: u, v, |u - v|, u * v; C = {MATCH_C}); the gate is fitted "
        "on each set's `match` figures from a match model fitted on the other sets (in a left-out run, on the "
        "other sets of its training part), and the match model it ships is fitted on all of them.",
        "",
        *table,
        "",
        f"Threshold {gate['threshold']} (the best leave-one-set-out mean). Coefficients (standardised features): " + ", ".join(
            f"`{f}` {c:+.2f}" for f, c in zip(gate["features"], gate["coef"])) + ".",
        "",
    ]))


if __name__ == "__main__":
    main()
