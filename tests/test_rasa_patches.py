"""The Rasa patches (addons/fixes.py, addons/logs.py) are applied on purpose: by the modules
Rasa loads by their path, never by a tool that only reads a setting or the tracker store,
and never on a Rasa version they were not written for."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ops import settings

# Run an ops command in this process, then report whether Rasa's patched attributes are
# still Rasa's own (importing Rasa here, after the command, patches nothing).
_RUN_AND_REPORT = """
import json, sys
from ops.__main__ import main
code = main(sys.argv[1:])
from rasa.core.actions.action import RemoteAction
from rasa.core.policies.rule_policy import RulePolicy
from rasa.core.processor import MessageProcessor
from rasa.core.tracker_store import FailSafeTrackerStore
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.shared.core.events import Event
from rasa.utils.endpoints import EndpointConfig
patched = {
    name: getattr(value, "__module__", "")
    for name, value in {
        "RemoteAction._validate_action_result": RemoteAction._validate_action_result,
        "Event.resolve_by_type": Event.resolve_by_type,
        "RulePolicy._is_rule_applicable": RulePolicy._is_rule_applicable,
        "RulePolicy._get_possible_keys": RulePolicy._get_possible_keys,
        "DaskGraphRunner.run": DaskGraphRunner.run,
        "MessageProcessor.parse_message": MessageProcessor.parse_message,
        "EndpointConfig.request": EndpointConfig.request,
        "FailSafeTrackerStore.on_tracker_store_error": FailSafeTrackerStore.on_tracker_store_error,
    }.items()
}
addons = sorted(m for m in sys.modules if m == "addons" or m.startswith("addons."))
print(json.dumps({"code": code, "patched": patched, "addons": addons}))
"""


def _tracker_db(path: Path) -> str:
    """A tracker store with Rasa's events table and one old conversation."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, sender_id VARCHAR(255) NOT NULL, "
                   "type_name VARCHAR(255) NOT NULL, timestamp FLOAT, intent_name VARCHAR(255), "
                   "action_name VARCHAR(255), data TEXT)")
        db.execute("INSERT INTO events (sender_id, type_name, timestamp, data) VALUES ('old', 'user', 1000, '{}')")
    return f"sqlite:///{path}"


@pytest.mark.parametrize("command", [
    ["status"],
    ["retention", "--older-than-days", "30", "--dry-run"],
    ["retention", "--older-than-days", "30"],
])
def test_ops_commands_leave_rasa_unpatched(command, tmp_path):
    url = _tracker_db(tmp_path / "tracker.db")
    closed = {"RASA_PORT": "9", "ACTIONS_PORT": "9", "GENERATOR_URL": "http://127.0.0.1:9/v1"}
    env = {**os.environ, "TRACKER_STORE_URL": url, "LOCK_STORE_URL": "", **closed}
    run = subprocess.run([sys.executable, "-c", _RUN_AND_REPORT, *command], cwd=settings.ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["code"] == (1 if command == ["status"] else 0)  # status: Rasa and the rest are down
    assert report["addons"] == []
    assert all(module.startswith("rasa.") for module in report["patched"].values()), report["patched"]
    if command[-1] == "30":
        assert sqlite3.connect(tmp_path / "tracker.db").execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_importing_the_addons_package_patches_nothing():
    code = ("import addons; from addons import fixes; from rasa.core.policies.rule_policy import RulePolicy; "
            "print(fixes.applied(), RulePolicy._get_possible_keys.__module__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=settings.ROOT, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.split() == ["False", "rasa.core.policies.rule_policy"]


def test_a_module_rasa_loads_applies_the_patches_once():
    code = ("import addons.tracker_store, addons.channels; from addons import fixes, prepare_rasa; prepare_rasa(); "
            "from rasa.core.policies.rule_policy import RulePolicy; "
            "print(fixes.applied(), RulePolicy._get_possible_keys is fixes._get_possible_keys)")
    out = subprocess.run([sys.executable, "-c", code], cwd=settings.ROOT, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.split() == ["True", "True"]


@pytest.mark.parametrize("load", ["import addons.tracker_store", "from addons import fixes; fixes.apply()"])
def test_another_rasa_version_is_refused_with_one_line(load):
    code = f"import rasa; rasa.__version__ = '3.7.2'; {load}"
    run = subprocess.run([sys.executable, "-c", code], cwd=settings.ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr  # one line, after whatever Rasa's imports log
    refusal = [line for line in run.stderr.splitlines() if "3.7.2" in line]
    assert refusal == [run.stderr.strip().splitlines()[-1]]
    assert "Rasa 3.6.21" in refusal[0] and "Rasa 3.7.2 is installed" in refusal[0]


def test_the_rule_index_cache_is_bounded_and_goes_with_its_policy():
    """A hot swap loads a new policy with new lookups: the indexes of the old one go with it."""
    from rasa.core.policies.rule_policy import RulePolicy

    from addons import fixes

    policy = RulePolicy.__new__(RulePolicy)
    key = json.dumps([{"prev_action": {"action_name": "action_listen"}, "user": {"intent": "greet"}}])
    state = [{"prev_action": {"action_name": "action_listen"}, "user": {"intent": "greet"}}]
    lookups = [{key: "utter_greet"} for _ in range(20)]  # kept alive: no id is reused
    for lookup in lookups:
        assert fixes._get_possible_keys(policy, lookup, state) == {key}
    assert len(policy.__dict__["_rule_indexes"]) == fixes._RULE_INDEXES_PER_POLICY
    assert not hasattr(fixes, "_rule_indexes")  # no module-wide cache to grow
