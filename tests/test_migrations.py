"""The bank database's schema migrations (assistant/bank/migrate.py, migrations/) on a real
SQLite file and a real PostgreSQL server (its own schema, so other tests' tables stay):

- a fresh database migrates to the newest revision with `python -m assistant.bank migrate`,
  and a second run changes nothing;
- a database made by the older `create_all`, with rows, is adopted: rows kept, missing
  tables created, the revision recorded;
- the migrated tables equal the models (Alembic's autogenerate finds no difference);
- two migrations at once (two replicas starting) both succeed.
"""
from __future__ import annotations

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


def test_two_migrations_at_once_both_succeed(db_url):
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite: one file, one writer; replicas share PostgreSQL")
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


def test_a_bad_url_is_one_clear_line():
    result = subprocess.run([sys.executable, "-m", "assistant.bank", "migrate"], capture_output=True, text=True,
                            cwd=settings.ROOT, env={**os.environ, "BANK_DB_URL": "mysql://x/y"}, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: bank database mysql://x/y: BANK_DB_URL: sqlite, postgresql are supported, not 'mysql'"
