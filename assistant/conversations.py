"""Conversations as Rasa's SQL tracker store keeps them: the read side of its `events` table.

Rasa writes the table (addons/tracker_store.py); the operator's tools and the benchmarks
only read it, and do so here, with neither Rasa nor rasa-sdk imported.
"""
from __future__ import annotations

from typing import Optional

from assistant import config

DEFAULT_TRACKER_STORE_URL = config.DEFAULT_TRACKER_STORE_URL


def tracker_store_url(configured: Optional[str] = None) -> str:
    """TRACKER_STORE_URL, else the endpoint's own URL, else the SQLite file Rasa uses by default."""
    return config.tracker_store().resolved_url(configured)
