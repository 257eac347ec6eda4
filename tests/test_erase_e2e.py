"""`ops erase SENDER_ID` on the real stack: after a conversation that left its traces in
every store (tracker events, a dispute and a handoff in the bank database, the
services' JSON logs), the sender id is nowhere: not in any table of either database,
not in any log file, not in the databases' files on disk."""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Dict, List

import pytest
import sqlalchemy as sa

from ops import settings
from tests.conftest import REST_TOKEN


@pytest.fixture(scope="module", autouse=True)
def json_logs():
    """The stack writes JSON logs, whose lines carry the sender id (assistant/logs.py): the
    erase must find them. Set before the module's stack starts (autouse runs first)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOG_FORMAT", "json")
        yield


@pytest.fixture(scope="module")
def rasa_env():
    return {"REST_CHANNEL_TOKEN": REST_TOKEN}  # the back end names the customer (a dispute needs one)


def _say(stack, sender: str, text: str) -> List[dict]:
    status, reply = stack.say(sender, text, customer="C1001")
    assert status == 200, reply
    return reply


def _where_found(url: str, needle: str) -> Dict[str, int]:
    """{table: rows with `needle` in any column} over every table of the database."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            found = {}
            for name in sa.inspect(connection).get_table_names():
                table = sa.Table(name, sa.MetaData(), autoload_with=connection)
                rows = [row for row in connection.execute(sa.select(table)) if any(needle in str(v) for v in row)]
                if rows:
                    found[name] = len(rows)
            return found
    finally:
        engine.dispose()


def _files_naming(folder: Path, needle: str, pattern: str) -> List[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(pattern)
                  if p.is_file() and needle.encode() in p.read_bytes())


def test_erase_leaves_the_sender_id_in_no_table_and_no_log(running_stack):
    sender = f"erase-e2e-{uuid.uuid4().hex[:12]}"
    work = running_stack.db_path.parent
    tracker_url = f"sqlite:///{running_stack.db_path}"

    _say(running_stack, sender, "how long does it take for a new card to arrive?")
    _say(running_stack, sender, "there's a payment on my account I don't recognise")
    _say(running_stack, sender, '/inform{"payment_id": "TX-1001-03"}')
    reply = _say(running_stack, sender, "/affirm")
    assert any("dispute" in (m.get("text") or "").lower() for m in reply), reply
    _say(running_stack, sender, "I want to talk to a real person")

    # Every store has the sender before the erase.
    assert _where_found(tracker_url, sender) == {"events": len(running_stack.events(sender))}
    assert _where_found(running_stack.bank_url, sender) == {"disputes": 1, "handoffs": 1}
    assert {"rasa.log", "actions.log"} <= set(_files_naming(work, sender, "*.log"))

    env = {**os.environ, "TRACKER_STORE_URL": tracker_url, "BANK_DB_URL": running_stack.bank_url}
    command = [str(settings.RASA_VENV / "bin" / "python"), "-m", "ops", "erase", sender, "--log-dir", str(work)]
    dry = subprocess.run([*command, "--dry-run"], env=env, cwd=settings.ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would delete 1 conversations, ") and "1 handoffs, 1 disputes anonymised" in dry.stdout
    assert _where_found(running_stack.bank_url, sender) == {"disputes": 1, "handoffs": 1}  # the dry run kept all

    done = subprocess.run(command, env=env, cwd=settings.ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deleted 1 conversations, ") and "1 handoffs, 1 disputes anonymised" in done.stdout

    # Nowhere: no table of the tracker store or the bank database, no log file ...
    assert _where_found(tracker_url, sender) == {}
    assert _where_found(running_stack.bank_url, sender) == {}
    assert _files_naming(work, sender, "*.log") == []
    # ... and not in the databases' bytes on disk (SQLite's secure_delete, the WAL checkpointed).
    bank_file = Path(sa.engine.make_url(running_stack.bank_url).database)
    assert _files_naming(work, sender, "*.db*") == []
    assert sender.encode() not in bank_file.read_bytes()
    # The dispute itself is kept, for the customer, without the link to the conversation.
    engine = sa.create_engine(running_stack.bank_url)
    try:
        with engine.connect() as connection:
            disputes = connection.execute(sa.text(
                "SELECT customer_id, transaction_reference, sender_id FROM disputes "
                "WHERE transaction_reference = 'TX-1001-03'")).all()
    finally:
        engine.dispose()
    assert ("C1001", "TX-1001-03", None) in [tuple(row) for row in disputes]
    # The conversation is gone for Rasa too: a new message starts afresh.
    _say(running_stack, sender, "hello")
    assert [e["text"] for e in running_stack.events(sender) if e["event"] == "user"] == ["hello"]
