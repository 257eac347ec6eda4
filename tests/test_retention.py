"""Retention and erasure on SQLite and PostgreSQL, dry runs first."""
from __future__ import annotations

import asyncio
import time
import uuid

import sqlalchemy as sa
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from addons import outbox
from addons.tracker_store import AsyncSQLTrackerStore
from ops import retention


def _store(url, sender, age_days):
    when = time.time() - age_days * 86400
    events = [UserUttered("hi", intent={"name": "greet", "confidence": 1.0}, timestamp=when),
              ActionExecuted("utter_greet", timestamp=when + 1),
              BotUttered("Hello!", timestamp=when + 2)]

    async def save():
        store = AsyncSQLTrackerStore(domain=Domain.empty(), host=url)
        await store.save(DialogueStateTracker.from_events(sender, events))
        await store.close()

    asyncio.run(save())


def _count(url, sender):
    with sa.create_engine(url).connect() as connection:
        return connection.execute(
            sa.text("SELECT COUNT(*) FROM events WHERE sender_id = :s"), {"s": sender}
        ).scalar()


def test_retention_deletes_only_old_conversations(store_url, monkeypatch):
    monkeypatch.delenv("TRACKER_STORE_URL", raising=False)
    old, recent = f"old-{uuid.uuid4().hex}", f"recent-{uuid.uuid4().hex}"
    _store(store_url, old, age_days=400)
    _store(store_url, recent, age_days=1)

    dry = retention.delete_older_than(365, dry_run=True, url=store_url)
    assert dry.conversations >= 1 and dry.events >= 3
    assert _count(store_url, old) == 3  # the dry run changed nothing
    done = retention.delete_older_than(365, dry_run=False, url=store_url)
    assert done.events == dry.events
    assert _count(store_url, old) == 0 and _count(store_url, recent) == 3


def test_erase_removes_one_sender_everywhere(store_url, tmp_path, monkeypatch):
    monkeypatch.delenv("TRACKER_STORE_URL", raising=False)
    target, other = f"erase-{uuid.uuid4().hex}", f"keep-{uuid.uuid4().hex}"
    _store(store_url, target, age_days=0)
    _store(store_url, other, age_days=0)
    log = tmp_path / "actions.log"
    log.write_text(f"LLM reply failed for {target}: timeout\nstarted\nLLM reply failed for {other}: timeout\n")

    no_bank = f"sqlite:///{tmp_path / 'no-bank.db'}"  # not there: nothing to erase, nothing made
    dry = retention.erase_sender(target, dry_run=True, url=store_url, log_dir=tmp_path, bank_url=no_bank)
    assert (dry.conversations, dry.events, dry.log_lines, dry.handoffs, dry.disputes) == (1, 3, 1, 0, 0)
    assert _count(store_url, target) == 3 and target in log.read_text()
    # events still waiting for the broker (addons/outbox.py) are erased too
    engine = sa.create_engine(store_url)
    outbox.METADATA.create_all(engine)
    with engine.begin() as connection:
        connection.execute(outbox.INSERT, [{"sender_id": s, "body": "{}", "created_at": time.time()}
                                           for s in (target, target, other)])
    retention.erase_sender(target, dry_run=False, url=store_url, log_dir=tmp_path, bank_url=no_bank)
    assert not (tmp_path / "no-bank.db").exists()
    assert _count(store_url, target) == 0 and _count(store_url, other) == 3
    with engine.begin() as connection:
        waiting = [row[0] for row in connection.execute(sa.select(outbox.OUTBOX.c.sender_id))]
        connection.execute(outbox.OUTBOX.delete().where(outbox.OUTBOX.c.sender_id == other))  # shared database
    engine.dispose()
    assert target not in waiting and other in waiting
    assert target not in log.read_text() and other in log.read_text()


def test_erase_deletes_handoffs_and_anonymises_disputes(bank_url, tmp_path, monkeypatch):
    """The bank database (SQLite, then PostgreSQL): the sender's handoff rows go, its
    disputes stay (the bank must keep them) without the sender id; other senders' rows
    are untouched. Logs in subfolders of the log folder are erased too."""
    from assistant import bank

    monkeypatch.delenv("TRACKER_STORE_URL", raising=False)
    bank.seed(bank_url)
    store_url = f"sqlite:///{tmp_path / 'tracker.db'}"
    target, other = f"erase-{uuid.uuid4().hex}", f"keep-{uuid.uuid4().hex}"
    _store(store_url, target, age_days=0)

    async def rows() -> None:
        db = bank.Bank(bank_url)
        try:
            await db.open_handoff(target, "C1001", "asked for a person")
            await db.open_handoff(other, "C1002", "asked for a person")
            await db.open_dispute("C1001", "TX-1001-03", "card payment not recognised", target)
            await db.open_dispute("C1001", "TX-1001-02", "card payment not recognised", other)
        finally:
            await db.close()

    asyncio.run(rows())
    (tmp_path / "logs" / "scale-out").mkdir(parents=True)
    (tmp_path / "logs" / "scale-out" / "rasa-1.log").write_text(f"turn of {target}\nturn of {other}\n")

    def senders(table):
        engine = bank.sync_engine(bank_url)
        try:
            with engine.connect() as connection:
                return sorted(str(row.sender_id) for row in connection.execute(sa.select(table)))
        finally:
            engine.dispose()

    dry = retention.erase_sender(target, dry_run=True, url=store_url, log_dir=tmp_path / "logs", bank_url=bank_url)
    assert (dry.events, dry.handoffs, dry.disputes, dry.log_lines) == (3, 1, 1, 1)
    assert str(dry) == "1 conversations, 3 events, 1 handoffs, 1 disputes anonymised, 1 log lines"
    assert target in senders(bank.handoffs) and target in senders(bank.disputes)

    done = retention.erase_sender(target, dry_run=False, url=store_url, log_dir=tmp_path / "logs", bank_url=bank_url)
    assert (done.handoffs, done.disputes) == (1, 1)
    assert senders(bank.handoffs) == [other]
    assert sorted(senders(bank.disputes)) == sorted(["None", other])  # kept, without the link
    engine = bank.sync_engine(bank_url)
    try:
        with engine.connect() as connection:
            kept = connection.execute(sa.select(bank.disputes).where(bank.disputes.c.sender_id.is_(None))).one()
    finally:
        engine.dispose()
    assert (kept.customer_id, kept.transaction_reference, kept.status) == ("C1001", "TX-1001-03", "open")
    assert (tmp_path / "logs" / "scale-out" / "rasa-1.log").read_text() == f"turn of {other}\n"
