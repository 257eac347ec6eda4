"""What the images would contain, run from a folder: Docker cannot run here (nor podman or
buildah), so the test lays each image's /app with the same script deploy/Dockerfile runs
(deploy/image_files.py), into a temporary folder, and starts the services from there
with the environment compose gives them:

- the bank database is migrated by the image's own `python -m assistant.bank migrate`
  (compose's bank-migrate job);
- the generator (the `generator` image's files) and the action server (the `assistant`
  image's files) start, the action server's start check finds both models, and a
  /webhook call for action_llm_reply answers a banking question from the knowledge index
  through the generator (not the fallback);
- without the knowledge index in the image the lay fails (the build would), and an
  action server started from such a folder exits with code 2 naming the missing file.

The processes are the real ones (the venvs' Python stands in for the images' Python; the
model artefacts are symlinked to this checkout's, the code is copied, so the services
find their root, and their files, in the temporary folder, never in the checkout).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Dict

import pytest
import yaml

from ops import settings
from ops.services import Service, free_ports, running

DEPLOY = settings.ROOT / "deploy"
RASA_PY = str(settings.RASA_VENV / "bin" / "python")
GEN_PY = str(settings.GENERATOR_VENV / "bin" / "python")
QUESTION = "how long does a new card take to arrive?"


def _image_files():
    spec = importlib.util.spec_from_file_location("image_files", DEPLOY / "image_files.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("image_files", module)
    spec.loader.exec_module(module)
    return module


def lay(image: str, source: Path, dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEPLOY / "image_files.py"), "lay", image, str(source), str(dest),
                           "--link"], capture_output=True, text=True, timeout=120)


def compose_env(service: str, replace: Dict[str, str]) -> Dict[str, str]:
    """The service's environment in deploy/docker-compose.yml with deploy/.env empty:
    ${NAME:-default} is its default; a value that needs a secret (${NAME:?...}) is left out."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    env = {}
    for name, value in (compose["services"][service].get("environment") or {}).items():
        value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
        if "${" in value:
            continue
        for old, new in replace.items():
            value = value.replace(old, new)
        env[name] = value
    return env


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("image")
    for image in ("generator", "assistant"):
        result = lay(image, settings.ROOT, root / image)
        assert result.returncode == 0, result.stderr
    return root


def test_the_image_files_serve_an_llm_turn(image_root, tmp_path):
    gen_port, act_port = free_ports(2)
    local = {"http://generator:8000": f"http://127.0.0.1:{gen_port}"}
    bank_url = f"sqlite:///{tmp_path / 'bank.db'}"
    # compose's bank-migrate job, from the image's files
    migrated = subprocess.run([RASA_PY, "-m", "assistant.bank", "migrate"], cwd=image_root / "assistant",
                              env={**os.environ, "BANK_DB_URL": bank_url}, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0 and migrated.stdout.strip().endswith("no revision -> 0001"), migrated.stderr

    generator = Service(
        "generator", [GEN_PY, "-m", "generator"], f"http://127.0.0.1:{gen_port}/health", tmp_path / "generator.log",
        env={**compose_env("generator", local), "GENERATOR_HOST": "127.0.0.1", "GENERATOR_PORT": str(gen_port)},
        cwd=image_root / "generator",
    )
    actions_env = compose_env("actions", local)
    assert actions_env["GENERATOR_URL"] == actions_env["EMBEDDINGS_URL"] == f"http://127.0.0.1:{gen_port}/v1"
    actions = Service(
        "actions", [RASA_PY, "-m", "actions.server", "--host", "127.0.0.1", "--port", str(act_port)],
        f"http://127.0.0.1:{act_port}/health", tmp_path / "actions.log",
        env={**actions_env, "BANK_DB_URL": bank_url}, cwd=image_root / "assistant",
    )
    with running([generator], [actions]):
        user = {"event": "user", "text": QUESTION, "parse_data": {
            "text": QUESTION, "intent": {"name": "nlu_fallback", "confidence": 0.3}, "entities": []}}
        payload = {
            "next_action": "action_llm_reply", "sender_id": "image-test", "version": "3.6.2",
            "tracker": {"sender_id": "image-test", "slots": {}, "latest_message": user["parse_data"],
                        "events": [user], "paused": False, "followup_action": None, "active_loop": {},
                        "latest_action_name": "action_listen"},
            "domain": {"responses": {}},
        }
        request = urllib.request.Request(f"http://127.0.0.1:{act_port}/webhook", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200
            body = json.loads(response.read())
    (reply,) = body["responses"]
    assert reply["source"] in ("knowledge", "llm"), reply  # not the fallback
    assert reply["text"] and "Source:" in reply["text"] and reply["sources"], reply
    actions_log = actions.log_path.read_text()
    assert "action action_llm_reply: HTTP 200" in actions_log
    # the processes ran from the image's files, the question went to the generator's embeddings
    assert str(image_root / "generator" / "models" / "generator") in generator.log_path.read_text()
    assert "POST /v1/embeddings" in generator.log_path.read_text()


def test_without_the_knowledge_index_the_image_neither_builds_nor_serves(image_root, tmp_path):
    broken = tmp_path / "assistant"
    assert lay("assistant", settings.ROOT, broken).returncode == 0
    index = broken / "build" / "knowledge" / "index.npz"
    index.unlink()
    # the build: laying the image from such a checkout fails, naming the file
    failed = lay("assistant", broken, tmp_path / "again")
    assert failed.returncode == 1 and "build/knowledge/index.npz" in failed.stderr, failed.stderr
    # the service: the action server exits at once with the reason (no generator needed)
    env = {**os.environ, **compose_env("actions", {}), "GENERATOR_START_CHECK": "0", "LOG_FORMAT": "text"}
    result = subprocess.run([RASA_PY, "-m", "actions.server", "--host", "127.0.0.1", "--port", str(free_ports(1)[0])],
                            cwd=broken, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("action server: knowledge index not usable: ") and f"{index} does not exist" in last, last
