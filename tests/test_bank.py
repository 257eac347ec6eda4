"""The demo bank database (assistant/bank/) on SQLite and PostgreSQL: the seed, the
async queries and updates the actions use, the operators' handoff queue."""
from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from assistant import bank
from assistant.bank.__main__ import main as bank_cli

TODAY = dt.date(2026, 3, 11)  # a Wednesday


def run(url, scenario):
    """Run `scenario(db)` on a fresh Bank in its own event loop, then close it."""
    async def main():
        db = bank.Bank(url)
        try:
            return await scenario(db)
        finally:
            await db.close()

    return asyncio.run(main())


def _rows(url):
    engine = bank.sync_engine(url)
    try:
        with engine.connect() as connection:
            # everything but the surrogate keys (PostgreSQL's sequences move on)
            return {name: sorted(tuple(v for k, v in r._mapping.items() if k != "id")
                                 for r in connection.execute(sa.select(table)))
                    for name, table in bank.metadata.tables.items() if name != "handoffs"}
    finally:
        engine.dispose()


def test_default_url_is_a_file_under_build_and_env_wins(monkeypatch):
    monkeypatch.delenv("BANK_DB_URL", raising=False)
    assert bank.bank_db_url() == f"sqlite:///{Path(__file__).resolve().parent.parent / 'build' / 'bank.db'}"
    monkeypatch.setenv("BANK_DB_URL", "postgresql://u:secret@db:5432/bank")
    assert bank.bank_db_url() == "postgresql://u:secret@db:5432/bank"
    assert "secret" not in bank.display_url()
    with pytest.raises(ValueError, match="not 'mysql'"):
        bank.Bank("mysql://db/bank")


def test_seed_is_deterministic_and_idempotent(bank_url):
    counts = bank.seed(bank_url, today=TODAY)
    assert counts == {"customers": 3, "cards": 6, "transactions": 21}
    first = _rows(bank_url)
    assert bank.seed(bank_url, today=TODAY) == counts
    assert _rows(bank_url) == first


def test_seed_resets_the_demo_state_but_keeps_handoffs(bank_url):
    bank.seed(bank_url, today=TODAY)

    async def change(db):
        await db.freeze_card("C1001", "4821")
        await db.open_dispute("C1001", "TX-1001-03", "card payment not recognised")
        await db.open_handoff("web-1", "C1001", "asked for a person")

    run(bank_url, change)
    bank.seed(bank_url, today=TODAY)

    async def check(db):
        return await db.card("C1001", "4821"), await db.disputes_of("C1001")

    card, disputes = run(bank_url, check)
    assert card.status == bank.ACTIVE and disputes == []
    assert [h.sender_id for h in bank.list_handoffs(bank_url)] == ["web-1"]


def test_cards_freeze_and_replace(bank_url):
    bank.seed(bank_url, today=TODAY)

    async def scenario(db):
        listed = await db.cards("C1001")
        everything = await db.cards("C1001", include_cancelled=True)
        frozen = await db.freeze_card("C1001", "4821")
        again = await db.freeze_card("C1001", "4821")
        cancelled = await db.freeze_card("C1001", "1187")
        replaced = await db.cancel_and_replace("C1001", "4821")
        missing = await db.freeze_card("C1001", "0000")
        others = await db.card("C1002", "4821")
        return listed, everything, frozen, again, cancelled, replaced, missing, others

    listed, everything, frozen, again, cancelled, replaced, missing, others = run(bank_url, scenario)
    assert listed == [bank.Card("4821", "physical", bank.ACTIVE, False), bank.Card("9034", "virtual", bank.ACTIVE, False)]
    assert [c.last4 for c in everything] == ["1187", "4821", "9034"]
    assert frozen == again == bank.Card("4821", "physical", bank.FROZEN, False)
    assert cancelled == bank.Card("1187", "physical", bank.CANCELLED, True)  # unchanged
    assert replaced == bank.Card("4821", "physical", bank.CANCELLED, True)
    assert missing is None and others is None
    assert listed[1].label == "virtual card ending 9034" and listed[0].label == "card ending 4821"


def test_transactions_by_kind_amount_and_date(bank_url):
    bank.seed(bank_url, today=TODAY)
    yesterday = TODAY - dt.timedelta(days=1)

    async def scenario(db):
        return (
            await db.transactions("C1001", [bank.TRANSFER_OUT], on=yesterday),
            await db.transactions("C1001", [bank.TRANSFER_OUT], amount_minor=25000, on=yesterday),
            await db.transactions("C1001", [bank.CARD_PAYMENT], amount_minor=1875),
            await db.transactions("C1001", [bank.CARD_PAYMENT], limit=2),
            await db.transactions("C1002", [bank.TRANSFER_IN]),
            await db.transaction("C1001", "TX-1001-11"),
            await db.transaction("C1002", "TX-1001-11"),
        )

    out, exact, twice, newest, none, one, not_theirs = run(bank_url, scenario)
    assert [(t.counterparty, t.status) for t in out] == [("Priya Shah", "pending"), ("Jamie Clarke", "completed")]
    assert exact == [bank.Transaction(
        "TX-1001-11", bank.TRANSFER_OUT, 25000, "GBP", "Priya Shah", None, False, yesterday, bank.PENDING, None,
        "held for a security check because it is your first payment to this recipient")]
    assert [t.reference for t in twice] == ["TX-1001-07", "TX-1001-06"]
    assert [t.reference for t in newest] == ["TX-1001-01", "TX-1001-02"]
    assert none == [] and one == exact[0] and not_theirs is None


def test_disputes_get_sequential_references_once_per_payment(bank_url):
    bank.seed(bank_url, today=TODAY)

    async def scenario(db):
        first = await db.open_dispute("C1001", "TX-1001-03", "card payment not recognised", "web-1")
        again = await db.open_dispute("C1001", "TX-1001-03", "card payment not recognised", "web-1")
        second = await db.open_dispute("C1001", "TX-1001-08", "card payment not recognised")
        return first, again, second, await db.disputes_of("C1001")

    first, again, second, listed = run(bank_url, scenario)
    assert first == (bank.Dispute("DSP-000001", "TX-1001-03", "open"), True)
    assert again == (bank.Dispute("DSP-000001", "TX-1001-03", "open"), False)
    assert second == (bank.Dispute("DSP-000002", "TX-1001-08", "open"), True)
    assert listed == [first[0], second[0]]


def test_handoff_queue_open_list_release(bank_url):
    async def scenario(db):  # no seed needed: the tables are created on first use
        first = await db.open_handoff("web-1", "C1001", "asked for a person")
        again = await db.open_handoff("web-1", "C1001", "asked again")
        await db.open_handoff("web-2", None, "asked for a person while asking about a transfer")
        return first, again, await db.open_handoff_of("web-1"), await db.open_handoff_of("nobody")

    first, again, current, nobody = run(bank_url, scenario)
    assert first[1] is True and again[1] is False and again[0].reason == "asked for a person"
    assert current.status == bank.OPEN and nobody is None
    assert [h.sender_id for h in bank.list_handoffs(bank_url)] == ["web-1", "web-2"]

    released = bank.release_handoff("web-1", "ana", bank_url)
    assert (released.status, released.released_by) == (bank.RELEASED, "ana")
    assert released.released_at >= released.requested_at
    assert bank.release_handoff("web-1", "ana", bank_url) is None
    assert [h.sender_id for h in bank.list_handoffs(bank_url)] == ["web-2"]
    assert [h.status for h in bank.list_handoffs(bank_url, include_released=True)] == ["released", "open"]
    # a new request after the release queues the conversation again
    assert run(bank_url, lambda db: db.open_handoff("web-1", "C1001", "asked for a person"))[1] is True


def test_seed_and_show_commands(bank_url, monkeypatch, capsys):
    monkeypatch.setenv("BANK_DB_URL", bank_url)
    assert bank_cli(["seed", "--date", TODAY.isoformat()]) == 0
    assert "customers=3, cards=6, transactions=21" in capsys.readouterr().out
    assert bank_cli(["show", "C1002"]) == 0
    shown = capsys.readouterr().out
    assert "C1002 Sam Patel" in shown and "card 3377 physical active" in shown
    assert bank_cli(["show", "C9999"]) == 0
    assert "no customer C9999" in capsys.readouterr().out
