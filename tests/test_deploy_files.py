"""The monitoring files name only series the services really export."""
from __future__ import annotations

import json
import re

import yaml

from ops import settings

SOURCES = ["actions/metrics.py", "ops/exporter.py", "generator/metrics.py"]


def _exported() -> set:
    names = set()
    for source in SOURCES:
        text = (settings.ROOT / source).read_text()
        names |= {_base(n) for n in re.findall(r"\"((?:rasa|action_server|generator)_[a-z_]+)\"", text)}
    return names


def _base(series: str) -> str:
    return re.sub(r"_(total|bucket|count|sum|created)$", "", series)


def test_dashboard_queries_use_exported_series():
    dashboard = json.loads((settings.ROOT / "deploy" / "grafana" / "lakeside-assistant.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:rasa|action_server|generator)_[a-z_]+)", e)}
    assert used and {_base(s) for s in used} <= _exported()
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_prometheus_scrapes_each_metrics_port():
    config = yaml.safe_load((settings.ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {"rasa": ["127.0.0.1:9105"], "actions": ["127.0.0.1:5055"], "generator": ["127.0.0.1:8000"]}
