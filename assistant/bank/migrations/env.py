"""Alembic's environment for the bank database (run by assistant/bank/migrate.py).

The connection comes from `migrate.py` (config.attributes["connection"]); the models are
the bank's tables (assistant/bank/schema.py) and the agent console's (console/store.py),
which live in the same database.
"""
from __future__ import annotations

from alembic import context

from assistant.bank.schema import metadata as bank_metadata


def _target_metadata():
    try:
        from console.store import metadata as console_metadata
    except ImportError:  # an install without the console: its tables are still migrated
        return [bank_metadata]
    return [bank_metadata, console_metadata]


connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=_target_metadata(), compare_type=True)
with context.begin_transaction():
    context.run_migrations()
