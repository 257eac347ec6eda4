"""Promote a model through the quality gate, hot-swap it, roll back in one command.

Gate: `rasa data validate` passes, the candidate's in-scope macro F1 on the validation split may not drop more
than 0.5 points below the current model's, and every conversation test in
tests/conversations/ and tests/test_stories.yml (the forms and the handoff) must pass
(`rasa test core --fail-on-prediction-errors`).
Hot-swap: PUT /model on the running Rasa (its HTTP API, behind a token), which loads
the new model while the old one keeps answering; conversations stay in the tracker store.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Optional

from assistant import config
from ops import evaluate, settings
from ops.registry import Registry

MAX_F1_DROP = 0.005
CONVERSATION_TESTS = [settings.ROOT / "tests" / "conversations", settings.ROOT / "tests" / "test_stories.yml"]
TOKEN_FILE = settings.ROOT / "build" / "rasa-api-token"


class GateRefused(RuntimeError):
    pass


class SwapError(RuntimeError):
    pass


def api_token() -> str:
    token = config.ops().rasa_api_token  # read now: the run command may have set it
    if token:
        return token
    return TOKEN_FILE.read_text().strip() if TOKEN_FILE.is_file() else ""


def measure(model: Path) -> Dict:
    examples = evaluate.load_examples(settings.VALIDATION_FILE)
    predicted = asyncio.run(evaluate.predict(model, [text for text, _ in examples]))
    summary = evaluate.summarise([intent for _, intent in examples], predicted)
    return {k: summary[k] for k in ("accuracy_in_scope", "macro_f1_in_scope", "accuracy_all")}


def conversation_tests(model: Path) -> None:
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as stories:
        # one `rasa test core` run (one model load) over every test story file
        files = [f for path in CONVERSATION_TESTS for f in ([path] if path.is_file() else sorted(path.glob("*.yml")))]
        for number, source in enumerate(files):
            shutil.copy(source, Path(stories) / f"{number:02d}-{source.name}")
        result = subprocess.run(
            [str(settings.RASA_VENV / "bin" / "rasa"), "test", "core", "--model", str(model),
             "--stories", stories, "--out", out, "--fail-on-prediction-errors"],
            cwd=settings.ROOT, capture_output=True, text=True,
        )
    if result.returncode != 0:
        raise GateRefused("conversation tests failed:\n" + result.stdout[-2000:] + result.stderr[-1000:])


def validate_data() -> None:
    result = subprocess.run(
        [str(settings.RASA_VENV / "bin" / "rasa"), "data", "validate", "--domain", "domain",
         "--data", "data", "--config", "config.yml"],
        cwd=settings.ROOT, capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise GateRefused("rasa data validate failed:\n" + result.stdout[-2000:] + result.stderr[-1000:])


def gate(model: Path, registry: Registry) -> Dict:
    validate_data()
    metrics = measure(model)
    current = registry.current()
    if current is not None:
        floor = current["metrics"]["macro_f1_in_scope"] - MAX_F1_DROP
        if metrics["macro_f1_in_scope"] < floor:
            raise GateRefused(
                f"macro F1 {metrics['macro_f1_in_scope']:.2%} is more than 0.5 points below "
                f"v{current['version']}'s {current['metrics']['macro_f1_in_scope']:.2%}"
            )
    conversation_tests(model)
    return metrics


def swap(rasa_url: str, model_file: str, timeout: float = 300) -> None:
    token = api_token()
    request = urllib.request.Request(
        f"{rasa_url}/model?token={token}",
        data=json.dumps({"model_file": model_file}).encode(),
        headers={"Content-Type": "application/json"}, method="PUT",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 204:
                raise SwapError(f"PUT /model answered {response.status}")
    except urllib.error.HTTPError as error:
        raise SwapError(f"PUT /model answered {error.code}: {error.read()[:300]!r}") from error
    except (urllib.error.URLError, OSError) as error:
        raise SwapError(f"Rasa is not reachable at {rasa_url}: {error}") from error


def promote(model: Path, rasa_url: Optional[str], registry: Optional[Registry] = None, force: bool = False) -> Dict:
    registry = registry or Registry()
    print(f"evaluating {model.name} ...", flush=True)
    metrics = measure(model) if force else gate(model, registry)
    entry = registry.add(model, metrics)
    if rasa_url:
        print(f"loading v{entry['version']} into {rasa_url} ...", flush=True)
        swap(rasa_url, entry["file"])
    registry.set_current(entry["version"])
    return entry


def rollback(rasa_url: Optional[str], registry: Optional[Registry] = None) -> Dict:
    registry = registry or Registry()
    previous = registry.previous()
    if previous is None:
        raise SwapError("there is no previous version to roll back to")
    if rasa_url:
        swap(rasa_url, previous["file"])
    registry.set_current(previous["version"])
    return previous
