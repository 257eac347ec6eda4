"""Model lifecycle on the real stack: gate, promote with hot-swap, rollback."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ops import lifecycle, settings
from ops.registry import Registry
from tests.conftest import API_TOKEN

NEW_GREETING = "Hello from the newly promoted model!"


def _train(out: Path, domain: Path, config: Path) -> Path:
    subprocess.run(
        [str(settings.RASA_VENV / "bin" / "rasa"), "train", "--config", str(config), "--domain", str(domain),
         "--data", "data", "--out", str(out)],
        cwd=settings.ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return next(out.glob("*.tar.gz"))


@pytest.fixture(scope="module")
def variant_model(tmp_path_factory) -> Path:
    """The same bot with a different greeting: tells which model answers."""
    work = tmp_path_factory.mktemp("variant")
    domain = work / "domain"
    domain.mkdir()
    for source in (settings.ROOT / "domain").glob("*.yml"):
        text = source.read_text()
        if source.name == "core.yml":
            start = text.index("  utter_greet:")
            end = text.index("  utter_goodbye:")
            text = text[:start] + f'  utter_greet:\n    - text: "{NEW_GREETING}"\n' + text[end:]
        (domain / source.name).write_text(text)
    return _train(work / "models", domain, settings.ROOT / "config.yml")


def test_promote_while_serving_then_rollback(running_stack, trained_model, variant_model, tmp_path, monkeypatch,
                                             domain_responses):
    monkeypatch.setenv("RASA_API_TOKEN", API_TOKEN)
    registry = Registry(tmp_path / "registry")
    first = lifecycle.promote(trained_model, running_stack.rasa_url, registry)

    stop, failures, replies = threading.Event(), [], []

    def customer():
        n = 0
        while not stop.is_set():
            n += 1
            status, reply = running_stack.say(f"lifecycle-{n}", "hello")
            (replies if status == 200 and reply else failures).append((status, reply))

    client = threading.Thread(target=customer)
    client.start()
    try:
        second = lifecycle.promote(variant_model, running_stack.rasa_url, registry)
        time.sleep(1.0)
    finally:
        stop.set()
        client.join(60)
    assert failures == []
    assert len(replies) > 3
    assert replies[-1][1][0]["text"] == NEW_GREETING
    assert registry.current()["version"] == second["version"] == first["version"] + 1

    restored = lifecycle.rollback(running_stack.rasa_url, registry)
    assert restored["version"] == first["version"]
    status, reply = running_stack.say("lifecycle-after-rollback", "hello")
    assert reply[0]["text"] in domain_responses["utter_greet"]
    meta = registry.versions()[0]
    assert {"data_hash", "config_hash", "metrics", "time", "promoted_by"} <= set(meta)


def test_gate_refuses_a_worse_model(tmp_path, trained_model):
    registry = Registry(tmp_path / "registry")
    registry.set_current(registry.add(trained_model, lifecycle.measure(trained_model))["version"])
    worse = _train(tmp_path / "worse", settings.ROOT / "domain",
                   settings.ROOT / "bench" / "configs" / "count_vectors_lr.yml")
    with pytest.raises(lifecycle.GateRefused, match="macro F1"):
        lifecycle.promote(worse, None, registry)
    assert registry.current()["source"] == trained_model.name
    assert len(registry.versions()) == 1
