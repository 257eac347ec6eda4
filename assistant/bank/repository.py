"""Async access to the bank database, the one the actions use: one `Bank` per process (`get`)."""
from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import sqlalchemy as sa

from assistant.bank.engine import ASYNC_DRIVERS, _sqlite_pragmas, _url, bank_db_url
from assistant.bank.migrate import ensure_schema
from assistant.bank.schema import (
    ACTIVE,
    CANCELLED,
    FROZEN,
    OPEN,
    Card,
    Customer,
    Dispute,
    Handoff,
    Transaction,
    _card,
    _handoff,
    _transaction,
    cards,
    customers,
    disputes,
    handoffs,
    now,
    transactions,
)


class Bank:
    """Async access to the bank database; one per process (see `get`)."""

    def __init__(self, url: Optional[str] = None) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        self.url = bank_db_url(url)
        parsed = _url(self.url, ASYNC_DRIVERS)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_async_engine(parsed, connect_args={"timeout": 10})
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(parsed, pool_pre_ping=True)
        self._schema_ready = False

    async def close(self) -> None:
        await self.engine.dispose()

    async def ensure_schema(self) -> None:
        """Upgrade the database to the newest revision when it is missing or behind (once
        per process; migrate.py's ensure_schema, in a thread: the event loop never waits on it)."""
        if not self._schema_ready:
            await asyncio.get_running_loop().run_in_executor(None, ensure_schema, self.url)
            self._schema_ready = True

    async def _all(self, statement: Any) -> List[Any]:
        await self.ensure_schema()
        async with self.engine.connect() as connection:
            return list((await connection.execute(statement)).fetchall())

    # customers and cards

    async def customer(self, customer_id: str) -> Optional[Customer]:
        rows = await self._all(sa.select(customers).where(customers.c.customer_id == customer_id))
        return Customer(rows[0].customer_id, rows[0].name, int(rows[0].balance_minor), rows[0].currency) if rows else None

    async def cards(self, customer_id: str, include_cancelled: bool = False) -> List[Card]:
        """The customer's cards, physical first, then by last four digits."""
        query = sa.select(cards).where(cards.c.customer_id == customer_id)
        if not include_cancelled:
            query = query.where(cards.c.status != CANCELLED)
        rows = await self._all(query.order_by(cards.c.kind, cards.c.last4))
        return [_card(row) for row in rows]

    async def card(self, customer_id: str, last4: str) -> Optional[Card]:
        rows = await self._all(
            sa.select(cards).where(cards.c.customer_id == customer_id, cards.c.last4 == last4)
        )
        return _card(rows[0]) if rows else None

    async def _set_card(self, customer_id: str, last4: str, values: Dict[str, Any],
                        only_if: Sequence[str]) -> Optional[Card]:
        await self.ensure_schema()
        async with self.engine.begin() as connection:
            await connection.execute(
                sa.update(cards)
                .where(cards.c.customer_id == customer_id, cards.c.last4 == last4, cards.c.status.in_(only_if))
                .values(**values, updated_at=now())
            )
            row = (await connection.execute(
                sa.select(cards).where(cards.c.customer_id == customer_id, cards.c.last4 == last4)
            )).first()
        return _card(row) if row else None

    async def freeze_card(self, customer_id: str, last4: str) -> Optional[Card]:
        """Freeze an active card (a frozen or cancelled one stays as it is); the card after."""
        return await self._set_card(customer_id, last4, {"status": FROZEN}, only_if=[ACTIVE])

    async def cancel_and_replace(self, customer_id: str, last4: str) -> Optional[Card]:
        """Cancel the card for good and order its free replacement; the card after."""
        return await self._set_card(customer_id, last4, {"status": CANCELLED, "replacement_ordered": True},
                                    only_if=[ACTIVE, FROZEN])

    # transactions

    async def transactions(
        self,
        customer_id: str,
        kinds: Iterable[str],
        amount_minor: Optional[int] = None,
        on: Optional[dt.date] = None,
        since: Optional[dt.date] = None,
        limit: Optional[int] = None,
    ) -> List[Transaction]:
        """The customer's transactions of these kinds, newest first."""
        query = sa.select(transactions).where(
            transactions.c.customer_id == customer_id, transactions.c.kind.in_(list(kinds))
        )
        if amount_minor is not None:
            query = query.where(transactions.c.amount_minor == amount_minor)
        if on is not None:
            query = query.where(transactions.c.date == on)
        if since is not None:
            query = query.where(transactions.c.date >= since)
        query = query.order_by(transactions.c.date.desc(), transactions.c.id.desc())
        if limit:
            query = query.limit(limit)
        return [_transaction(row) for row in await self._all(query)]

    async def transaction(self, customer_id: str, reference: str) -> Optional[Transaction]:
        rows = await self._all(sa.select(transactions).where(
            transactions.c.customer_id == customer_id, transactions.c.reference == reference
        ))
        return _transaction(rows[0]) if rows else None

    # disputes

    async def open_dispute(self, customer_id: str, transaction_reference: str, reason: str,
                           sender_id: Optional[str] = None) -> Tuple[Dispute, bool]:
        """(the dispute, True) when opened now; (the open one, False) when it already exists."""
        await self.ensure_schema()
        async with self.engine.begin() as connection:
            existing = (await connection.execute(sa.select(disputes).where(
                disputes.c.customer_id == customer_id,
                disputes.c.transaction_reference == transaction_reference,
                disputes.c.status == OPEN,
            ))).first()
            if existing is not None:
                return Dispute(existing.reference, existing.transaction_reference, existing.status), False
            result = await connection.execute(sa.insert(disputes).values(
                customer_id=customer_id, transaction_reference=transaction_reference, reason=reason,
                status=OPEN, sender_id=sender_id, created_at=now(),
            ))
            dispute_id = result.inserted_primary_key[0]
            reference = f"DSP-{dispute_id:06d}"
            await connection.execute(sa.update(disputes).where(disputes.c.id == dispute_id).values(reference=reference))
        return Dispute(reference, transaction_reference, OPEN), True

    async def disputes_of(self, customer_id: str) -> List[Dispute]:
        rows = await self._all(sa.select(disputes).where(disputes.c.customer_id == customer_id).order_by(disputes.c.id))
        return [Dispute(row.reference, row.transaction_reference, row.status) for row in rows]

    # handoffs

    async def open_handoff(self, sender_id: str, customer_id: Optional[str], reason: str) -> Tuple[Handoff, bool]:
        """Queue the conversation for a person: (handoff, True), or (the open one, False)."""
        await self.ensure_schema()
        async with self.engine.begin() as connection:
            existing = (await connection.execute(sa.select(handoffs).where(
                handoffs.c.sender_id == sender_id, handoffs.c.status == OPEN
            ))).first()
            if existing is not None:
                return _handoff(existing), False
            values = dict(sender_id=sender_id, customer_id=customer_id, status=OPEN, reason=reason[:300],
                          requested_at=now())
            await connection.execute(sa.insert(handoffs).values(**values))
        return Handoff(**values, released_at=None, released_by=None), True

    async def open_handoff_of(self, sender_id: str) -> Optional[Handoff]:
        rows = await self._all(sa.select(handoffs).where(handoffs.c.sender_id == sender_id, handoffs.c.status == OPEN))
        return _handoff(rows[0]) if rows else None


_banks: Dict[str, Bank] = {}


def get() -> Bank:
    """The process's Bank for BANK_DB_URL (tests may `use` another one)."""
    url = bank_db_url()
    if url not in _banks:
        _banks[url] = Bank(url)
    return _banks[url]


def use(bank: Optional[Bank]) -> None:
    """Make `get()` return this bank (None: forget it); for tests."""
    url = bank_db_url()
    if bank is None:
        _banks.pop(url, None)
    else:
        _banks[url] = bank

