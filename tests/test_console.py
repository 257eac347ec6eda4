"""The agent console's guards, on the real console process and database (no Rasa needed):
the atomic claim raced by two agents (SQLite and PostgreSQL), who may read or act (no
session, a customer's token, another agent's conversation), CSRF tokens, the login limit.
The full handoff in two browsers, against the real stack: tests/browser/test_console.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.parse

import jwt
import pytest
import requests
import sqlalchemy as sa

from ops import settings
from ops.stack import free_port
from tests.conftest import API_TOKEN

PASSWORD = "correct horse battery"


def _postgres_url():
    return os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def queue_handoff(url: str, sender: str, customer: str = "C1001") -> int:
    from console import handoffs as hq

    engine = hq.sync_engine(url)
    try:
        hq.handoffs.create(engine, checkfirst=True)
        with engine.begin() as db:
            result = db.execute(sa.insert(hq.handoffs).values(
                sender_id=sender, customer_id=customer, status=hq.OPEN, reason="asked for a person",
                requested_at=hq.now()))
            return int(result.inserted_primary_key[0])
    finally:
        engine.dispose()


def add_agent(url: str, name: str, password: str = PASSWORD) -> None:
    result = subprocess.run([sys.executable, "-m", "console", "agent-add", name, "--password-stdin"],
                            input=password + "\n", text=True, capture_output=True, cwd=settings.ROOT,
                            env={**os.environ, "BANK_DB_URL": url}, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bank.db'}"
    url = _postgres_url()
    try:
        engine = sa.create_engine(url)
        with engine.begin() as db:
            # a schema of its own: other tests use the same database's handoffs table
            db.execute(sa.text("DROP SCHEMA IF EXISTS console_test CASCADE"))
            db.execute(sa.text("CREATE SCHEMA console_test"))
    except Exception as error:  # noqa: BLE001 - no server here: say so
        pytest.skip(f"no PostgreSQL at {url}: {error.__class__.__name__}")
    finally:
        engine.dispose()
    return url + ("&" if "?" in url else "?") + "options=-csearch_path%3Dconsole_test"


def test_two_agents_racing_for_one_conversation_get_it_once(store_url):
    from console.store import Store

    stores = [Store(store_url), Store(store_url)]
    try:
        for round_ in range(15):
            sender = f"race-{round_}-{time.time_ns()}"
            queue_handoff(store_url, sender)
            barrier, results = threading.Barrier(2), {}

            def claim(i):
                barrier.wait()
                results[i] = stores[i].claim(sender, f"agent{i}")

            threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            winners = [i for i, (ok, _) in results.items() if ok]
            assert len(winners) == 1, results
            holder = f"agent{winners[0]}"
            assert all(who == holder for _, who in results.values())  # the loser is told who holds it
            assert stores[0].open_handoff(sender)["claimed_by"] == holder
    finally:
        for store in stores:
            store.close()


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    """The console process on its own database; Rasa's URL leads nowhere (nothing here needs it)."""
    work = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{work / 'bank.db'}"
    add_agent(url, "alice")
    add_agent(url, "bob")
    port = free_port()
    env = {**os.environ, "BANK_DB_URL": url, "CONSOLE_RASA_URL": f"http://127.0.0.1:{free_port()}",
           "RASA_API_TOKEN": API_TOKEN, "CONSOLE_LOGIN_ATTEMPTS": "3", "CONSOLE_LOGIN_CLIENT_ATTEMPTS": "6",
           "CONSOLE_LOGIN_WINDOW_S": "60"}
    log = (work / "console.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "console", "--port", str(port)], cwd=settings.ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/health", timeout=2).ok:
                break
        except requests.ConnectionError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, (work / "console.log").read_text()
        time.sleep(0.2)
    yield {"url": base, "db": url}
    process.terminate()
    process.wait(timeout=20)
    log.close()


def login(base: str, name: str, password: str = PASSWORD, client: str = "") -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login", timeout=10)
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    response = session.post(f"{base}/login", data={"csrf": csrf, "name": name, "password": password},
                            allow_redirects=False, timeout=30)
    session.last_status = response.status_code  # type: ignore[attr-defined]
    session.last_response = response  # type: ignore[attr-defined]
    return session


def csrf_of(session: requests.Session, base: str) -> str:
    page = session.get(f"{base}/", timeout=10)
    assert page.status_code == 200
    return page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


def test_nobody_without_a_session_reads_or_writes(console):
    base = console["url"]
    sender = f"guarded-{time.time_ns()}"
    queue_handoff(console["db"], sender)
    customer_token = jwt.encode({"customer_id": "C1001", "exp": time.time() + 600},
                                "browser-test-jwt-key-0123456789abcdef", algorithm="HS256")
    quoted = urllib.parse.quote(sender)
    for headers, cookies in [({}, {}),
                             ({"Authorization": f"Bearer {customer_token}"}, {}),  # a customer's widget token
                             ({"Authorization": f"Bearer {API_TOKEN}"}, {}),  # Rasa's API token
                             ({}, {"lsc_console": customer_token}),
                             ({}, {"lsc_console": "forged-session-token"})]:
        for path in ("/api/queue", f"/api/conversation?sender={quoted}", f"/api/knowledge?q=pin"):
            response = requests.get(base + path, headers=headers, cookies=cookies, timeout=10)
            assert response.status_code == 401 and "Sign in" in response.json()["error"], (path, headers, cookies)
        for path in ("/api/claim", "/api/reply", "/api/note", "/api/release", "/api/close"):
            response = requests.post(base + path, json={"sender": sender, "text": "hello"}, timeout=10,
                                     headers={**headers, "X-CSRF-Token": "x"}, cookies=cookies)
            assert response.status_code == 401, (path, headers, cookies)
        page = requests.get(base + "/", headers=headers, cookies=cookies, allow_redirects=False, timeout=10)
        assert page.status_code == 302 and page.headers["Location"] == "/login"
    # nothing happened to the conversation
    from console.store import Store

    store = Store(console["db"])
    try:
        assert store.open_handoff(sender)["claimed_by"] is None and store.notes(sender) == []
    finally:
        store.close()


def test_state_changes_need_the_sessions_csrf_token(console):
    base = console["url"]
    sender = f"csrf-{time.time_ns()}"
    queue_handoff(console["db"], sender)
    alice = login(base, "alice")
    assert alice.last_status == 302
    cookie = alice.last_response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert alice.get(f"{base}/api/queue", timeout=10).status_code == 200
    other = login(base, "bob")
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": csrf_of(other, base)}):
        for path in ("/api/claim", "/api/note"):
            response = alice.post(base + path, json={"sender": sender, "text": "a note"}, headers=headers, timeout=10)
            assert response.status_code == 403 and "CSRF" in response.json()["error"]
    # a sign-out form without the token does nothing either
    assert alice.post(f"{base}/logout", data={}, allow_redirects=False, timeout=10).status_code == 403
    token = csrf_of(alice, base)
    response = alice.post(f"{base}/api/claim", json={"sender": sender}, headers={"X-CSRF-Token": token}, timeout=10)
    assert response.status_code == 200 and response.json()["claimed_by"] == "alice"
    # bob cannot claim, answer, hand back or close what alice holds
    bob_token = csrf_of(other, base)
    for path in ("/api/claim", "/api/reply", "/api/release", "/api/close"):
        response = other.post(base + path, json={"sender": sender, "text": "hi"},
                              headers={"X-CSRF-Token": bob_token}, timeout=10)
        assert response.status_code == 409 and response.json()["claimed_by"] == "alice", path
    # bad input: a clear 4xx
    for body in ({"sender": sender}, {"sender": sender, "text": "  "}, {"sender": 5, "text": "x"}, ["x"]):
        response = alice.post(f"{base}/api/reply", json=body, headers={"X-CSRF-Token": token}, timeout=10)
        assert response.status_code == 400 and response.json()["error"]
    response = alice.post(f"{base}/api/reply", json={"sender": sender, "text": "x" * 5000},
                          headers={"X-CSRF-Token": token}, timeout=10)
    assert response.status_code == 413
    # a note is stored and shown to agents only
    response = alice.post(f"{base}/api/note", json={"sender": sender, "text": "asked twice already"},
                          headers={"X-CSRF-Token": token}, timeout=10)
    assert response.status_code == 200
    # signing out ends the session on the server: the old cookie is worthless
    old_cookie = alice.cookies.get("lsc_console")
    assert alice.post(f"{base}/logout", data={"csrf": token}, allow_redirects=False, timeout=10).status_code == 302
    assert requests.get(f"{base}/api/queue", cookies={"lsc_console": old_cookie}, timeout=10).status_code == 401


def test_knowledge_search_finds_the_page(console):
    alice = login(console["url"], "alice")
    passages = alice.get(f"{console['url']}/api/knowledge", params={"q": "how do I change my PIN"},
                         timeout=10).json()["passages"]
    assert passages and passages[0]["page"] == "card-pin" and "Change PIN" in passages[0]["text"]


def test_logins_are_rate_limited(console):  # last: it spends this client's login budget
    base = console["url"]
    add_agent(console["db"], "carol")
    for _ in range(3):
        assert login(base, "carol", "wrong password!").last_status == 401
    limited = login(base, "carol")  # the right password, too late
    assert limited.last_status == 429 and int(limited.last_response.headers["Retry-After"]) > 0
    assert limited.get(f"{base}/api/queue", timeout=10).status_code == 401
    # and per client address, whatever the names tried
    for i in range(3):
        assert login(base, f"nobody{i}", "wrong password!").last_status == 401
    assert login(base, "alice").last_status == 429
    # a login form posted without its own CSRF cookie is refused
    response = requests.post(f"{base}/login", data={"csrf": "x", "name": "alice", "password": PASSWORD},
                             allow_redirects=False, timeout=10)
    assert response.status_code == 403


def test_erasing_a_sender_removes_the_consoles_rows(tmp_path):
    """`ops erase` covers the console's claims and internal notes of the conversation."""
    from console.store import Store
    from ops.retention import erase_sender

    url = f"sqlite:///{tmp_path / 'bank.db'}"
    store = Store(url)
    try:
        kept = queue_handoff(url, "someone-else")
        handoff = queue_handoff(url, "to-erase")
        store.claim("to-erase", "alice")
        store.add_note("to-erase", handoff, "alice", "customer's card ends 4821")
        store.claim("someone-else", "bob")
        tracker = f"sqlite:///{tmp_path / 'tracker.db'}"
        from rasa.core.tracker_store import SQLTrackerStore  # creates the events table
        from rasa.shared.core.domain import Domain

        SQLTrackerStore(Domain.empty(), db=str(tmp_path / "tracker.db"))
        report = erase_sender("to-erase", dry_run=False, url=tracker, log_dir=tmp_path / "logs", bank_url=url)
        assert report.handoffs == 3  # the queue row, the claim, the note
        assert store.notes("to-erase") == [] and store.latest_handoff("to-erase") is None
        assert store.latest_handoff("someone-else")["id"] == kept
        assert store.latest_handoff("someone-else")["claimed_by"] == "bob"
    finally:
        store.close()
