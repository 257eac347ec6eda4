"""Retention and erasure on the tracker store (SQLite or PostgreSQL), with dry runs.

Works on Rasa's `events` table, whichever tracker store class wrote it, through
TRACKER_STORE_URL. Every command reports counts; --dry-run changes nothing.

Erasing one sender (a data-subject request, `ops erase SENDER_ID`) covers every store
the project writes:

- the tracker store: the conversation's events are deleted;
- the bank database (BANK_DB_URL, assistant/bank/):
  - `handoffs` rows of the conversation are deleted. They are the support queue's
    entries for that conversation (who asked for a person, why, when, who released
    it); without the conversation they serve nothing, so nothing is kept. The agent
    console's rows of the conversation go with them (`console_claims`: who took it,
    when; `console_notes`: the agents' internal notes), counted as handoff rows.
  - `disputes` rows that carry the sender id are anonymised: their `sender_id` is set
    to NULL, and the rest is kept. A dispute is the customer's claim against a card
    payment, which the bank must keep and act on (chargeback deadlines, complaint and
    audit records) whatever happens to the chat it was opened from; it belongs to the
    customer's account (customer_id, the transaction, a fixed reason text, its
    reference), not to the conversation. Only the link to the erased conversation
    goes. Erasing the customer's account data is the bank's own process, not this one.
- the logs: every line naming the sender in the project's log files (build/logs and
  its subfolders, e.g. scale-out/) is removed.

On SQLite the erase runs with `PRAGMA secure_delete` (the deleted rows' bytes are
overwritten, not left in free pages) and checkpoints the write-ahead log afterwards.
Not covered: events already delivered to an event broker's consumers (EVENT_BROKER_URL),
which must honour the erasure themselves, and backups (docs/operations.md).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import sqlalchemy as sa

from assistant import conversations
from ops import settings


@dataclass
class Report:
    conversations: int
    events: int
    log_lines: int = 0
    handoffs: Optional[int] = None  # erase only: handoff rows deleted
    disputes: Optional[int] = None  # erase only: dispute rows anonymised

    def __str__(self) -> str:
        bank = ""
        if self.handoffs is not None:
            bank = f", {self.handoffs} handoffs, {self.disputes} disputes anonymised"
        return f"{self.conversations} conversations, {self.events} events{bank}, {self.log_lines} log lines"


def tracker_store_url() -> str:
    return conversations.tracker_store_url()


def delete_older_than(days: float, dry_run: bool, url: str = "") -> Report:
    """Delete conversations whose latest event is older than `days` days."""
    engine = sa.create_engine(url or tracker_store_url())
    cutoff = time.time() - days * 86400
    with engine.begin() as connection:
        if not conversations.has_events(connection):  # Rasa has stored nothing yet
            return Report(0, 0)
        stale = conversations.stale_senders(cutoff)
        senders = [row[0] for row in connection.execute(stale)]
        count = conversations.event_count(connection, senders)
        if not dry_run and senders:
            conversations.delete_conversations(connection, stale)
            _delete_outbox(connection, senders)
    return Report(len(senders), count)


# Events waiting to be published (addons/outbox.py) carry the sender id too.
_OUTBOX = sa.table("event_outbox", sa.column("sender_id"))


def _delete_outbox(connection: sa.engine.Connection, senders: List[str]) -> None:
    """Delete the senders' events still waiting in the broker's outbox (if there is one)."""
    if _OUTBOX.name in sa.inspect(connection).get_table_names():
        for start in range(0, len(senders), 500):
            connection.execute(_OUTBOX.delete().where(_OUTBOX.c.sender_id.in_(senders[start:start + 500])))


def erase_sender(sender_id: str, dry_run: bool, url: str = "", log_dir: Path = settings.LOG_DIR,
                 bank_url: str = "") -> Report:
    """Erase everything the project stores about one sender (a data-subject request):
    tracker events (and those still waiting in the event broker's outbox), handoff rows,
    the sender id on dispute rows, log lines."""
    engine = sa.create_engine(url or tracker_store_url())
    _secure_delete(engine)
    try:
        with engine.begin() as connection:
            stored = conversations.has_events(connection)
            count = conversations.event_count(connection, [sender_id]) if stored else 0
            if stored and not dry_run:
                conversations.delete_conversations(connection, [sender_id])
            if not dry_run:
                _delete_outbox(connection, [sender_id])
        if not dry_run:
            _checkpoint(engine)
    finally:
        engine.dispose()
    handoffs, disputes = _erase_from_bank(sender_id, dry_run, bank_url)
    logs = sorted(log_dir.rglob("*.log")) if log_dir.is_dir() else []
    return Report(1 if count else 0, count, _erase_from_logs(sender_id, logs, dry_run), handoffs, disputes)


def _secure_delete(engine: sa.engine.Engine) -> None:
    """On SQLite, overwrite what this engine's connections delete (not just free the pages)."""
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", lambda connection, _: connection.execute("PRAGMA secure_delete=ON"))


def _checkpoint(engine: sa.engine.Engine) -> None:
    """On SQLite in WAL mode, copy the erase into the database file and empty the log
    (best effort: a reader that holds an old snapshot keeps its frames until it ends)."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _erase_from_bank(sender_id: str, dry_run: bool, bank_url: str = "") -> Tuple[int, int]:
    """(handoff rows deleted, dispute rows anonymised) in the bank database; (0, 0) when
    there is none (a SQLite file that does not exist, or no such tables)."""
    from assistant import bank

    url = bank.bank_db_url(bank_url or None)
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        return 0, 0
    engine = bank.sync_engine(url)
    _secure_delete(engine)
    try:
        with engine.begin() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            handoffs = disputes = 0
            if "handoffs" in tables:
                where = bank.handoffs.c.sender_id == sender_id
                handoffs = connection.execute(sa.select(sa.func.count()).select_from(bank.handoffs).where(where)).scalar_one()
                if not dry_run:
                    connection.execute(bank.handoffs.delete().where(where))
            from console import store as console_store

            for table in (console_store.notes, console_store.claims):
                if table.name in tables:
                    where = table.c.sender_id == sender_id
                    handoffs += connection.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one()
                    if not dry_run:
                        connection.execute(table.delete().where(where))
            if "disputes" in tables:
                where = bank.disputes.c.sender_id == sender_id
                disputes = connection.execute(sa.select(sa.func.count()).select_from(bank.disputes).where(where)).scalar_one()
                if not dry_run:
                    connection.execute(sa.update(bank.disputes).where(where).values(sender_id=None))
        if not dry_run:
            _checkpoint(engine)
    finally:
        engine.dispose()
    return handoffs, disputes



def _erase_from_logs(sender_id: str, logs: Iterable[Path], dry_run: bool) -> int:
    removed = 0
    for log in logs:
        lines = log.read_text(errors="replace").splitlines(keepends=True)
        kept = [line for line in lines if sender_id not in line]
        removed += len(lines) - len(kept)
        if not dry_run and len(kept) != len(lines):
            log.write_text("".join(kept))
    return removed
