"""The demo bank's database: customers, cards, transactions, disputes and handoffs.

Actions read account facts (card state, transfer status, card payments) only from here,
never from the language model. `BANK_DB_URL` is an SQLAlchemy URL, like
TRACKER_STORE_URL: a SQLite file by default (build/bank.db), PostgreSQL at scale
(`postgresql://user:pass@db:5432/bank`).

- schema.py: the tables, the card and transaction states, the records read from them;
- engine.py: the URL (assistant/config.py) and the engines, sync and async;
- repository.py: `Bank`, the async access the actions use (one per process: `get`);
- handoffs.py: the operators' side of the handoff queue (list, release);
- migrate.py, migrations/: the versioned schema (Alembic), the bank's tables and the agent
  console's, the only way they are made; `migrate` upgrades, and adopts a database the
  older create_all made; `ensure_schema` (a process's first use) upgrades when behind;
- seed.py: the demo customers and a plain-text view of one; __main__.py: the command line

    .venvs/rasa/bin/python -m assistant.bank migrate                    # tables to the newest revision
    .venvs/rasa/bin/python -m assistant.bank seed [--date YYYY-MM-DD]   # migrate + demo customers (idempotent)
    .venvs/rasa/bin/python -m assistant.bank show [CUSTOMER_ID]          # what the bot will see

Which customer is chatting: only what the channel verified (config.VERIFIED_CUSTOMER_KEY
of the latest message; docs/security.md). There is no default customer: the demo
customer (BANK_DEMO_CUSTOMER_ID) reaches the bot only through the token the demo page
signs (ops/web.py).

Everything is importable from the package: `from assistant import bank; bank.get()`.
"""
from assistant.bank.engine import bank_db_url, display_url, sync_engine
from assistant.bank.handoffs import list_handoffs, release_handoff
from assistant.bank.repository import Bank, get, use
from assistant.bank.schema import (
    ACTIVE,
    CANCELLED,
    CARD_PAYMENT,
    COMPLETED,
    FAILED,
    FROZEN,
    OPEN,
    PENDING,
    RELEASED,
    RETURNED,
    TRANSFER_IN,
    TRANSFER_OUT,
    Card,
    Customer,
    Dispute,
    Handoff,
    Transaction,
    cards,
    customers,
    disputes,
    handoffs,
    metadata,
    now,
    transactions,
)
from assistant.bank.migrate import ensure_schema
from assistant.bank.seed import demo_rows, seed, show

__all__ = [
    "ACTIVE", "CANCELLED", "CARD_PAYMENT", "COMPLETED", "FAILED", "FROZEN", "OPEN", "PENDING", "RELEASED",
    "RETURNED", "TRANSFER_IN", "TRANSFER_OUT", "Bank", "Card", "Customer", "Dispute", "Handoff", "Transaction",
    "bank_db_url", "cards", "customers", "demo_rows", "display_url", "disputes", "ensure_schema", "get",
    "handoffs", "list_handoffs", "metadata", "now", "release_handoff", "seed", "show", "sync_engine",
    "transactions", "use",
]
