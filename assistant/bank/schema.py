"""The bank database's tables and the records the actions read from them.

Amounts are in the currency's minor unit (pence); dates are the bank's calendar days;
times are naive UTC (the columns are `timestamp without time zone`).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Optional

import sqlalchemy as sa

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

