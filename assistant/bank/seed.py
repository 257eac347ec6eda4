"""The demo customers C1001-C1003 with their cards and transactions, and a plain-text view.

Seeded dates are relative to the seed date (default: today), so "yesterday" finds
yesterday's demo transfers; seeding again rewrites the demo customers' rows to the
same content (handoffs, which are operational, are kept).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List, Optional

import sqlalchemy as sa

from assistant.bank.engine import sync_engine
from assistant.bank.migrate import ensure_schema, migrate
from assistant.bank.schema import (
    ACTIVE,
    CANCELLED,
    CARD_PAYMENT,
    COMPLETED,
    FAILED,
    FROZEN,
    PENDING,
    RETURNED,
    TRANSFER_IN,
    TRANSFER_OUT,
    cards,
    customers,
    disputes,
    metadata,
    transactions,
)


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
    migrate(url)
    engine = sync_engine(url)
    try:
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
    ensure_schema(url)
    engine = sync_engine(url)
    try:
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

