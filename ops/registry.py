"""A versioned registry of promoted models, with the metadata an operator audits.

models/registry/registry.json lists every version (file, data and config hashes,
metrics, time, who promoted it) and which one is current; the model files are copied
next to it, so a rollback never depends on what is left in models/.
"""
from __future__ import annotations

import getpass
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

from ops import settings

REGISTRY_DIR = settings.OPS.model_registry_dir


def tree_hash(*paths: Path) -> str:
    digest = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in (root.rglob("*") if root.is_dir() else [root]) if p.is_file())
        for path in files:
            digest.update(str(path.relative_to(settings.ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class Registry:
    def __init__(self, folder: Path = REGISTRY_DIR) -> None:
        self.folder = folder
        self.index = folder / "registry.json"

    def load(self) -> Dict:
        if self.index.is_file():
            return json.loads(self.index.read_text())
        return {"current": None, "versions": []}

    def _save(self, state: Dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.index.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.index)  # atomic: a crash never leaves half an index

    def current(self) -> Optional[Dict]:
        state = self.load()
        return next((v for v in state["versions"] if v["version"] == state["current"]), None)

    def versions(self) -> List[Dict]:
        return self.load()["versions"]

    def add(self, model: Path, metrics: Dict, promoted_by: str = "") -> Dict:
        state = self.load()
        version = max((v["version"] for v in state["versions"]), default=0) + 1
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"v{version:04d}-{model.name}"
        shutil.copy2(model, target)
        entry = {
            "version": version,
            "file": str(target),
            "source": model.name,
            "data_hash": tree_hash(settings.ROOT / "data", settings.ROOT / "domain"),
            "config_hash": tree_hash(settings.ROOT / "config.yml"),
            "metrics": metrics,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "promoted_by": promoted_by or settings.OPS.promoted_by or getpass.getuser(),
        }
        state["versions"].append(entry)
        self._save(state)
        return entry

    def set_current(self, version: int) -> None:
        state = self.load()
        if not any(v["version"] == version for v in state["versions"]):
            raise KeyError(version)
        state["current"] = version
        state.setdefault("history", []).append(version)
        self._save(state)

    def previous(self) -> Optional[Dict]:
        """The version that was current before the current one."""
        state = self.load()
        history = [v for v in state.get("history", [])]
        while history and history[-1] == state["current"]:
            history.pop()
        if not history:
            return None
        return next(v for v in state["versions"] if v["version"] == history[-1])
