"""Versioned schema migrations of the bank database (Alembic; assistant/bank/migrations/).

`python -m assistant.bank migrate` upgrades BANK_DB_URL to the newest revision: the bank's
tables (schema.py) and the agent console's (console/store.py). It is idempotent, works on
SQLite and PostgreSQL, and adopts a database that the older `create_all` made: the first
revision creates only the tables that are missing and keeps the rows of those that exist.
Several processes (replicas, a job and a replica) may run it at the same time: one
migrates, the others wait and then find nothing to do (PostgreSQL: an advisory lock;
SQLite: the database's write lock, taken with BEGIN IMMEDIATE).

The migrations are the only way the tables are made: a process that finds the database
missing or behind (the action server's first query, `ops handoffs`, the agent console)
calls `ensure_schema`, which upgrades it in the same way, so a database made by first
use is exactly the migrated one, with its alembic_version row.

A new revision: change the tables, then (from the repository root)
    .venvs/rasa/bin/python -m assistant.bank revision -m "what changes"
writes assistant/bank/migrations/versions/<id>_<what>.py from the difference; read it
before committing.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Optional, Tuple

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext

from assistant.bank.engine import sync_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock's key: any fixed number no other part of the system uses.
LOCK_KEY = 0x6C616B65  # "lake"
SQLITE_LOCKED_RETRY_S = 60.0


def alembic_config(connection: Optional[sa.engine.Connection] = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def current_revision(connection: sa.engine.Connection) -> Optional[str]:
    return MigrationContext.configure(connection).get_current_revision()


@functools.lru_cache(maxsize=None)
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def migrate(url: Optional[str] = None, revision: str = "head") -> Tuple[Optional[str], Optional[str]]:
    """Upgrade the bank database to `revision`; (revision before, revision after). On
    SQLite, a process that finds the database locked by another one's migration for longer
    than the busy timeout (a loaded machine) tries again, for up to a minute."""
    deadline = time.monotonic() + SQLITE_LOCKED_RETRY_S
    while True:
        try:
            return _migrate(url, revision)
        except sa.exc.OperationalError as error:
            if "database is locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _migrate(url: Optional[str], revision: str) -> Tuple[Optional[str], Optional[str]]:
    engine = sync_engine(url)
    try:
        with engine.begin() as connection:
            # One migrating process at a time, until this transaction ends.
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            elif connection.dialect.name == "sqlite":  # the DDL too is in this transaction
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            before = current_revision(connection)
            command.upgrade(alembic_config(connection), revision)
            return before, current_revision(connection)
    finally:
        engine.dispose()


def ensure_schema(url: Optional[str] = None) -> None:
    """Upgrade the database to the newest revision unless it is there already (a cheap
    read of alembic_version first): what a process does before it first uses the tables."""
    engine = sync_engine(url)
    try:
        with engine.connect() as connection:
            if current_revision(connection) == head_revision():
                return
    finally:
        engine.dispose()
    migrate(url)


def revision(message: str, url: Optional[str] = None) -> None:
    """Autogenerate a revision from the difference between the models and a migrated database."""
    engine = sync_engine(url)
    try:
        with engine.begin() as connection:
            command.revision(alembic_config(connection), message=message, autogenerate=True)
    finally:
        engine.dispose()
