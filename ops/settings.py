"""Every setting of the operator tooling and the run command, with laptop defaults.

Service settings proper live with each service (actions/settings.py,
generator/settings.py, addons/tracker_store.py); this module only knows where
things are and which ports the embedded stack uses.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA_DIR = Path(os.environ.get("SHARED_DATA_DIR", ROOT.parent / "shared" / "data"))

NLU_DIR = ROOT / "data" / "nlu"
VALIDATION_FILE = ROOT / "build" / "validation" / "nlu.yml"
MODELS_DIR = ROOT / "models"
LOG_DIR = ROOT / "build" / "logs"

RASA_VENV = ROOT / ".venvs" / "rasa"
GENERATOR_VENV = ROOT / ".venvs" / "generator"

# Interface of what customers reach: Rasa (or the load balancer in front of its
# replicas) and the demo page.
BIND_HOST = os.environ.get("BIND_HOST", "127.0.0.1")
# The action server and the generator have no business being public (the action server
# has no authentication): loopback unless set on purpose, whatever BIND_HOST says.
ACTIONS_HOST = os.environ.get("ACTIONS_HOST", "127.0.0.1")
GENERATOR_HOST = os.environ.get("GENERATOR_HOST", "127.0.0.1")
RASA_PORT = int(os.environ.get("RASA_PORT", "5005"))
ACTIONS_PORT = int(os.environ.get("ACTIONS_PORT", "5055"))
GENERATOR_PORT = int(os.environ.get("GENERATOR_PORT", "8000"))
WEB_PORT = int(os.environ.get("WEB_PORT", "8080"))
CONSOLE_PORT = int(os.environ.get("CONSOLE_PORT", "8090"))

# Seconds to wait for each service to become healthy (the first generator start
# converts the model, about a minute).
STARTUP_TIMEOUT_S = float(os.environ.get("STARTUP_TIMEOUT_S", "300"))
# `rasa shell` waits this long for a reply; LLM replies on CPU take several seconds.
SHELL_REQUEST_TIMEOUT_S = int(os.environ.get("SHELL_REQUEST_TIMEOUT_S", "90"))
