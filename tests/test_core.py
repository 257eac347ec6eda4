"""The core package `assistant/` (and the tracker helpers the actions share) import
neither Rasa nor rasa-sdk: ops, bench and the console can use them without either."""
import json
import pkgutil
import subprocess
import sys

import assistant
from ops import settings

RASA_FREE = ["actions.tracker"]


def test_the_core_imports_neither_rasa_nor_rasa_sdk():
    modules = ["assistant"] + [info.name for info in pkgutil.walk_packages(assistant.__path__, prefix="assistant.")
                               if not info.name.endswith("__main__")] + RASA_FREE
    code = (f"import importlib, json, sys\nfor name in {modules!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('rasa', 'rasa_sdk'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=settings.ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert "assistant.bank.repository" in modules and "assistant.config" in modules
