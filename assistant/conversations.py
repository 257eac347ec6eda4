"""Conversations as Rasa's SQL tracker store keeps them: the read side of its `events` table.

Rasa writes the table (addons/tracker_store.py); the operator's tools and the benchmarks
only read it, and do so here, with neither Rasa nor rasa-sdk imported.
"""
from __future__ import annotations

import os
from typing import Optional

DEFAULT_TRACKER_STORE_URL = "sqlite:///rasa.db"


def tracker_store_url(configured: Optional[str] = None) -> str:
    """TRACKER_STORE_URL, else the endpoint's own URL, else the SQLite file Rasa uses by default."""
    return os.environ.get("TRACKER_STORE_URL") or configured or DEFAULT_TRACKER_STORE_URL
