"""The operator tooling's settings and where things are, for `python -m ops` and the run command.

The values come from assistant/config.py (`config.ops()`, built once per process), which
reads every environment variable; this module only names them for ops and knows the
paths. A bad value stops the process with one line naming the variable.
"""
from __future__ import annotations

from assistant import config

try:
    OPS = config.ops()
except config.SettingsError as error:
    raise SystemExit(f"ops: {error}") from None

ROOT = config.ROOT
SHARED_DATA_DIR = OPS.shared_data_dir

NLU_DIR = ROOT / "data" / "nlu"
VALIDATION_FILE = ROOT / "build" / "validation" / "nlu.yml"
MODELS_DIR = ROOT / "models"
LOG_DIR = ROOT / "build" / "logs"

RASA_VENV = ROOT / ".venvs" / "rasa"
GENERATOR_VENV = ROOT / ".venvs" / "generator"

# Interface of what customers reach: Rasa (or the load balancer in front of its
# replicas) and the demo page. The action server and the generator listen on loopback
# unless ACTIONS_HOST / GENERATOR_HOST say otherwise, whatever BIND_HOST says.
BIND_HOST = OPS.bind_host
ACTIONS_HOST = OPS.actions_host
GENERATOR_HOST = OPS.generator_host
RASA_PORT = OPS.rasa_port
ACTIONS_PORT = OPS.actions_port
GENERATOR_PORT = OPS.generator_port
WEB_PORT = OPS.web_port
CONSOLE_PORT = OPS.console_port
EXPORTER_PORT = OPS.exporter_port

# Seconds to wait for each service to become healthy (the first generator start
# converts the model, about a minute).
STARTUP_TIMEOUT_S = OPS.startup_timeout_s
# `rasa shell` waits this long for a reply; LLM replies on CPU take several seconds.
SHELL_REQUEST_TIMEOUT_S = OPS.shell_request_timeout_s
