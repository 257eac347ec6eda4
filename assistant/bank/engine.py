"""Where the bank database is (BANK_DB_URL, assistant/config.py) and the engines that reach it.

The action server is async, so the actions use SQLAlchemy's asyncio engine (aiosqlite,
asyncpg; repository.py); the operator commands and the seed use a plain engine (sqlite3,
psycopg2) on the same tables.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import sqlalchemy as sa

from assistant import config

ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg2"}


def bank_db_url(url: Optional[str] = None) -> str:
    """The URL given, else BANK_DB_URL, else the SQLite file build/bank.db."""
    return url or config.bank().db_url


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
    cursor.execute("PRAGMA busy_timeout=10000")  # first: switching to WAL may wait for another writer
    cursor.execute("PRAGMA journal_mode=WAL")
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
