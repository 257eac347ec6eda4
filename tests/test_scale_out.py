"""Reliability of the scale-out configuration, on the real stack.

Two `rasa run` replicas behind nginx, sharing the PostgreSQL tracker store, the Redis
lock store and the RabbitMQ event broker (selected by environment variables only,
endpoints.yml as shipped), the action server behind the same nginx, and the generator:
ops.scale_out.scale_out_services, as the load benchmark (bench/load.py) runs it. Customers
are bench/client.py's simulated ones; what they were told is compared with what the
tracker store (the `events` table) and the RabbitMQ queue hold.

Skips, saying why, when nginx, PostgreSQL, Redis or RabbitMQ is missing. One replica
reaches PostgreSQL through a relay the tests can cut (a network partition that leaves
the shared PostgreSQL server running); the restart test restarts the real server. Both
replicas reach RabbitMQ through another relay, which the RabbitMQ test cuts. The
lock store is a Redis of this module's own (`redis-server` on a free port, without
persistence), which the Redis test kills and starts again; without `redis-server` the
module uses the machine's Redis (TEST_REDIS_URL) and that test skips.
"""
from __future__ import annotations

import asyncio
import collections
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from bench import client
from ops import scale_out, stack
from tests.conftest import POSTGRES_URL, RedisServer, get_json

API_TOKEN = "scale-out-test-token"
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
# Short enough to keep the module quick; the lock must outlive the longest turn.
GENERATOR_TIMEOUT_S = 15
LOCK_LIFETIME_S = 25
# How long a replica keeps retrying an unreachable database before failing the turn
# (more than a PostgreSQL restart takes here under load: up to about 6 s).
TRACKER_STORE_RETRY_S = 12
OPEN_QUESTION = "what is the tallest building in the world"  # always action_llm_reply
LLM_SOURCES = {"knowledge", "llm", "no_knowledge", "fallback", "intent", "clarify"}


class DatabaseLink:
    """A TCP relay between one Rasa replica and PostgreSQL. Cutting it is a network
    partition between that replica and its database, without stopping the PostgreSQL
    server that other jobs on this machine share."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = stack.free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: Optional[asyncio.AbstractServer] = None
        self.transports: set = set()

    def _call(self, coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def start(self) -> None:
        self.thread.start()
        self.restore()

    def restore(self) -> None:
        async def listen() -> None:
            self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

        self._call(listen())

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""

        async def cut() -> None:
            if self.server is not None:
                self.server.close()
            for transport in list(self.transports):
                transport.abort()

        self._call(cut())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        ends = {writer.transport, upstream_writer.transport}
        self.transports |= ends

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while True:
                    data = await source.read(65536)
                    if not data:
                        break
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self.transports -= ends


@dataclass
class Ctx:
    so: scale_out.ScaleOut
    db_url: str
    queue: str
    exchange: str
    tag: str
    link: DatabaseLink  # between rasa-2 and PostgreSQL
    redis: Optional[RedisServer]  # the lock store, when it is this module's own
    broker: DatabaseLink  # between both replicas and RabbitMQ

    @property
    def webhook(self) -> str:
        return f"{self.so.url}/webhooks/rest/webhook"

    def load(self, name: str, customers: int, turns: int, **kwargs) -> tuple:
        scripts = client.mixed_scripts(f"{self.tag}-{name}", customers, turns)
        result, wall = asyncio.run(client.run_load(self.webhook, scripts, **kwargs))
        return scripts, result, wall

    def say(self, sender: str, text: str, timeout: float = 60) -> tuple:
        body = json.dumps({"sender": sender, "message": text}).encode()
        return stack.post(self.webhook, body, timeout)

    def events(self, sender: str) -> List[Dict[str, Any]]:
        return client.stored_events(self.db_url, [sender])[sender]

    def last_bot(self, sender: str) -> Dict[str, Any]:
        return [e for e in self.events(sender) if e["event"] == "bot"][-1]

    def replica_port(self, service: stack.Service) -> str:
        return service.health_url.split(":")[2].split("/")[0]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, trained_model):
    work = tmp_path_factory.mktemp("scale-out")
    private_redis = None
    if shutil.which("redis-server") and "TEST_REDIS_URL" not in os.environ:
        private_redis = RedisServer(work)
        private_redis.start()
    try:
        yield from _ctx(work, trained_model, private_redis)
    finally:
        if private_redis is not None:
            private_redis.kill()


def _ctx(work: Path, trained_model: Path, private_redis: Optional[RedisServer]):
    stores = scale_out.scale_out_env({
        "TRACKER_STORE_URL": POSTGRES_URL, "EVENT_BROKER_URL": RABBITMQ_URL,
        "LOCK_STORE_URL": private_redis.url if private_redis else REDIS_URL,
    })
    missing = scale_out.scale_out_missing(stores)
    if missing:
        pytest.skip(f"scale-out stack unavailable: {missing}")
    tag = f"so{uuid.uuid4().hex[:8]}"
    queue, exchange = f"test_scale_out_{tag}", f"test-scale-out-{tag}"
    import sqlalchemy as sa

    database = sa.engine.make_url(stores["TRACKER_STORE_URL"])
    link = DatabaseLink(database.host or "127.0.0.1", database.port or 5432)
    link.start()
    via_link = database.set(host="127.0.0.1", port=link.port).render_as_string(hide_password=False)
    # The replicas reach RabbitMQ through a relay too: cutting it is "RabbitMQ down" for
    # them, without stopping the machine's RabbitMQ.
    rabbitmq = urllib.parse.urlsplit(RABBITMQ_URL)
    broker_link = DatabaseLink(rabbitmq.hostname or "127.0.0.1", rabbitmq.port or 5672)
    broker_link.start()
    broker_via_link = rabbitmq._replace(
        netloc=f"{rabbitmq.netloc.rsplit('@', 1)[0]}@127.0.0.1:{broker_link.port}"
        if "@" in rabbitmq.netloc else f"127.0.0.1:{broker_link.port}").geturl()
    so = scale_out.scale_out_services(
        work, trained_model,
        replicas=2, stores=stores, api_token=API_TOKEN, expose_upstream=True,
        # The broker's queue and exchange of this module only (deleted at the end).
        event_broker={"exchange_name": exchange},
        rasa_env={
            "EVENT_BROKER_QUEUE": queue, "EVENT_BROKER_URL": broker_via_link, "LOCK_STORE_KEY_PREFIX": tag,
            "TICKET_LOCK_LIFETIME": str(LOCK_LIFETIME_S), "TRACKER_STORE_RETRY_S": str(TRACKER_STORE_RETRY_S),
        },
        # Short LLM replies: these tests are about delivery, not about the answers.
        # A bank database of this module's own (handoffs, disputes), not build/bank.db.
        actions_env={"GENERATOR_TIMEOUT_S": str(GENERATOR_TIMEOUT_S), "LLM_MAX_TOKENS": "24", "LLM_CANDIDATES": "1",
                     "BANK_DB_URL": f"sqlite:///{work / 'bank.db'}"},
        # rasa-2 reaches the database through a link the tests can cut
        replica_env=[{}, {"TRACKER_STORE_URL": via_link}],
    )
    try:
        with stack.running(*so.stages):
            if private_redis is not None:  # a new Redis: the lock store waits out a lock's lifetime
                private_redis.wait_settled(LOCK_LIFETIME_S)
            yield Ctx(so, stores["TRACKER_STORE_URL"], queue, exchange, tag, link, private_redis, broker_link)
    finally:
        link.close()
        broker_link.close()
        asyncio.run(_delete_queue(queue, exchange))


@pytest.fixture(scope="module")
def responses(ctx) -> Dict[str, List[str]]:
    """The response texts of the model the replicas serve (Rasa's GET /domain)."""
    request = urllib.request.Request(f"{ctx.so.url}/domain?token={API_TOKEN}",
                                     headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        domain = json.loads(response.read())
    return {name: [v.get("text", "") for v in variants] for name, variants in domain["responses"].items()}


# --- helpers ------------------------------------------------------------------------------

async def _delete_queue(queue: str, exchange: str) -> None:
    import aio_pika

    try:
        connection = await aio_pika.connect(RABBITMQ_URL)
    except Exception:  # noqa: BLE001 - nothing to clean up without a broker
        return
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        await channel.exchange_delete(exchange)


async def _drain(queue: str, settle_s: float = 2.0) -> List[Dict[str, Any]]:
    """Every message in the queue, until none arrives for settle_s seconds."""
    return [json.loads(message["body"]) for message in await _drain_messages(queue, settle_s)]


def _texts(reply) -> List[str]:
    return [m.get("text") for m in reply or []]


def _served_by(turn: client.Turn) -> Optional[str]:
    """The replica port that answered ($upstream_addr lists every one nginx tried)."""
    return turn.upstream.split(",")[-1].strip().rsplit(":", 1)[1] if turn.upstream else None


def _check_conversations(scripts, turns, stored, *, retried_ok: bool = False) -> Dict[str, int]:
    """Each conversation in the tracker store is what its customer sent and was told.

    Per conversation: it starts with a session; every message is followed by the bot's
    actions and messages and then action_listen before the next message (one replica
    at a time: a second replica working on the same conversation would interleave its
    events or lose some); messages in the order sent; timestamps never go back. A
    message the client sent once is stored exactly once; with `retried_ok`, a message
    the client had to send again may be stored twice (detectable: same
    client_message_id); an acknowledged message is always stored.
    """
    by_sender = collections.defaultdict(list)
    for turn in turns:
        by_sender[turn.sender].append(turn)
    duplicates = 0
    for sender, script in scripts.items():
        events = stored[sender]
        opening = events[: next(i for i, e in enumerate(events) if e["event"] == "user")]
        assert ("action", "action_session_start") in [(e["event"], e.get("name")) for e in opening], opening
        assert "session_started" in [e["event"] for e in opening]
        assert (opening[-1]["event"], opening[-1].get("name")) == ("action", "action_listen")
        stamps = [e["timestamp"] for e in events]
        assert stamps == sorted(stamps), f"{sender}: timestamps go back in insertion order"
        kept = client.stored_turns(events)
        sent = sorted(by_sender[sender], key=lambda t: t.index)
        # every message of the script, unless the bot handed the conversation to a person
        assert len(sent) == len(script) or (sent and sent[-1].handoff), sent[-1:]
        for turn in kept:
            assert turn.complete, f"{sender}: a turn without action_listen: {turn}"
            assert turn.bot, f"{sender}: a turn without a bot message: {turn}"
            assert not any(a.startswith("after listen") for a in turn.actions), turn
        counts = collections.Counter(t.message_id for t in kept)
        for turn in sent:
            stored_times = counts.pop(turn.message_id, 0)
            if turn.ok:
                assert stored_times >= 1, f"{sender} #{turn.index}: acknowledged but not stored"
            if turn.attempts == 1 or not retried_ok:
                assert stored_times <= 1, f"{sender} #{turn.index}: sent once, stored {stored_times} times"
            duplicates += max(0, stored_times - 1)
        assert not counts, f"{sender}: stored messages nobody sent: {counts}"
        # the order of first appearance is the order sent, and each is what was sent
        first_seen = list(dict.fromkeys(t.message_id for t in kept))
        assert first_seen == [t.message_id for t in sent if t.message_id in first_seen]
        texts = {t.message_id: t.text for t in sent}
        assert all(t.text == texts[t.message_id] for t in kept)
    return {"duplicates": duplicates}


def _log(service: stack.Service) -> str:
    return service.log_path.read_text(errors="replace")


# --- 1. many conversations at once ------------------------------------------------------------

def test_concurrent_conversations_are_stored_once_in_order_and_published(ctx):
    scripts, turns, _ = ctx.load("load", customers=20, turns=5)
    assert [t for t in turns if not t.ok] == []

    ports = {ctx.replica_port(r) for r in ctx.so.rasa}
    served = collections.Counter(_served_by(t) for t in turns)
    assert set(served) == ports, served  # both replicas worked
    crossed = sum(len({_served_by(t) for t in turns if t.sender == s}) > 1 for s in scripts)
    assert crossed >= len(scripts) // 2  # conversations went back and forth between replicas

    stored = client.stored_events(ctx.db_url, scripts)
    _check_conversations(scripts, turns, stored)
    # what each customer was told is what the tracker store says the bot said (the REST
    # channel sends each paragraph of a text as a message of its own)
    by_id = {t.message_id: t for events in stored.values() for t in client.stored_turns(events)}
    for turn in turns:
        told = "\n\n".join(text for text in _texts(turn.reply) if text)
        assert told == "\n\n".join(b["text"] for b in by_id[turn.message_id].bot if b.get("text"))
    routes = client.routes(turns, stored)
    assert sum(n for k, n in routes["llm"].items() if k.startswith("llm: ")) >= len(scripts) // 2, routes
    for turn in by_id.values():
        if "action_llm_reply" in turn.actions:
            assert turn.sources() and set(turn.sources()) <= LLM_SOURCES, turn

    # RabbitMQ got every stored event of these conversations, once, after it was stored.
    published = collections.defaultdict(list)
    for message in asyncio.run(_drain(ctx.queue)):
        published[message.pop("sender_id")].append(message)
    for sender in scripts:
        expected = collections.Counter(
            json.dumps({k: v for k, v in e.items() if k not in ("_id",)} | {"event": e["event"]}, sort_keys=True)
            for e in stored[sender]
        )
        got = collections.Counter(json.dumps(m, sort_keys=True) for m in published[sender])
        assert got == expected, f"{sender}: broker and tracker store differ"


# --- 2. a replica dies mid-load ---------------------------------------------------------------

def _calls_waiting(service: stack.Service, url: str) -> int:
    """How many connections the service's processes hold open to `url` (host:port on
    IPv4 loopback): a replica's action calls in flight. Read from /proc (Linux)."""
    port = urllib.parse.urlsplit(url).port
    inodes = set()
    for proc in Path("/proc").iterdir():
        try:
            # /proc/<pid>/stat: "pid (name) state ppid pgrp ..."; the service leads its group
            if not proc.name.isdigit() or int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) != \
                    service.process.pid:
                continue
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except (OSError, IndexError, ValueError):
            continue  # a process that ended meanwhile
    remote = f"0100007F:{port:04X}"
    waiting = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        waiting += fields[2] == remote and fields[3] == "01" and fields[9] in inodes  # 01: established
    return waiting


def test_a_killed_replica_loses_no_acknowledged_message(ctx):
    victim, survivor = ctx.so.rasa
    scripts = client.mixed_scripts(f"{ctx.tag}-kill", 20, 6)
    # customers who start while the action servers are held (their first turn runs
    # action_session_start), as many as it takes for the victim to have a turn in flight
    latecomers = iter(client.mixed_scripts(f"{ctx.tag}-late", 20, 2).items())
    killed_at: Dict[str, float] = {}

    async def scenario():
        def start(some: Dict[str, client.Script]):
            return asyncio.ensure_future(client.run_load(
                ctx.webhook, some, retries=8, retry_delay_s=1.0, timeout_s=LOCK_LIFETIME_S + 60,
            ))

        loads = [start(scripts)]
        await asyncio.sleep(2)  # conversations are under way on both replicas
        # Hold the action servers, so that the turns calling an action (a new session, a
        # form, an LLM reply) wait, and kill the victim once one of its turns waits: the
        # kill then cuts a turn in flight however fast the other turns are, and wherever
        # the load balancer sent them.
        for actions in ctx.so.actions:
            os.kill(actions.process.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 30
            while not _calls_waiting(victim, ctx.so.actions_url):
                assert time.monotonic() < deadline, "no turn of the victim ever waited on the action servers"
                latecomer = next(latecomers, None)
                if latecomer:
                    scripts[latecomer[0]] = latecomer[1]
                    loads.append(start(dict([latecomer])))
                await asyncio.sleep(0.5)
            os.killpg(victim.process.pid, signal.SIGKILL)
            killed_at["t"] = time.monotonic()
        finally:
            for actions in ctx.so.actions:
                os.kill(actions.process.pid, signal.SIGCONT)
        return [turn for turns, _ in await asyncio.gather(*loads) for turn in turns]

    try:
        turns = asyncio.run(scenario())
        victim.process.wait(10)
        assert victim.process.returncode == -signal.SIGKILL

        assert [t for t in turns if not t.ok] == []  # every customer got every answer
        cut = [t for t in turns if t.started < killed_at["t"] < t.finished]
        assert any(t.attempts > 1 for t in cut), (
            f"the kill hit no turn in flight: {len(cut)} turns spanned it, load from "
            f"{min(t.started for t in turns) - killed_at['t']:.1f} s to "
            f"{max(t.finished for t in turns) - killed_at['t']:.1f} s around the kill")
        survivor_port = ctx.replica_port(survivor)
        later = [t for t in turns if t.started > killed_at["t"] + 1]
        assert later and all(_served_by(t) == survivor_port for t in later)

        stored = client.stored_events(ctx.db_url, scripts)
        found = _check_conversations(scripts, turns, stored, retried_ok=True)
        failures = collections.Counter(f for t in turns for f in t.failures)
        print(f"kill: {len(cut)} turns in flight, {sum(t.attempts > 1 for t in turns)} retried "
              f"({dict(failures)}), {found['duplicates']} stored twice")
    finally:
        if not victim.running():
            ctx.so.restart(victim)
    # the restarted replica serves again
    victim_port = ctx.replica_port(victim)
    for i in range(20):
        reply = asyncio.run(client.run_load(ctx.webhook, {f"{ctx.tag}-back-{i}": [("intent", "hello")]}))[0][0]
        assert reply.ok
        if _served_by(reply) == victim_port:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the restarted replica got no request")


# --- 3. the action server dies --------------------------------------------------------------

def test_action_server_down_gives_the_fallback_and_the_bot_recovers(ctx, responses):
    actions = ctx.so.actions[0]
    sender = f"{ctx.tag}-actions"
    assert ctx.say(sender, "hello")[0] == 200  # the conversation exists before the outage
    os.killpg(actions.process.pid, signal.SIGKILL)
    actions.process.wait(10)
    try:
        # questions are answered from the knowledge pages by the action server: without it,
        # a question gets the polite template from the action servers' load balancer
        status, reply = ctx.say(sender, "my card still hasn't arrived")
        assert status == 200 and _texts(reply)[0] in responses["utter_llm_fallback"]
        # intent turns with a fixed reply need no action server
        status, reply = ctx.say(sender, "thank you")
        assert status == 200 and _texts(reply)[0] in responses["utter_thank"]
        # an open question gets the same polite template
        started = time.monotonic()
        status, reply = ctx.say(sender, OPEN_QUESTION)
        assert time.monotonic() - started < 5
        assert status == 200 and _texts(reply)[0] in responses["utter_llm_fallback"]
        bot = ctx.last_bot(sender)
        assert bot["metadata"]["source"] == "fallback"
        assert bot["metadata"]["llm_error"] == "action server unavailable"
        assert [e["name"] for e in ctx.events(sender) if e["event"] == "action"][-2:] == [
            "action_llm_reply", "action_listen"]  # one fallback, then the bot listens
        # A new conversation starts (action_session_start is a custom action): Rasa's
        # own session start from the load balancer, then the template answer.
        newcomer = f"{ctx.tag}-actions-new"
        status, reply = ctx.say(newcomer, "hello")
        assert status == 200 and _texts(reply) and _texts(reply)[0] in responses["utter_greet"]
        events = ctx.events(newcomer)
        assert [e["event"] for e in events].count("bot") == 1
        assert "session_started" in [e["event"] for e in events]
    finally:
        ctx.so.restart(actions)
    status, reply = ctx.say(sender, OPEN_QUESTION)
    assert status == 200
    bot = ctx.last_bot(sender)
    assert bot["metadata"]["source"] in LLM_SOURCES - {"fallback"}  # the action server answered
    user_texts = [e["text"] for e in ctx.events(sender) if e["event"] == "user"]
    assert user_texts == ["hello", "my card still hasn't arrived", "thank you", OPEN_QUESTION, OPEN_QUESTION]


# --- 4. PostgreSQL restarts -------------------------------------------------------------------

def _pg_ctl(action: str) -> None:
    versions = sorted(Path("/etc/postgresql").glob("*/main"))
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].parent.name, "main", action],
                   check=True, capture_output=True, timeout=60)


def _local_cluster() -> Optional[str]:
    if not POSTGRES_URL.split("@")[-1].startswith(("127.0.0.1", "localhost")):
        return f"PostgreSQL at {POSTGRES_URL} is not this machine's"
    if not list(Path("/etc/postgresql").glob("*/main")) or not shutil.which("pg_ctlcluster"):
        return "no local PostgreSQL cluster to restart (pg_ctlcluster)"
    return None


def test_postgresql_restart_under_load_loses_nothing_and_needs_no_rasa_restart(ctx):
    why = _local_cluster()
    if why:
        pytest.skip(why)
    pids = [r.process.pid for r in ctx.so.rasa]
    logs_before = [len(_log(r)) for r in ctx.so.rasa]
    # intent turns, back to back: 480 of them last several seconds even at ~100 turns/s, so the
    # restart (after 1 s) lands while turns are in flight (96 turns once finished before it).
    # 48 customers at once: banking questions now spend part of each turn in the action
    # server, and with 16 a restart once fell between database calls.
    # Each turn also waits on the generator's embeddings, so a restart can fall between the
    # database calls of all turns in flight: 14 turns each keep the load going for several
    # restarts.
    scripts = client.mixed_scripts(f"{ctx.tag}-pg", 48, 14, llm_every=0)
    restarted: Dict[str, float] = {}

    def hit() -> bool:  # a restart so far met a database call in flight
        logs = "".join(_log(r)[n:] for r, n in zip(ctx.so.rasa, logs_before))
        return bool(re.search(r"tracker store (read|save) failed \(attempt 1", logs))

    async def scenario():
        load = asyncio.ensure_future(client.run_load(ctx.webhook, scripts, timeout_s=60))
        # A restart can fall between two database calls (the turns' time is mostly in the
        # action server): restart again, while the load lasts, until one meets a call.
        for _ in range(6):
            await asyncio.sleep(1.0)
            started = time.monotonic()
            await asyncio.get_running_loop().run_in_executor(None, _pg_ctl, "restart")
            restarted["s"] = time.monotonic() - started
            restarted["n"] = restarted.get("n", 0) + 1
            await asyncio.sleep(0.5)
            if hit() or load.done():
                break
        return await load

    turns, _ = asyncio.run(scenario())
    # no client saw an error: replicas retried the database until it was back
    assert [t for t in turns if not t.ok] == []
    stored = client.stored_events(ctx.db_url, scripts)
    _check_conversations(scripts, turns, stored)
    new_logs = "".join(_log(r)[n:] for r, n in zip(ctx.so.rasa, logs_before))
    retries = len(re.findall(r"tracker store (?:read|save) failed \(attempt \d+", new_logs))
    assert re.search(r"tracker store (read|save) failed \(attempt 1", new_logs), \
        "the restart hit no database call in flight"
    print(f"PostgreSQL restarts: {restarted['n']} (the last {restarted['s']:.1f} s), {len(turns)} turns, none failed; "
          f"{retries} database calls retried by the replicas")
    assert "InMemoryTrackerStore" not in new_logs
    assert [r.process.pid for r in ctx.so.rasa] == pids and all(r.running() for r in ctx.so.rasa)


def test_a_database_out_of_reach_fails_the_turn_visibly_and_forgets_nothing(ctx, responses):
    """Unreachable for longer than TRACKER_STORE_RETRY_S: the replica answers with an
    error instead of a reply from an empty in-memory conversation (what Rasa's
    FailSafeTrackerStore would do), and the conversation is intact afterwards."""
    cut_off, other = ctx.so.rasa_urls[1], ctx.so.rasa_urls[0]  # rasa-2 is behind the link
    logs_before = len(_log(ctx.so.rasa[1]))
    sender = f"{ctx.tag}-partition"

    def say(base: str, text: str, timeout: float = 60) -> tuple:
        body = json.dumps({"sender": sender, "message": text}).encode()
        return stack.post(f"{base}/webhooks/rest/webhook", body, timeout)

    assert say(cut_off, "hello")[0] == 200
    before = ctx.events(sender)
    ctx.link.cut()
    try:
        started = time.monotonic()
        status, reply = say(cut_off, "my card still hasn't arrived", timeout=TRACKER_STORE_RETRY_S + 30)
        elapsed = time.monotonic() - started
        # the other replica, with its own connection, serves meanwhile
        other_status, other_reply = stack.post(
            f"{other}/webhooks/rest/webhook",
            json.dumps({"sender": f"{sender}-other", "message": "hello"}).encode(), 30)
    finally:
        ctx.link.restore()
    print(f"database out of reach: the turn failed after {elapsed:.1f} s with HTTP {status} {reply}")
    # No reply: 503 from the channel, or Rasa's REST channel's empty list for a failed turn.
    assert status == 503 or (status == 200 and reply == []), (status, reply)
    assert TRACKER_STORE_RETRY_S - 1 < elapsed < TRACKER_STORE_RETRY_S + 15
    assert other_status == 200 and _texts(other_reply)[0] in responses["utter_greet"]
    # The customer sends it again: answered, and the conversation is the one from before.
    status, reply = say(cut_off, "my card still hasn't arrived")
    assert status == 200 and "Source: Card delivery and tracking" in _texts(reply)[0]
    after = ctx.events(sender)
    assert after[: len(before)] == before
    assert [e["text"] for e in after if e["event"] == "user"] == ["hello", "my card still hasn't arrived"]
    log = _log(ctx.so.rasa[1])[logs_before:]
    assert "giving up" in log and "InMemoryTrackerStore" not in log


# --- 5. the generator is overloaded -----------------------------------------------------------

def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = r"(?m)^" + re.escape(name) + (r"\{" + labels + r"\}" if labels else r"(\{[^}]*\})?") + r" ([0-9.e+-]+)"
    return sum(float(m.group(m.lastindex)) for m in re.finditer(pattern, text))


def test_an_overloaded_generator_sheds_into_polite_fallbacks(ctx, responses):
    generator = ctx.so.generator
    if generator is None:
        pytest.skip("GENERATOR_URL names an external server: its limits are not ours to set")
    metrics_url = generator.health_url.replace("/health", "/metrics")
    normal_env = dict(generator.env)
    # one request at a time, none waiting (chat or embeddings): the second concurrent request is refused
    generator.env.update({"GENERATOR_MAX_BATCH": "1", "GENERATOR_MAX_QUEUE": "0", "GENERATOR_MAX_EMBEDDING_QUEUE": "0"})
    ctx.so.restart(generator)
    try:
        customers = 12
        scripts = {f"{ctx.tag}-busy-{i}": [("llm", f"{OPEN_QUESTION}, asked by customer {i}")]
                   for i in range(customers)}
        depths: List[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(metrics_url, timeout=2) as response:
                        depths.append(_metric(response.read().decode(), "generator_queue_depth"))
                except OSError:
                    pass
                time.sleep(0.1)

        async def burst():
            # All the LLM turns reach the generator at the same moment: it is paused
            # while they arrive (its socket queues them), then let go.
            os.kill(generator.process.pid, signal.SIGSTOP)
            try:
                load = asyncio.ensure_future(client.run_load(ctx.webhook, scripts, timeout_s=60))
                await asyncio.sleep(3)
            finally:
                os.kill(generator.process.pid, signal.SIGCONT)
            return await load

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            turns, wall = asyncio.run(burst())
        finally:
            os.kill(generator.process.pid, signal.SIGCONT)
            stop.set()
            sampler.join(5)
        assert [t for t in turns if not t.ok] == []
        assert max(t.latency_ms for t in turns) / 1000 < GENERATOR_TIMEOUT_S + 5  # nothing waits long
        stored = client.stored_events(ctx.db_url, scripts)
        sources = collections.Counter()
        for sender, events in stored.items():
            bot = [e for e in events if e["event"] == "bot"][-1]
            metadata = bot.get("metadata") or {}
            sources[metadata.get("source")] += 1
            if metadata.get("source") == "fallback":
                assert bot["text"] in responses["utter_llm_fallback"]
                assert "503" in str(metadata.get("llm_error")), metadata
        print(f"overload: {customers} LLM turns at once, answered by {dict(sources)}; slowest "
              f"{max(t.latency_ms for t in turns) / 1000:.1f} s; generator queue depth at most {max(depths):.0f}")
        assert sources["fallback"] >= 1, sources  # the generator shed load ...
        assert sum(sources.values()) == customers  # ... and every customer was answered
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            text = response.read().decode()
        assert _metric(text, "generator_requests_total", r'[^}]*status="503"[^}]*') >= 1
        assert depths and max(depths) <= 2  # chat (1 running) + embeddings (1 running)
        assert _metric(text, "generator_queue_depth") == 0  # nothing left piling up
    finally:
        generator.env.clear()
        generator.env.update(normal_env)
        ctx.so.restart(generator)


# --- 6. the lock store (Redis) goes away and comes back empty ---------------------------------

def _check_lanes(lanes: Dict[str, List[List[client.Turn]]], stored) -> None:
    """Conversations whose customer sends two messages at once (two "lanes" of turns,
    each closed loop): the replicas took them one at a time (each message followed by
    its bot reply and action_listen before the next message, nothing from a turn after
    it listened), each stored once, every acknowledged one stored, each lane's messages
    in the order that lane sent them."""
    for sender, sender_lanes in lanes.items():
        turns = [t for lane in sender_lanes for t in lane]
        kept = client.stored_turns(stored[sender])
        for turn in kept:
            assert turn.complete and turn.bot, f"{sender}: a turn without its reply: {turn}"
            assert not any(a.startswith("after listen") for a in turn.actions), f"{sender}: turns interleaved: {turn}"
        counts = collections.Counter(t.message_id for t in kept)
        sent = {t.message_id: t for t in turns}
        assert set(counts) <= set(sent), f"{sender}: stored messages nobody sent"
        assert all(n == 1 for n in counts.values()), f"{sender}: a message stored twice: {counts}"
        assert all(counts[t.message_id] == 1 for t in turns if t.ok), f"{sender}: acknowledged but not stored"
        position = {t.message_id: i for i, t in enumerate(kept)}
        for lane in sender_lanes:
            seen = [position[t.message_id] for t in sorted(lane, key=lambda t: t.index) if t.message_id in position]
            assert seen == sorted(seen), f"{sender}: a lane's messages out of order"


def _probe(url: str, sender: str) -> tuple:
    """One REST turn: (status, Retry-After header, body)."""
    request = urllib.request.Request(url, data=json.dumps({"sender": sender, "message": "hello"}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Retry-After"), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After"), json.loads(error.read() or b"null")


def _socketio_probe(url: str, sender: str) -> Dict[str, Any]:
    """One socket.io message; the first bot_uttered it gets."""
    import queue

    import socketio

    sio = socketio.Client(reconnection=False, websocket_extra_options={"origin": "http://localhost:8080"})
    got: "queue.Queue[Any]" = queue.Queue()
    confirmed: "queue.Queue[Any]" = queue.Queue()
    sio.on("bot_uttered", got.put)
    sio.on("session_confirm", confirmed.put)
    sio.connect(url, transports=["websocket"], wait_timeout=10)
    try:
        sio.emit("session_request", {"session_id": sender})
        assert confirmed.get(timeout=10) == sender
        sio.emit("user_uttered", {"message": "hello", "session_id": sender})
        return got.get(timeout=20)
    finally:
        sio.disconnect()


def test_redis_restart_under_load_never_runs_a_conversation_twice_at_once(ctx, responses):
    """The lock store's Redis is killed under load and started again a few seconds later,
    empty (no persistence). Turns wait for it (up to the lock store's retry time), or get
    503 with Retry-After and send again, as the clients here do; a Redis that came back
    empty has forgotten the locks of the turns still in flight (held here in the action
    server across the restart), so no turn starts until those locks would have expired.
    Nothing is lost or stored twice, no conversation is processed by two turns at once,
    and Rasa goes on without a restart."""
    if ctx.redis is None:
        pytest.skip("the lock store is the machine's shared Redis (TEST_REDIS_URL, or no redis-server): "
                    "not ours to kill")
    from addons import lock_store

    pids = [r.process.pid for r in ctx.so.rasa]
    logs_before = [len(_log(r)) for r in ctx.so.rasa]
    banking = iter(client.message_pools(seed=24)[0])

    def script() -> client.Script:  # questions (action_llm_reply) between small talk (templates)
        return [("intent", next(banking)), ("intent", "hello"), ("intent", "thank you")] * 2

    scripts = {f"{ctx.tag}-redis-{i}": script() for i in range(10)}
    # Conversations whose customer sends two messages at once, over and over (two lanes).
    pair_senders = [f"{ctx.tag}-redis-pair-{i}" for i in range(4)]
    lanes = [{sender: script() for sender in pair_senders} for _ in range(2)]
    happened: Dict[str, Any] = {}

    async def scenario():
        def start(some):  # the client sends a refused message again, once a second
            return asyncio.ensure_future(client.run_load(ctx.webhook, some, retries=60, retry_delay_s=1.0,
                                                         timeout_s=60))

        loads = [start(scripts), *[start(lane) for lane in lanes]]
        await asyncio.sleep(2)
        # Hold the action servers until Redis is back, so that turns are in flight across
        # the restart (their locks forgotten), then kill Redis.
        for actions in ctx.so.actions:
            os.kill(actions.process.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 20
            while not any(_calls_waiting(r, ctx.so.actions_url) for r in ctx.so.rasa):
                assert time.monotonic() < deadline, "no turn ever waited on the action servers"
                await asyncio.sleep(0.2)
            happened["held"] = sum(_calls_waiting(r, ctx.so.actions_url) for r in ctx.so.rasa)
            ctx.redis.kill()
            happened["killed"] = time.monotonic()
            await asyncio.sleep(4)
            ctx.redis.start()
            happened["back"] = time.monotonic()
            await asyncio.sleep(1)
            # a message now: Redis is back but does not know which conversations are busy
            loop = asyncio.get_running_loop()
            happened["probe"] = await loop.run_in_executor(None, _probe, ctx.webhook, f"{ctx.tag}-redis-probe")
            happened["socketio"] = await loop.run_in_executor(
                None, _socketio_probe, ctx.so.rasa_urls[0], f"{ctx.tag}-redis-socket")
        finally:
            for actions in ctx.so.actions:
                os.kill(actions.process.pid, signal.SIGCONT)
        return [turns for turns, _ in await asyncio.gather(*loads)]

    try:
        turns, *lane_turns = asyncio.run(scenario())
    finally:
        if not ctx.redis.running():
            ctx.redis.start()
        ctx.redis.wait_settled(LOCK_LIFETIME_S)  # the next tests' turns need not wait
    everything = turns + [t for lane in lane_turns for t in lane]

    # Every customer got every answer; what a client saw on the way is a 503 and nothing else.
    assert [t for t in everything if not t.ok] == []
    failures = collections.Counter(f for t in everything for f in t.failures)
    assert set(failures) <= {"http 503"}, failures
    status, retry_after, body = happened["probe"]
    assert status == 503 and retry_after and int(retry_after) >= 1, happened["probe"]
    assert body["retry_after"] == int(retry_after) and "send it again" in body["error"], body
    socket_reply = happened["socketio"]  # the widget is told the same
    assert socket_reply["error"]["status"] == 503 and socket_reply["error"]["retry_after"] >= 1, socket_reply
    assert "send it again" in socket_reply["text"]
    spanning = [t for t in everything if t.started < happened["killed"] < t.finished]
    assert spanning, "the restart met no turn in flight"

    stored = client.stored_events(ctx.db_url, [*scripts, *pair_senders])
    _check_conversations(scripts, turns, stored)  # a 503 was never processed: stored once
    _check_lanes({s: [[t for t in lane if t.sender == s] for lane in lane_turns] for s in pair_senders}, stored)

    new_logs = "".join(_log(r)[n:] for r, n in zip(ctx.so.rasa, logs_before))
    assert re.search(r"lock store \w+ failed \(attempt 1", new_logs), "no Redis call failed: was Redis down?"
    assert "may have forgotten the locks" in new_logs
    print(f"Redis restart: {happened['held']} turns held in the action server across it, {len(everything)} turns, "
          f"{sum(t.attempts > 1 for t in everything)} sent again after {dict(failures)}; slowest "
          f"{max(t.latency_ms for t in everything) / 1000:.1f} s; probe {status}, Retry-After {retry_after} s")
    # Rasa was not restarted, and serves new conversations
    assert [r.process.pid for r in ctx.so.rasa] == pids and all(r.running() for r in ctx.so.rasa)
    for base in ctx.so.rasa_urls:
        status, reply = stack.post(f"{base}/webhooks/rest/webhook", json.dumps(
            {"sender": f"{ctx.tag}-redis-after-{base[-5:]}", "message": "hello"}).encode(), 30)
        assert status == 200 and _texts(reply)[0] in responses["utter_greet"], (status, reply)
    assert lock_store.RETRY_S < LOCK_LIFETIME_S  # so that the probe above was refused, not kept waiting


# --- 7. the generator is killed in the middle of replies ----------------------------------------

def test_a_generator_killed_mid_reply_gives_fallbacks_and_answers_again_once_restarted(ctx, responses):
    generator = ctx.so.generator
    if generator is None:
        pytest.skip("GENERATOR_URL names an external server: not ours to kill")
    actions = ctx.so.actions
    pids = [s.process.pid for s in [*ctx.so.rasa, *actions]]
    metrics_url = generator.health_url.replace("/health", "/metrics")
    actions_metrics = [a.health_url.replace("/health", "/metrics") for a in actions]

    def connection_errors() -> float:
        total = 0.0
        for url in actions_metrics:
            with urllib.request.urlopen(url, timeout=5) as response:
                total += _metric(response.read().decode(), "action_server_llm_calls_total",
                                 r'outcome="connection[^"]*"')
        return total

    errors_before = connection_errors()
    # Every other turn asks an open question (action_llm_reply: embeddings, then a candidate).
    scripts = client.mixed_scripts(f"{ctx.tag}-genkill", 12, 6, llm_every=2)
    happened: Dict[str, float] = {}

    async def scenario():
        load = asyncio.ensure_future(client.run_load(ctx.webhook, scripts, timeout_s=60))
        loop = asyncio.get_running_loop()
        await asyncio.sleep(2)  # replies under way
        deadline = time.monotonic() + 30
        while True:  # kill it while it works on requests
            with urllib.request.urlopen(metrics_url, timeout=2) as response:
                depth = _metric(response.read().decode(), "generator_queue_depth")
            if depth >= 1:
                break
            assert time.monotonic() < deadline and not load.done(), "the generator never had a request"
            await asyncio.sleep(0.05)
        os.killpg(generator.process.pid, signal.SIGKILL)
        happened["killed"], happened["depth"] = time.monotonic(), depth
        await loop.run_in_executor(None, generator.process.wait, 10)
        await asyncio.sleep(3)  # turns go on without it
        await loop.run_in_executor(None, ctx.so.restart, generator)
        happened["back"] = time.monotonic()
        return await load

    try:
        turns, _ = asyncio.run(scenario())
    finally:
        if not generator.running():
            ctx.so.restart(generator)
    assert [t for t in turns if not t.ok] == []  # every customer got every answer, first time
    stored = client.stored_events(ctx.db_url, scripts)
    _check_conversations(scripts, turns, stored)
    by_id = {t.message_id: t for events in stored.values() for t in client.stored_turns(events)}
    sources = collections.Counter()
    for turn in turns:
        kept = by_id[turn.message_id]
        if "action_llm_reply" not in kept.actions:
            continue
        for name, bot in kept.said_by:
            metadata = bot.get("metadata") or {}
            if name != "action_llm_reply":
                continue
            sources[metadata.get("source")] += 1
            assert metadata.get("source") in LLM_SOURCES, metadata
            if metadata.get("source") == "fallback":  # the polite template, saying why
                assert bot["text"] in responses["utter_llm_fallback"]
                assert str(metadata.get("llm_error")).startswith(("connection", "timeout")), metadata
    spanning = [t for t in turns if t.started < happened["killed"] < t.finished]
    errors = connection_errors() - errors_before
    print(f"generator killed with {happened['depth']:.0f} requests on it, back after "
          f"{happened['back'] - happened['killed']:.1f} s: {len(turns)} turns ({len(spanning)} in flight at the kill), "
          f"LLM replies {dict(sources)}, {errors:.0f} generator calls failed to connect or were cut")
    assert spanning and errors >= 1 and sources["fallback"] >= 1, (len(spanning), errors, sources)

    # Back: knowledge answers again, under load, with no restart of Rasa or the action server.
    again = client.mixed_scripts(f"{ctx.tag}-genkill-again", 8, 3, llm_every=2)
    turns, _ = asyncio.run(client.run_load(ctx.webhook, again, timeout_s=60))
    assert [t for t in turns if not t.ok] == []
    stored = client.stored_events(ctx.db_url, again)
    _check_conversations(again, turns, stored)
    answered = collections.Counter(client.answered_by(turns, stored).values())
    print(f"after the restart: {dict(answered)}")
    assert answered["knowledge"] + answered["llm"] + answered["no_knowledge"] + answered["clarify"] \
        > answered["fallback"], answered
    assert [s.process.pid for s in [*ctx.so.rasa, *actions]] == pids
    sender = f"{ctx.tag}-genkill-after"
    status, reply = ctx.say(sender, "my card still hasn't arrived")
    assert status == 200 and "Source: Card delivery and tracking" in _texts(reply)[0], reply
    assert ctx.last_bot(sender)["metadata"]["source"] in {"knowledge", "llm"}


# --- 8. security ------------------------------------------------------------------------------

# --- 8. RabbitMQ goes away under load ----------------------------------------------------------

def _outbox_waiting(db_url: str, prefix: str) -> int:
    """Rows of these conversations still in the event outbox (addons/outbox.py)."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT COUNT(*) FROM event_outbox WHERE sender_id LIKE :p"),
                                      {"p": f"{prefix}%"}).scalar()
    finally:
        engine.dispose()


def _as_published(event: Dict[str, Any]) -> str:
    """A stored event as the broker's message carries it (without sender_id)."""
    return json.dumps({k: v for k, v in event.items() if k != "_id"} | {"event": event["event"]}, sort_keys=True)


def test_rabbitmq_down_under_load_with_a_replica_killed_loses_no_event(ctx):
    """RabbitMQ becomes unreachable for both replicas under load (their relay to it is
    cut); one replica is killed while it is away, after it stored turns of its own that
    it could not publish. Every customer is answered (turns cut by the kill are sent
    again); once RabbitMQ is back, every event the tracker store holds reaches the
    queue, in each conversation's order, each message id once (a message whose confirm
    the cut lost may come twice, with the same id and body: at most one)."""
    victim, survivor = ctx.so.rasa
    victim_port = ctx.replica_port(victim)
    prefix = f"{ctx.tag}-broker"
    scripts = client.mixed_scripts(prefix, 10, 6)
    logs_before = len(_log(survivor))
    happened: Dict[str, Any] = {}
    probe_sender = f"{prefix}-probe"

    def restart() -> None:
        victim.process.wait(10)
        ctx.so.restart(victim)

    restarter = threading.Thread(target=restart, daemon=True)

    async def scenario():
        load = asyncio.ensure_future(client.run_load(
            ctx.webhook, scripts, retries=8, retry_delay_s=1.0, timeout_s=LOCK_LIFETIME_S + 60))
        await asyncio.sleep(3)  # conversations under way, their events published
        ctx.broker.cut()
        happened["cut"] = time.monotonic()
        # a turn the victim stores (and cannot publish) for sure, besides the load's
        happened["probe"] = await asyncio.get_running_loop().run_in_executor(None, lambda: stack.post(
            f"{ctx.so.rasa_urls[0]}/webhooks/rest/webhook",
            json.dumps({"sender": probe_sender, "message": "hello"}).encode(), 30))
        await asyncio.sleep(1)
        os.killpg(victim.process.pid, signal.SIGKILL)
        happened["killed"] = time.monotonic()
        # started again at once (it needs no RabbitMQ to start), while the load goes on
        restarter.start()
        turns, _ = await load
        happened["waiting"] = _outbox_waiting(ctx.db_url, prefix)
        ctx.broker.restore()
        happened["back"] = time.monotonic()
        return turns

    try:
        turns = asyncio.run(scenario())
        assert [t for t in turns if not t.ok] == []  # every customer got every answer
        assert happened["probe"][0] == 200, happened["probe"]
        unpublished = [t for t in turns if _served_by(t) == victim_port
                       and happened["cut"] < t.finished < happened["killed"]]
        assert happened["waiting"] > 0, "nothing waited in the outbox while RabbitMQ was away"
        deadline = time.monotonic() + 30
        while _outbox_waiting(ctx.db_url, prefix):
            assert time.monotonic() < deadline, "the outbox was not emptied after RabbitMQ came back"
            time.sleep(0.2)
        drained_after = time.monotonic() - happened["back"]

        stored = client.stored_events(ctx.db_url, [*scripts, probe_sender])
        _check_conversations(scripts, turns, stored, retried_ok=True)
        assert [e.get("text") for e in stored[probe_sender] if e["event"] == "user"] == ["hello"]
        published: Dict[str, List[Dict[str, Any]]] = collections.defaultdict(list)
        ids: Dict[str, Dict[str, str]] = collections.defaultdict(dict)
        repeated = 0
        for message in asyncio.run(_drain_messages(ctx.queue)):
            body = json.loads(message["body"])
            sender = body.pop("sender_id")
            if sender not in stored:
                continue
            canonical = json.dumps(body, sort_keys=True)
            assert message["message_id"], "a message without an id: consumers could not drop repeats"
            if message["message_id"] in ids[sender]:  # a repeat: the same id, the same event
                assert ids[sender][message["message_id"]] == canonical
                repeated += 1
                continue
            ids[sender][message["message_id"]] = canonical
            published[sender].append(canonical)
        differ = {}
        for sender in stored:
            expected = [_as_published(e) for e in stored[sender]]
            if published[sender] != expected:
                differ[sender] = (f"{len(expected)} stored, {len(published[sender])} published, "
                                  f"{len(collections.Counter(expected) - collections.Counter(published[sender]))} lost")
        assert not differ, f"broker and tracker store differ (lost, extra or out of order): {differ}"
        for sender in stored:
            order = [int(i) for i in ids[sender]]
            assert order == sorted(order), f"{sender}: message ids out of order"
        assert repeated <= 1, f"{repeated} messages published twice"
        assert "event outbox: publishing failed" in _log(survivor)[logs_before:], "was RabbitMQ really away?"
        print(f"RabbitMQ down {happened['back'] - happened['cut']:.1f} s: {happened['waiting']} events waited "
              f"in the outbox, {len(unpublished) + 1} turns stored by the killed replica meanwhile; outbox empty "
              f"{drained_after:.1f} s after RabbitMQ came back; "
              f"{sum(len(v) for v in published.values())} events published, {repeated} repeated")
    finally:
        if "cut" in happened and "back" not in happened:
            ctx.broker.restore()
        if restarter.is_alive():
            restarter.join(120)
        if not victim.running():
            ctx.so.restart(victim)


async def _drain_messages(queue: str, settle_s: float = 2.0) -> List[Dict[str, Any]]:
    """Every message in the queue (body and message_id), until none arrives for settle_s seconds."""
    import aio_pika

    messages: List[Dict[str, Any]] = []
    async with await aio_pika.connect(RABBITMQ_URL) as connection:
        channel = await connection.channel()
        source = await channel.get_queue(queue, ensure=True)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle_s:
            message = await source.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            messages.append({"body": message.body, "message_id": message.message_id})
            quiet_since = time.monotonic()
    return messages



def _status(url: str, method: str = "GET", body: Optional[bytes] = None) -> int:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _non_loopback_ipv4() -> List[str]:
    addresses = []
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
            except OSError:
                continue
        address = socket.inet_ntoa(packed[20:24])
        if not address.startswith("127."):
            addresses.append(address)
    return addresses


def _listening_addresses(port: int) -> List[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp, tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                if len(address) == 8:
                    found.append(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
                else:
                    found.append(socket.inet_ntop(socket.AF_INET6, struct.pack("<4I", *[
                        int(address[i:i + 8], 16) for i in range(0, 32, 8)])))
    return found


def test_rasa_api_needs_the_token_and_internal_services_stay_on_loopback(ctx):
    sender = f"{ctx.tag}-secret"
    assert ctx.say(sender, "my card still hasn't arrived")[0] == 200
    for base in [ctx.so.url, *ctx.so.rasa_urls]:  # the load balancer and each replica
        tracker = f"{base}/conversations/{sender}/tracker"
        assert _status(tracker) == 401
        assert _status(f"{tracker}?token=wrong") == 401
        assert _status(f"{base}/model", "PUT", json.dumps({"model_file": "/tmp/evil.tar.gz"}).encode()) == 401
        assert _status(f"{base}/model", "DELETE") == 401
        assert _status(f"{base}/conversations/{sender}/tracker/events", "POST",
                       json.dumps({"event": "slot", "name": "x", "value": 1}).encode()) == 401
    # with the token the API works, and the model was not changed by the refused calls
    status = get_json(f"{ctx.so.url}/status?token={API_TOKEN}")
    assert Path(status["model_file"]).name == Path(ctx.so.rasa[0].argv[ctx.so.rasa[0].argv.index("--model") + 1]).name
    tracker = get_json(f"{ctx.so.url}/conversations/{sender}/tracker?token={API_TOKEN}")
    assert [e["text"] for e in tracker["events"] if e["event"] == "user"] == ["my card still hasn't arrived"]

    # The action server, the generator and the Rasa replicas listen on loopback only
    # (customers reach Rasa through nginx). Their defaults are loopback, and
    # BIND_HOST=0.0.0.0 (deploy/scale-out.env) opens Rasa, not them.
    from generator.settings import Settings
    from ops import settings

    assert Settings().host == "127.0.0.1"
    env = {k: v for k, v in os.environ.items() if k not in ("ACTIONS_HOST", "GENERATOR_HOST")}
    hosts = subprocess.run(
        [str(settings.RASA_VENV / "bin" / "python"), "-c",
         "from ops import settings as s; print(s.BIND_HOST, s.ACTIONS_HOST, s.GENERATOR_HOST)"],
        cwd=settings.ROOT, env={**env, "BIND_HOST": "0.0.0.0"}, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert hosts == ["0.0.0.0", "127.0.0.1", "127.0.0.1"]
    internal = [*ctx.so.actions, *ctx.so.rasa, *([ctx.so.generator] if ctx.so.generator else [])]
    for service in internal:
        port = int(ctx.replica_port(service))
        assert _listening_addresses(port) == ["127.0.0.1"], (service.name, _listening_addresses(port))
        for address in _non_loopback_ipv4():
            with socket.socket() as sock:
                sock.settimeout(2)
                assert sock.connect_ex((address, port)) != 0, f"{service.name} reachable on {address}:{port}"
