"""Evaluate the NLU on the held-out validation split and gate on an accuracy floor.

Reports accuracy and macro F1 on the Banking77 validation part, and the trade-off
of the fallback threshold: out-of-scope recall (oos_val questions that reach the
LLM path, either as `out_of_scope` or below the threshold) against in-scope
accuracy (correct intent above the threshold).
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ops import settings
from ops.data import OUT_OF_SCOPE

FALLBACK = "nlu_fallback"
THRESHOLDS = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)


class EvaluationError(RuntimeError):
    pass


def load_examples(path: Path) -> List[Tuple[str, str]]:
    from rasa.shared.nlu.training_data.loading import load_data

    data = load_data(str(path))
    return [(m.get("text"), m.get("intent")) for m in data.intent_examples]


async def parse_all(model: Path, texts: Sequence[str]) -> List[Dict]:
    """The model's parse data of each text (intent, intent_ranking), as the tracker stores it."""
    import logging

    from rasa.core.agent import Agent
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)  # no per-message debug lines
    agent = Agent.load(str(model))
    return [await agent.parse_message(text) for text in texts]


def top_intent(parsed: Dict) -> Dict:
    """The classifier's own best intent, before the FallbackClassifier's override."""
    ranking = [r for r in parsed.get("intent_ranking") or [] if r["name"] != FALLBACK]
    return ranking[0] if ranking else parsed.get("intent") or {"name": None, "confidence": 0.0}


async def predict(model: Path, texts: Sequence[str]) -> List[Tuple[str, float]]:
    """(top intent, confidence) per text, before the FallbackClassifier's override."""
    return [(top["name"], float(top["confidence"])) for top in map(top_intent, await parse_all(model, texts))]


def threshold_table(gold: Sequence[str], predicted: Sequence[Tuple[str, float]]) -> List[Dict]:
    in_scope = [i for i, g in enumerate(gold) if g != OUT_OF_SCOPE]
    oos = [i for i, g in enumerate(gold) if g == OUT_OF_SCOPE]
    rows = []
    for threshold in THRESHOLDS:
        correct = sum(1 for i in in_scope if predicted[i][0] == gold[i] and predicted[i][1] >= threshold)
        routed = sum(1 for i in oos if predicted[i][0] == OUT_OF_SCOPE or predicted[i][1] < threshold)
        rows.append({
            "threshold": threshold,
            "in_scope_accuracy": correct / max(1, len(in_scope)),
            "oos_recall": routed / max(1, len(oos)),
        })
    return rows


def summarise(gold: Sequence[str], predicted: Sequence[Tuple[str, float]]) -> Dict:
    from sklearn.metrics import f1_score

    labels = [p[0] for p in predicted]
    in_scope = [i for i, g in enumerate(gold) if g != OUT_OF_SCOPE]
    return {
        "examples": len(gold),
        "in_scope_examples": len(in_scope),
        "accuracy_in_scope": sum(labels[i] == gold[i] for i in in_scope) / max(1, len(in_scope)),
        # over the in-scope intents only: a prediction of another label (out_of_scope, affirm)
        # already costs its intent's recall, and must not add a class of its own to the mean
        "macro_f1_in_scope": f1_score([gold[i] for i in in_scope], [labels[i] for i in in_scope],
                                      labels=sorted({gold[i] for i in in_scope}), average="macro"),
        "accuracy_all": sum(l == g for l, g in zip(labels, gold)) / max(1, len(gold)),
        "thresholds": threshold_table(gold, predicted),
    }


def fallback_threshold(config_path: Path = settings.ROOT / "config.yml") -> Optional[float]:
    import yaml

    config = yaml.safe_load(config_path.read_text())
    for component in config.get("pipeline", []):
        if component.get("name") in ("FallbackClassifier", "addons.nlu.followups.FollowUpFallbackClassifier"):
            return float(component.get("threshold", 0.3))
    return None


def to_markdown(summary: Dict, model: Path, threshold: Optional[float], seconds: float) -> str:
    lines = [
        "# NLU evaluation",
        "",
        f"Model `{model.name}`, validation file `{settings.VALIDATION_FILE.relative_to(settings.ROOT)}` "
        f"({summary['in_scope_examples']} Banking77 and {summary['examples'] - summary['in_scope_examples']} "
        f"out-of-scope examples), {seconds:.0f} s.",
        "",
        f"- in-scope accuracy (no fallback): **{summary['accuracy_in_scope']:.2%}**",
        f"- in-scope macro F1: **{summary['macro_f1_in_scope']:.2%}**",
        f"- configured fallback threshold: {threshold}",
        "",
        "| threshold | in-scope accuracy | out-of-scope recall |",
        "|---:|---:|---:|",
    ]
    for row in summary["thresholds"]:
        mark = " ←" if threshold is not None and abs(row["threshold"] - threshold) < 1e-9 else ""
        lines.append(f"| {row['threshold']:.2f}{mark} | {row['in_scope_accuracy']:.2%} | {row['oos_recall']:.2%} |")
    return "\n".join(lines) + "\n"


def evaluate(model: Path, out_dir: Path, full_report: bool = True, min_accuracy: float = 0.0) -> Dict:
    if not settings.VALIDATION_FILE.is_file():
        raise EvaluationError("validation split missing: run `python -m ops import-data` first")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if full_report:  # Rasa's own report: intent_report.json, confusion matrix, errors
        result = subprocess.run([
            str(settings.RASA_VENV / "bin" / "rasa"), "test", "nlu",
            "--model", str(model), "--nlu", str(settings.VALIDATION_FILE), "--out", str(out_dir),
        ], cwd=settings.ROOT)
        if result.returncode != 0:
            raise EvaluationError(f"rasa test nlu failed with exit code {result.returncode}")
    examples = load_examples(settings.VALIDATION_FILE)
    predicted = asyncio.run(predict(model, [text for text, _ in examples]))
    summary = summarise([intent for _, intent in examples], predicted)
    threshold = fallback_threshold()
    summary.update(model=model.name, fallback_threshold=threshold)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "summary.md").write_text(to_markdown(summary, model, threshold, time.monotonic() - started))
    print((out_dir / "summary.md").read_text())
    if summary["accuracy_in_scope"] < min_accuracy:
        raise EvaluationError(
            f"in-scope accuracy {summary['accuracy_in_scope']:.2%} is below the floor {min_accuracy:.2%}"
        )
    return summary
