"""The demo bank's database: customers, cards, transactions, disputes and handoffs.

Actions read account facts (card state, transfer status, card payments) only from here,
never from the language model. `BANK_DB_URL` is an SQLAlchemy URL, like
TRACKER_STORE_URL: a SQLite file by default (build/bank.db), PostgreSQL at scale
(`postgresql://user:pass@db:5432/bank`). The action server is async, so the actions use
SQLAlchemy's asyncio engine (aiosqlite, asyncpg) and never block its event loop; the
operator commands and the seed script use the same tables through a plain engine
(sqlite3, psycopg2).

    .venvs/rasa/bin/python -m assistant.bank seed [--date YYYY-MM-DD]   # demo customers (idempotent)
    .venvs/rasa/bin/python -m assistant.bank show [CUSTOMER_ID]          # what the bot will see

Which customer is chatting: only what the channel verified, `metadata["verified_customer_id"]`
(VERIFIED_CUSTOMER_KEY) of the latest message, which addons/channels.py sets from the
socket.io JWT's `customer_id` claim, or from the REST back end's `metadata.customer_id`
when the request carries the REST_CHANNEL_TOKEN bearer token, and removes from anything a
client sends. Without it nobody is identified and the account actions ask the customer
to sign in (actions/forms.py; docs/security.md). There is no default customer: the demo
customer DEMO_CUSTOMER_ID (BANK_DEMO_CUSTOMER_ID) reaches the bot only through the token
the demo page signs (ops/web.py).

Seeded dates are relative to the seed date (default: today), so "yesterday" finds
yesterday's demo transfers; seeding again rewrites the demo customers' rows to the
same content (handoffs, which are operational, are kept).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = f"sqlite:///{ROOT / 'build' / 'bank.db'}"
# The demo customer: the one the demo page's token names (ops/web.py), and `show`'s
# default. Never a default identity for a conversation.
DEMO_CUSTOMER_ID = os.environ.get("BANK_DEMO_CUSTOMER_ID", "C1001")
# The message metadata key of the customer the channel verified (addons/channels.py
# sets it and removes any value a client sends): the only identity the actions trust.
VERIFIED_CUSTOMER_KEY = "verified_customer_id"
# Settings of the old trust rule (channel names trusted with a client's customer_id):
# a service configured with one refuses to start rather than run with another meaning.
OBSOLETE_IDENTITY_SETTINGS = {
    "BANK_CUSTOMER_ID_CHANNELS": "no channel name is trusted with a customer id any more; only an "
                                 "authenticated caller is (REST_CHANNEL_TOKEN, SOCKETIO_JWT_KEY): unset it",
}


def identity_settings_error() -> Optional[str]:
    """Why this process's environment would trust an unauthenticated identity, or None."""
    for name, why in OBSOLETE_IDENTITY_SETTINGS.items():
        if os.environ.get(name, "").strip():
            return f"refusing to start: {name} is set, but {why} (README.md, Configuration)"
    return None


# The action server imports this module at start: it exits here, with one line.
if identity_settings_error():
    raise SystemExit(identity_settings_error())

ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg2"}

# Card and transaction states.
ACTIVE, FROZEN, CANCELLED = "active", "frozen", "cancelled"
CARD_PAYMENT, TRANSFER_OUT, TRANSFER_IN = "card_payment", "transfer_out", "transfer_in"
COMPLETED, PENDING, FAILED, RETURNED = "completed", "pending", "failed", "returned"
OPEN, RELEASED = "open", "released"

metadata = sa.MetaData()

customers = sa.Table(
    "customers", metadata,
    sa.Column("customer_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(120), nullable=False),
    sa.Column("email", sa.String(200)),
    sa.Column("balance_minor", sa.BigInteger, nullable=False, default=0),  # pence
    sa.Column("currency", sa.String(3), nullable=False, default="GBP"),
)

cards = sa.Table(
    "cards", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("customer_id", sa.String(32), sa.ForeignKey("customers.customer_id"), nullable=False, index=True),
    sa.Column("last4", sa.String(4), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # physical | virtual
    sa.Column("status", sa.String(16), nullable=False),  # active | frozen | cancelled
    sa.Column("replacement_ordered", sa.Boolean, nullable=False, default=False),
    sa.Column("updated_at", sa.DateTime),
    sa.UniqueConstraint("customer_id", "last4", name="uq_cards_customer_last4"),
)

transactions = sa.Table(
    "transactions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("reference", sa.String(32), nullable=False, unique=True),
    sa.Column("customer_id", sa.String(32), sa.ForeignKey("customers.customer_id"), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # card_payment | transfer_out | transfer_in
    sa.Column("amount_minor", sa.BigInteger, nullable=False),  # in the currency's minor unit, positive
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("counterparty", sa.String(120), nullable=False),  # merchant, recipient or sender
    sa.Column("card_last4", sa.String(4)),  # card payments
    sa.Column("international", sa.Boolean, nullable=False, default=False),  # transfers
    sa.Column("date", sa.Date, nullable=False),  # when it was made
    sa.Column("status", sa.String(16), nullable=False),  # completed | pending | failed | returned
    sa.Column("status_date", sa.Date),  # when it completed, failed or came back
    sa.Column("detail", sa.String(300)),  # why it is pending / failed / returned
)

disputes = sa.Table(
    "disputes", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("reference", sa.String(32), unique=True),
    sa.Column("customer_id", sa.String(32), sa.ForeignKey("customers.customer_id"), nullable=False, index=True),
    sa.Column("transaction_reference", sa.String(32), nullable=False, index=True),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | closed
    sa.Column("sender_id", sa.String(255)),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

handoffs = sa.Table(
    "handoffs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sender_id", sa.String(255), nullable=False, index=True),
    sa.Column("customer_id", sa.String(32)),
    sa.Column("status", sa.String(16), nullable=False),  # open | released
    sa.Column("reason", sa.String(300), nullable=False),
    sa.Column("requested_at", sa.DateTime, nullable=False),
    sa.Column("released_at", sa.DateTime),
    sa.Column("released_by", sa.String(120)),
)


# -- records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    balance_minor: int
    currency: str


@dataclass(frozen=True)
class Card:
    last4: str
    kind: str
    status: str
    replacement_ordered: bool

    @property
    def label(self) -> str:
        return f"{'virtual card' if self.kind == 'virtual' else 'card'} ending {self.last4}"


@dataclass(frozen=True)
class Transaction:
    reference: str
    kind: str
    amount_minor: int
    currency: str
    counterparty: str
    card_last4: Optional[str]
    international: bool
    date: dt.date
    status: str
    status_date: Optional[dt.date]
    detail: Optional[str]


@dataclass(frozen=True)
class Dispute:
    reference: str
    transaction_reference: str
    status: str


@dataclass(frozen=True)
class Handoff:
    sender_id: str
    customer_id: Optional[str]
    status: str
    reason: str
    requested_at: dt.datetime
    released_at: Optional[dt.datetime]
    released_by: Optional[str]


def _card(row: Any) -> Card:
    return Card(row.last4, row.kind, row.status, bool(row.replacement_ordered))


def _transaction(row: Any) -> Transaction:
    return Transaction(row.reference, row.kind, int(row.amount_minor), row.currency, row.counterparty,
                       row.card_last4, bool(row.international), row.date, row.status, row.status_date, row.detail)


def _handoff(row: Any) -> Handoff:
    return Handoff(row.sender_id, row.customer_id, row.status, row.reason, row.requested_at,
                   row.released_at, row.released_by)


def now() -> dt.datetime:
    """UTC, naive (the columns are `timestamp without time zone`)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


# -- URLs and engines ------------------------------------------------------------------


def bank_db_url(url: Optional[str] = None) -> str:
    """The URL given, else BANK_DB_URL, else the SQLite file build/bank.db."""
    return url or os.environ.get("BANK_DB_URL") or DEFAULT_URL


def display_url(url: Optional[str] = None) -> str:
    """The URL without its password, for messages."""
    return repr(sa.engine.make_url(bank_db_url(url)))


def _url(url: str, drivers: Dict[str, str]) -> sa.engine.URL:
    parsed = sa.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend not in drivers:
        raise ValueError(f"BANK_DB_URL: {', '.join(drivers)} are supported, not '{backend}'")
    return parsed.set(drivername=drivers[backend])


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def sync_engine(url: Optional[str] = None) -> sa.engine.Engine:
    """A plain engine (operator commands, seeding); creates the SQLite file's folder."""
    parsed = _url(bank_db_url(url), SYNC_DRIVERS)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, future=True)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(parsed, future=True, pool_pre_ping=True)


def create_schema(url: Optional[str] = None) -> None:
    engine = sync_engine(url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


# -- the async access the actions use -------------------------------------------------


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
        """Create the tables when they are missing (once per process)."""
        if not self._schema_ready:
            async with self.engine.begin() as connection:
                await connection.run_sync(metadata.create_all)
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


# -- the operators' side: the handoff queue (sync) ------------------------------------


def list_handoffs(url: Optional[str] = None, include_released: bool = False) -> List[Handoff]:
    engine = sync_engine(url)
    try:
        metadata.create_all(engine)
        query = sa.select(handoffs).order_by(handoffs.c.requested_at, handoffs.c.id)
        if not include_released:
            query = query.where(handoffs.c.status == OPEN)
        with engine.connect() as connection:
            return [_handoff(row) for row in connection.execute(query)]
    finally:
        engine.dispose()


def release_handoff(sender_id: str, released_by: str, url: Optional[str] = None) -> Optional[Handoff]:
    """Mark the conversation's open handoff released; the handoff, or None if none was open."""
    engine = sync_engine(url)
    try:
        metadata.create_all(engine)
        with engine.begin() as connection:
            row = connection.execute(sa.select(handoffs).where(
                handoffs.c.sender_id == sender_id, handoffs.c.status == OPEN
            )).first()
            if row is None:
                return None
            connection.execute(sa.update(handoffs).where(handoffs.c.sender_id == sender_id,
                                                         handoffs.c.status == OPEN)
                               .values(status=RELEASED, released_at=now(), released_by=released_by[:120]))
            row = connection.execute(sa.select(handoffs).where(handoffs.c.id == row.id)).first()
        return _handoff(row)
    finally:
        engine.dispose()


# -- demo data -------------------------------------------------------------------------


def demo_rows(today: dt.date) -> Dict[str, List[Dict[str, Any]]]:
    """The demo customers, cards and transactions, dated relative to `today`."""
    def day(n: int) -> dt.date:
        return today - dt.timedelta(days=n)

    people = [
        ("C1001", "Alex Morgan", "alex.morgan@example.com", 1_284_350),
        ("C1002", "Sam Patel", "sam.patel@example.com", 52_075),
        ("C1003", "Jordan Lee", "jordan.lee@example.com", 310_000),
    ]
    card_rows = [
        ("C1001", "4821", "physical", ACTIVE, False),
        ("C1001", "9034", "virtual", ACTIVE, False),
        ("C1001", "1187", "physical", CANCELLED, True),
        ("C1002", "3377", "physical", ACTIVE, False),
        ("C1003", "2043", "physical", ACTIVE, False),
        ("C1003", "5560", "physical", FROZEN, False),
    ]
    # (customer, kind, amount in minor units, currency, counterparty, card, international,
    #  days ago, status, status days ago, detail)
    tx = [
        ("C1001", CARD_PAYMENT, 450, "GBP", "Coffee Corner", "4821", False, 0, PENDING, None,
         "waiting for the merchant to complete it"),
        ("C1001", CARD_PAYMENT, 6218, "GBP", "Tesco Superstore", "4821", False, 1, COMPLETED, 1, None),
        ("C1001", CARD_PAYMENT, 15000, "GBP", "Amazon Marketplace", "4821", False, 2, COMPLETED, 1, None),
        ("C1001", CARD_PAYMENT, 2340, "GBP", "Uber", "4821", False, 3, COMPLETED, 2, None),
        ("C1001", CARD_PAYMENT, 999, "GBP", "StreamFlix", "9034", False, 4, COMPLETED, 3, None),
        ("C1001", CARD_PAYMENT, 1875, "GBP", "Green Grocer", "4821", False, 5, COMPLETED, 4, None),
        ("C1001", CARD_PAYMENT, 1875, "GBP", "Green Grocer", "4821", False, 5, COMPLETED, 4, None),
        ("C1001", CARD_PAYMENT, 4599, "GBP", "Fuel Stop", "4821", False, 8, COMPLETED, 7, None),
        ("C1001", CARD_PAYMENT, 32000, "EUR", "Hotel Miramar Lisboa", "4821", False, 12, COMPLETED, 10, None),
        ("C1001", TRANSFER_OUT, 15000, "GBP", "Jamie Clarke", None, False, 1, COMPLETED, 1, None),
        ("C1001", TRANSFER_OUT, 25000, "GBP", "Priya Shah", None, False, 1, PENDING, None,
         "held for a security check because it is your first payment to this recipient"),
        ("C1001", TRANSFER_OUT, 120000, "EUR", "Hans Müller", None, True, 2, PENDING, None,
         "on its way between the banks"),
        ("C1001", TRANSFER_OUT, 8000, "GBP", "Old Town Lettings", None, False, 4, FAILED, 4,
         "the recipient's sort code and account number don't match an account"),
        ("C1001", TRANSFER_OUT, 50000, "GBP", "Marta Nowak", None, True, 9, RETURNED, 6,
         "the receiving bank sent it back because the account is closed"),
        ("C1001", TRANSFER_IN, 235000, "GBP", "Acme Ltd", None, False, 2, COMPLETED, 2, None),
        ("C1001", TRANSFER_IN, 30000, "GBP", "Chris Morgan", None, False, 0, PENDING, None,
         "being processed by the sending bank"),
        ("C1001", TRANSFER_IN, 40000, "USD", "Oak & Pine Inc", None, True, 1, PENDING, None,
         "on its way between the banks"),
        ("C1002", CARD_PAYMENT, 1200, "GBP", "Page Turner Books", "3377", False, 1, COMPLETED, 1, None),
        ("C1002", TRANSFER_OUT, 7500, "GBP", "Lee Wong", None, False, 3, COMPLETED, 3, None),
        ("C1003", CARD_PAYMENT, 8999, "GBP", "Sports Direct", "2043", False, 2, COMPLETED, 1, None),
        ("C1003", TRANSFER_OUT, 20000, "GBP", "Kim Lee", None, False, 1, COMPLETED, 1, None),
    ]
    rows: Dict[str, List[Dict[str, Any]]] = {"customers": [], "cards": [], "transactions": []}
    for customer_id, name, email, balance in people:
        rows["customers"].append(dict(customer_id=customer_id, name=name, email=email,
                                      balance_minor=balance, currency="GBP"))
    stamp = dt.datetime.combine(today, dt.time(9, 0))
    for customer_id, last4, kind, status, replaced in card_rows:
        rows["cards"].append(dict(customer_id=customer_id, last4=last4, kind=kind, status=status,
                                  replacement_ordered=replaced, updated_at=stamp))
    counts: Dict[str, int] = {}
    for customer_id, kind, amount, currency, counterparty, card, international, ago, status, done, detail in tx:
        counts[customer_id] = counts.get(customer_id, 0) + 1
        rows["transactions"].append(dict(
            reference=f"TX-{customer_id[1:]}-{counts[customer_id]:02d}", customer_id=customer_id, kind=kind,
            amount_minor=amount, currency=currency, counterparty=counterparty, card_last4=card,
            international=international, date=day(ago), status=status,
            status_date=None if done is None else day(done), detail=detail,
        ))
    return rows


def seed(url: Optional[str] = None, today: Optional[dt.date] = None) -> Dict[str, int]:
    """(Re)write the demo customers with their cards and transactions; clears their disputes."""
    rows = demo_rows(today or dt.date.today())
    ids = [row["customer_id"] for row in rows["customers"]]
    engine = sync_engine(url)
    try:
        metadata.create_all(engine)
        with engine.begin() as connection:
            for table in (disputes, transactions, cards, customers):
                connection.execute(sa.delete(table).where(table.c.customer_id.in_(ids)))
            for name in ("customers", "cards", "transactions"):
                connection.execute(sa.insert(metadata.tables[name]), rows[name])
    finally:
        engine.dispose()
    return {name: len(value) for name, value in rows.items()}


def _money(amount_minor: int, currency: str) -> str:
    symbol = {"GBP": "£", "EUR": "€", "USD": "$"}.get(currency)
    text = f"{amount_minor / 100:,.2f}"
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


def show(customer_id: str, url: Optional[str] = None) -> str:
    """A plain-text view of one customer's cards and transactions."""
    engine = sync_engine(url)
    try:
        metadata.create_all(engine)
        with engine.connect() as connection:
            person = connection.execute(sa.select(customers).where(customers.c.customer_id == customer_id)).first()
            if person is None:
                return f"no customer {customer_id} (run `python -m assistant.bank seed`)"
            lines = [f"{person.customer_id} {person.name}  balance {_money(person.balance_minor, person.currency)}"]
            for card in connection.execute(sa.select(cards).where(cards.c.customer_id == customer_id)
                                           .order_by(cards.c.kind, cards.c.last4)):
                lines.append(f"  card {card.last4} {card.kind:8} {card.status:9}"
                             + ("  replacement ordered" if card.replacement_ordered else ""))
            for t in connection.execute(sa.select(transactions).where(transactions.c.customer_id == customer_id)
                                        .order_by(transactions.c.date.desc(), transactions.c.id)):
                lines.append(f"  {t.reference} {t.date} {t.kind:12} {_money(t.amount_minor, t.currency):>11} "
                             f"{t.counterparty:22} {t.status}")
            for d in connection.execute(sa.select(disputes).where(disputes.c.customer_id == customer_id)):
                lines.append(f"  dispute {d.reference} on {d.transaction_reference} ({d.status})")
        return "\n".join(lines)
    finally:
        engine.dispose()


def main(argv: Optional[List[str]] = None) -> int:
    os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    parser = argparse.ArgumentParser(prog="python -m assistant.bank", description="the demo bank database")
    commands = parser.add_subparsers(dest="command", required=True)
    seed_cmd = commands.add_parser("seed", help="create the tables and (re)write the demo customers")
    seed_cmd.add_argument("--date", default="", help="the day the demo data is relative to (default: today)")
    show_cmd = commands.add_parser("show", help="print a customer's cards and transactions")
    show_cmd.add_argument("customer_id", nargs="?", default=DEMO_CUSTOMER_ID)
    args = parser.parse_args(argv)
    try:
        if args.command == "seed":
            today = dt.date.fromisoformat(args.date) if args.date else None
            counts = seed(today=today)
            print(f"seeded {display_url()}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        else:
            print(show(args.customer_id))
    except (sa.exc.SQLAlchemyError, ValueError) as error:
        print(f"error: bank database {display_url()}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
