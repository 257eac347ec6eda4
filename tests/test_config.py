"""assistant/config.py: the one reader of the environment for Rasa's extensions, the bank,
the action server's start and the operator tooling; the README's table lists what it reads."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from assistant import config

ROOT = Path(__file__).resolve().parent.parent
# Read by Rasa itself, or only by the deployment files, and documented in the table too.
READ_ELSEWHERE = {"ACTION_ENDPOINT_URL", "TICKET_LOCK_LIFETIME"}
# The other settings modules (the answer pipeline, the generator, the agent console).
OTHER_SETTINGS = ["assistant/settings.py", "generator/settings.py", "console/settings.py"]


def config_variables() -> set:
    """The variables assistant/config.py reads (the names its readers are given)."""
    source = (ROOT / "assistant" / "config.py").read_text()
    names = set(re.findall(r'\b(?:_text|_number|_integer|_port|_networks|burst)\([^"\n]*"([A-Z][A-Z0-9_]+)"', source))
    names |= set(re.findall(r'\.get\("([A-Z][A-Z0-9_]+)"', source))
    return names | set(config.OBSOLETE_IDENTITY_SETTINGS) | set(config.BLAS_THREAD_VARIABLES)


def readme_variables() -> set:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):readme.index("Rasa's own files:")]
    names = set()
    for line in table.splitlines():
        columns = line.split("|")
        if line.startswith("|") and len(columns) > 3:
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", columns[2]))
    return names


def test_the_readme_table_lists_exactly_the_variables_read():
    ours = config_variables()
    assert {"BANK_DB_URL", "RATE_LIMIT_CLIENT_BURST", "TRACKER_STORE_RETRY_S", "RASA_PORT", "LOG_FORMAT"} <= ours
    documented = readme_variables()
    assert sorted(ours - documented) == [], "add these to the README's configuration table"
    others = set()
    for path in OTHER_SETTINGS:
        if (ROOT / path).is_file():
            others |= set(re.findall(r'["\']([A-Z][A-Z0-9_]{2,})["\']', (ROOT / path).read_text()))
    assert sorted(documented - ours - others - READ_ELSEWHERE) == [], "the table lists variables nobody reads"


def test_nothing_else_on_the_rasa_side_or_in_ops_reads_the_environment():
    """os.environ is read in config alone (writes, and passing it whole to a child, are fine)."""
    reads = re.compile(r"os\.environ\.get\(|os\.environ\[[^\]]+\](?!\s*=)|os\.getenv\(")
    paths = [*ROOT.glob("addons/**/*.py"), *ROOT.glob("ops/*.py"), *ROOT.glob("assistant/**/*.py"),
             *ROOT.glob("actions/**/*.py")]
    offenders = [f"{path.relative_to(ROOT)}:{number}" for path in paths if path.name != "config.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if reads.search(line)]
    assert offenders == []


def test_bad_values_are_named_in_one_line():
    cases = [
        (config.ops, {"RASA_PORT": "abc"}, "RASA_PORT='abc' is not a whole number"),
        (config.ops, {"WEB_PORT": "70000"}, "WEB_PORT=70000 is not a port"),
        (config.ops, {"STARTUP_TIMEOUT_S": "-1"}, "STARTUP_TIMEOUT_S='-1' must be a number, 0 or more"),
        (config.tracker_store, {"TRACKER_STORE_RETRY_S": "soon"}, "TRACKER_STORE_RETRY_S='soon' is not a number"),
        (config.tracker_store, {"SQL_POOL_SIZE": "0"}, "SQL_POOL_SIZE='0' must be 1 or more"),
        (config.lock_store, {"SANIC_WORKERS": "two"}, "SANIC_WORKERS='two' is not a whole number"),
        (config.channels, {"MAX_MESSAGE_CHARS": "0"}, "MAX_MESSAGE_CHARS='0' must be 1 or more"),
        (config.rate_limits, {"RATE_LIMIT_EXEMPT": "localhost"}, "RATE_LIMIT_EXEMPT='localhost'"),
        (config.action_server, {"ACTIONS_PORT": "http"}, "ACTIONS_PORT='http' is not a whole number"),
        (config.log_format, {"LOG_FORMAT": "xml"}, "LOG_FORMAT must be one of text, json, not 'xml'"),
    ]
    for build, environ, message in cases:
        with pytest.raises(config.SettingsError) as error:
            build(environ)
        assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_defaults_work_on_a_laptop_and_settings_are_frozen():
    ops = config.ops({})
    assert (ops.bind_host, ops.rasa_port, ops.actions_port, ops.generator_port, ops.web_port) == (
        "127.0.0.1", 5005, 5055, 8000, 8080)
    assert ops.shared_data_dir == ROOT.parent / "shared" / "data"
    assert config.bank({}).db_url == f"sqlite:///{ROOT / 'build' / 'bank.db'}"
    assert config.tracker_store({}).resolved_url() == "sqlite:///rasa.db"
    assert config.tracker_store({}).resolved_url("sqlite:///endpoint.db") == "sqlite:///endpoint.db"
    assert config.tracker_store({"TRACKER_STORE_URL": "sqlite:///env.db"}).resolved_url("x") == "sqlite:///env.db"
    assert config.channels({"WEB_PORT": "9000"}).cors_origins == ("http://localhost:9000", "http://127.0.0.1:9000")
    assert config.channels({"CORS_ORIGINS": "https://a.example/, https://b.example"}).cors_origins == (
        "https://a.example", "https://b.example")
    assert config.event_broker({"EVENT_BROKER_QUEUE": " "}).queue == "rasa_events"
    assert config.ops({"EVENT_BROKER_URL": ""}).event_broker_url == ""  # set empty: no broker
    assert config.ops({}).event_broker_url is None  # unset: the machine's default
    with pytest.raises(AttributeError):
        ops.rasa_port = 1  # type: ignore[misc]


def test_rasa_reads_the_same_postgresql_knobs_with_the_same_defaults():
    from rasa.core.constants import POSTGRESQL_MAX_OVERFLOW, POSTGRESQL_POOL_SIZE, POSTGRESQL_SCHEMA
    from rasa.core.tracker_store import POSTGRESQL_DEFAULT_MAX_OVERFLOW, POSTGRESQL_DEFAULT_POOL_SIZE

    assert (POSTGRESQL_POOL_SIZE, POSTGRESQL_MAX_OVERFLOW, POSTGRESQL_SCHEMA) == (
        "SQL_POOL_SIZE", "SQL_MAX_OVERFLOW", "POSTGRESQL_SCHEMA")
    defaults = config.tracker_store({})
    assert (defaults.pool_size, defaults.max_overflow) == (POSTGRESQL_DEFAULT_POOL_SIZE, POSTGRESQL_DEFAULT_MAX_OVERFLOW)
    mine = config.tracker_store({"SQL_POOL_SIZE": "5", "SQL_MAX_OVERFLOW": "0", "POSTGRESQL_SCHEMA": "bot"})
    assert (mine.pool_size, mine.max_overflow, mine.schema) == (5, 0, "bot")


def test_the_identity_rule():
    key = config.VERIFIED_CUSTOMER_KEY

    def user(metadata):
        return {"event": "user", "text": "hi", "metadata": metadata}

    assert config.verified_customer_id([]) is None
    assert config.verified_customer_id([user({key: " C1002 "})]) == "C1002"
    assert config.verified_customer_id([user({"customer_id": "C1002"})]) is None  # a client's own claim
    assert config.verified_customer_id([user({key: "C1001"}), {"event": "bot"}, user({})]) is None  # no carry-over
    assert config.identity_settings_error({}) is None
    assert "BANK_CUSTOMER_ID_CHANNELS is set" in config.identity_settings_error({"BANK_CUSTOMER_ID_CHANNELS": "rest"})
    assert "unsigned" in config.identity_settings_error({"SOCKETIO_JWT_KEY": "k", "SOCKETIO_JWT_METHOD": "none"})


def test_the_operator_cli_stops_with_one_line_on_a_bad_setting():
    done = subprocess.run([sys.executable, "-m", "ops", "models"], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "RASA_PORT": "5005x"}, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == "ops: RASA_PORT='5005x' is not a whole number"
