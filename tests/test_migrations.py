"""The bank database's schema migrations (assistant/bank/migrate.py, migrations/) on a real
SQLite file and a real PostgreSQL server (its own schema, so other tests' tables stay):

- a fresh database migrates to the newest revision with `python -m assistant.bank migrate`,
  and a second run changes nothing;
- a database made by the older `create_all`, with rows, is adopted: rows kept, missing
  tables created, the revision recorded;
- the migrated tables equal the models (Alembic's autogenerate finds no difference), so
  a change of the models without a migration fails here;
- a database made by a process's first use (the action server's first query, the handoff
  queue, `show`, the agent console, the seed) is the migrated one: at the newest
  revision, with its alembic_version row; nothing makes tables but the migrations;
- two migrations at once (two replicas starting), and two first uses at once, succeed.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from assistant import bank
from assistant.bank import migrate as migrations
from console import store
from ops import settings

SCHEMA = "migrations_test"
TABLES = {"customers", "cards", "transactions", "disputes", "handoffs",
          "console_agents", "console_sessions", "console_claims", "console_notes", "alembic_version"}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bank.db'}"
    url = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as db:
            db.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            db.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
    except sa.exc.OperationalError as error:
        pytest.skip(f"no PostgreSQL at {url} (set TEST_POSTGRES_URL): {error.__class__.__name__}")
    finally:
        engine.dispose()
    return url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{SCHEMA}"


def run_migrate(url: str) -> str:
    result = subprocess.run([sys.executable, "-m", "assistant.bank", "migrate"], capture_output=True, text=True,
                            cwd=settings.ROOT, env={**os.environ, "BANK_DB_URL": url}, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def tables(url: str) -> set:
    engine = bank.sync_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def differences(url: str) -> list:
    engine = bank.sync_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, [bank.metadata, store.metadata])
    finally:
        engine.dispose()


def test_a_fresh_database_migrates_to_the_models_once(db_url):
    first = run_migrate(db_url)
    assert first.endswith(f"no revision -> {migrations.head_revision()}"), first
    assert tables(db_url) == TABLES
    assert differences(db_url) == []
    second = run_migrate(db_url)
    assert second.endswith(f"already at {migrations.head_revision()}"), second
    # the demo seed runs on the migrated tables
    assert bank.seed(db_url)["customers"] == 3


def test_a_database_made_by_create_all_is_adopted_with_its_rows(db_url):
    engine = bank.sync_engine(db_url)
    try:
        bank.metadata.create_all(engine)  # what `seed` and the action server did before migrations
        with engine.begin() as db:
            db.execute(sa.insert(bank.customers).values(customer_id="C9", name="Old Row", balance_minor=5,
                                                        currency="GBP"))
            db.execute(sa.insert(bank.handoffs).values(sender_id="s-old", status=bank.OPEN, reason="kept",
                                                       requested_at=bank.now()))
    finally:
        engine.dispose()
    assert "alembic_version" not in tables(db_url)
    assert run_migrate(db_url).endswith(f"no revision -> {migrations.head_revision()}")
    assert tables(db_url) == TABLES  # the console's tables were missing: created
    assert differences(db_url) == []
    engine = bank.sync_engine(db_url)
    try:
        with engine.connect() as db:
            assert db.execute(sa.select(bank.customers.c.name)).scalars().all() == ["Old Row"]
            assert db.execute(sa.select(bank.handoffs.c.reason)).scalars().all() == ["kept"]
    finally:
        engine.dispose()


def revision_of(url: str):
    engine = bank.sync_engine(url)
    try:
        with engine.connect() as connection:
            return migrations.current_revision(connection)
    finally:
        engine.dispose()


def test_the_models_equal_the_migrations(db_url):
    """Fails when a table or column of schema.py or console/store.py has no migration
    (`python -m assistant.bank revision -m "..."` writes it)."""
    migrations.migrate(db_url)
    assert differences(db_url) == []


def test_a_column_added_without_a_migration_is_a_difference(tmp_path):
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    migrations.migrate(url)
    changed = sa.MetaData()
    for table in bank.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["customers"].append_column(sa.Column("nickname", sa.String(40)))
    engine = bank.sync_engine(url)
    try:
        with engine.connect() as connection:
            found = compare_metadata(MigrationContext.configure(connection), [changed, store.metadata])
    finally:
        engine.dispose()
    assert [(d[0], d[2], d[3].name) for d in found] == [("add_column", "customers", "nickname")]


async def _first_query(url: str) -> None:
    repository = bank.Bank(url)
    try:
        if url.startswith("sqlite"):
            assert await repository.customer("C1001") is None
        else:  # what the first query awaits (asyncpg does not take this test's search_path option)
            await repository.ensure_schema()
    finally:
        await repository.close()


FIRST_USES = {
    "repository": lambda url: asyncio.run(_first_query(url)),  # the action server's first query
    "handoff queue": lambda url: bank.list_handoffs(url),  # `python -m ops handoffs`
    "release": lambda url: bank.release_handoff("nobody", "ops", url),
    "show": lambda url: bank.show("C1001", url),
    "console": lambda url: store.Store(url).close(),
    "seed": lambda url: bank.seed(url),
}


@pytest.mark.parametrize("first_use", FIRST_USES)
def test_a_database_made_by_first_use_is_the_migrated_one(db_url, first_use):
    FIRST_USES[first_use](db_url)
    assert revision_of(db_url) == migrations.head_revision()
    assert tables(db_url) == TABLES
    assert differences(db_url) == []
    assert run_migrate(db_url).endswith(f"already at {migrations.head_revision()}")


def test_a_database_behind_is_upgraded_by_first_use(tmp_path):
    """A process that finds the database at an older revision upgrades it (here: none,
    a database the older create_all made)."""
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    engine = bank.sync_engine(url)
    try:
        bank.metadata.create_all(engine)
    finally:
        engine.dispose()
    assert bank.list_handoffs(url) == []
    assert revision_of(url) == migrations.head_revision() and tables(url) == TABLES


def test_two_first_uses_at_once_both_succeed(db_url):
    errors = []

    def one(use):
        try:
            use(db_url)
        except Exception as error:  # noqa: BLE001 - the test reports it
            errors.append(error)

    threads = [threading.Thread(target=one, args=(use,)) for use in (FIRST_USES["handoff queue"],
                                                                     FIRST_USES["repository"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert revision_of(db_url) == migrations.head_revision()
    assert differences(db_url) == []


def test_two_migrations_at_once_both_succeed(db_url):
    results, errors = [], []

    def one():
        try:
            results.append(migrations.migrate(db_url))
        except Exception as error:  # noqa: BLE001 - the test reports it
            errors.append(error)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    head = migrations.head_revision()
    assert not errors, errors
    assert sorted(results, key=str) == sorted([(None, head), (head, head)], key=str)
    assert differences(db_url) == []


def test_a_migration_waits_out_a_lock_held_longer_than_the_busy_timeout(tmp_path):
    """SQLite: another process holds the write lock for 12 s, past the 10 s busy timeout (a
    migration on a loaded machine); the migration still ends at head once it is released."""
    import sqlite3
    import time

    path = tmp_path / "bank.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Timer(12.0, holder.rollback)
    released.start()
    started = time.monotonic()
    try:
        before, after = migrations.migrate(f"sqlite:///{path}")
    finally:
        released.join()
        holder.close()
    assert time.monotonic() - started >= 11.5
    assert (before, after) == (None, migrations.head_revision())


def test_a_bad_url_is_one_clear_line():
    result = subprocess.run([sys.executable, "-m", "assistant.bank", "migrate"], capture_output=True, text=True,
                            cwd=settings.ROOT, env={**os.environ, "BANK_DB_URL": "mysql://x/y"}, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: bank database mysql://x/y: BANK_DB_URL: sqlite, postgresql are supported, not 'mysql'"
