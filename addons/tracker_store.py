"""Rasa's SQL tracker store, configured by one environment variable.

`TRACKER_STORE_URL` is an SQLAlchemy URL: `sqlite:///rasa.db` (the default, a file in
the working directory) or `postgresql://user:password@host:5432/db` at scale. It wins
over a `url:` in endpoints.yml, so the same files serve a laptop and a cluster.
The table layout is Rasa's own `events` table: analytics and retention read it as is.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from rasa.core.tracker_store import SQLTrackerStore

DEFAULT_URL = "sqlite:///rasa.db"


def tracker_store_url(configured: Optional[str] = None) -> str:
    return os.environ.get("TRACKER_STORE_URL") or configured or DEFAULT_URL


class EnvSQLTrackerStore(SQLTrackerStore):
    def __init__(self, host: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(host=tracker_store_url(host), **kwargs)
