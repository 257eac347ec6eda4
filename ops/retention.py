"""Retention and erasure on the tracker store (SQLite or PostgreSQL), with dry runs.

Works on Rasa's `events` table, whichever tracker store class wrote it, through
TRACKER_STORE_URL. Erasure also removes the sender's lines from the logs the
project writes (build/logs). Every command reports counts; --dry-run changes nothing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List

import sqlalchemy as sa

from ops import settings


@dataclass
class Report:
    conversations: int
    events: int
    log_lines: int = 0

    def __str__(self) -> str:
        return f"{self.conversations} conversations, {self.events} events, {self.log_lines} log lines"


def tracker_store_url() -> str:
    from addons.tracker_store import tracker_store_url as configured

    return configured()


def _events(engine: sa.engine.Engine) -> sa.Table:
    return sa.Table("events", sa.MetaData(), autoload_with=engine)


def delete_older_than(days: float, dry_run: bool, url: str = "") -> Report:
    """Delete conversations whose latest event is older than `days` days."""
    engine = sa.create_engine(url or tracker_store_url())
    cutoff = time.time() - days * 86400
    with engine.begin() as connection:
        events = _events(engine)
        stale = (
            sa.select(events.c.sender_id)
            .group_by(events.c.sender_id)
            .having(sa.func.max(events.c.timestamp) < cutoff)
        )
        senders = [row[0] for row in connection.execute(stale)]
        count = _count(connection, events, senders)
        if not dry_run and senders:
            connection.execute(events.delete().where(events.c.sender_id.in_(stale.scalar_subquery())))
    return Report(len(senders), count)


def erase_sender(sender_id: str, dry_run: bool, url: str = "", log_dir: Path = settings.LOG_DIR) -> Report:
    """Erase everything the project stores about one sender (a data-subject request)."""
    engine = sa.create_engine(url or tracker_store_url())
    with engine.begin() as connection:
        events = _events(engine)
        count = _count(connection, events, [sender_id])
        if not dry_run:
            connection.execute(events.delete().where(events.c.sender_id == sender_id))
    return Report(1 if count else 0, count, _erase_from_logs(sender_id, log_dir.glob("*.log"), dry_run))


def _count(connection: sa.engine.Connection, events: sa.Table, senders: List[str]) -> int:
    if not senders:
        return 0
    query = sa.select(sa.func.count()).select_from(events).where(events.c.sender_id.in_(senders))
    return connection.execute(query).scalar_one()


def _erase_from_logs(sender_id: str, logs: Iterable[Path], dry_run: bool) -> int:
    removed = 0
    for log in logs:
        lines = log.read_text(errors="replace").splitlines(keepends=True)
        kept = [line for line in lines if sender_id not in line]
        removed += len(lines) - len(kept)
        if not dry_run and len(kept) != len(lines):
            log.write_text("".join(kept))
    return removed
