"""Agent replies: the time from an agent's send in the console to the message arriving
at the customer's socket.io connection (what the widget renders at once).

    .venvs/rasa/bin/python -m bench.handoff [--replies 50] [--replicas 1|2]

A stack of its own: Rasa (the newest model in models/; with --replicas 2 two replicas
sharing a SQLite tracker store, Redis locks and SOCKETIO_REDIS_URL, the customer's
socket on the first and the console calling the second) and the agent console on a
fresh bank database. A customer connects over socket.io as the widget does and is
queued for a person; an agent signs in, claims and sends `--replies` replies one after
the other through the console's HTTP API (POST /api/reply, with session and CSRF token).
Each is timed from the POST to its `bot_uttered` at the customer's socket. Prints p50,
p95 and max and writes bench/results/handoff.md. Needs Redis only with --replicas 2.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import List

from ops import settings, stack
from ops.train import latest_model

RESULTS = settings.ROOT / "bench" / "results" / "handoff.md"
API_TOKEN = "bench-handoff-token"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
ORIGIN = "http://127.0.0.1:9"
PASSWORD = "bench-agent-password"


def _percentile(values: List[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(replies: int, replicas: int) -> dict:
    import requests
    import socketio
    import sqlalchemy as sa

    from console import handoffs as hq

    model = latest_model()
    if model is None:
        raise SystemExit("no trained model in models/: run `make train`")
    work = Path(tempfile.mkdtemp(prefix="bench-handoff-"))
    bank_url = f"sqlite:///{work / 'bank.db'}"
    env = {"TRACKER_STORE_URL": f"sqlite:///{work / 'tracker.db'}", "CORS_ORIGINS": ORIGIN,
           "SOCKETIO_JWT_KEY": "", "REST_CHANNEL_TOKEN": ""}
    if replicas > 1:
        env.update(LOCK_STORE_URL=REDIS_URL, LOCK_STORE_KEY_PREFIX=f"bench-{uuid.uuid4().hex[:8]}",
                   SOCKETIO_REDIS_URL=REDIS_URL, SOCKETIO_REDIS_CHANNEL=f"bench-{uuid.uuid4().hex[:8]}")
    os.environ["CORS_ORIGINS"] = ORIGIN  # rasa_service() passes it to --cors
    ports = [stack.free_port() for _ in range(replicas)]
    rasa = [stack.rasa_service(port, work, model, stack.endpoints_for(stack.free_port(), work), env=env,
                               extra_args=["--enable-api", "--auth-token", API_TOKEN], name=f"rasa-{i}")
            for i, port in enumerate(ports)]
    console_port = stack.free_port()
    console = stack.console_service(console_port, work, env={
        "BANK_DB_URL": bank_url, "CONSOLE_RASA_URL": f"http://127.0.0.1:{ports[-1]}", "RASA_API_TOKEN": API_TOKEN})
    added = subprocess.run([sys.executable, "-m", "console", "agent-add", "bench", "--password-stdin"],
                           input=PASSWORD + "\n", text=True, capture_output=True, cwd=settings.ROOT,
                           env={**os.environ, "BANK_DB_URL": bank_url}, timeout=60)
    if added.returncode:
        raise SystemExit(added.stderr)
    services = [*rasa, console]
    try:
        for service in services:
            service.start()
        stack.wait_healthy(services, settings.STARTUP_TIMEOUT_S)
        sender = f"bench-{uuid.uuid4().hex}"
        got: "queue.Queue" = queue.Queue()
        confirmed: "queue.Queue" = queue.Queue()
        client = socketio.Client(reconnection=False, websocket_extra_options={"origin": ORIGIN})
        client.on("bot_uttered", lambda data: got.put((time.perf_counter(), data)))
        client.on("session_confirm", confirmed.put)
        client.connect(f"http://127.0.0.1:{ports[0]}", transports=["websocket"], wait_timeout=10)
        client.emit("session_request", {"session_id": sender})
        confirmed.get(timeout=10)
        # the customer asked for a person: their message (over socket.io) and the queue row
        user = [{"event": "user", "text": "can I talk to a person", "input_channel": "socketio",
                 "timestamp": time.time(), "parse_data": {"intent": {"name": "request_human", "confidence": 1.0}}},
                {"event": "pause"}]
        request = urllib.request.Request(
            f"http://127.0.0.1:{ports[0]}/conversations/{sender}/tracker/events?token={API_TOKEN}",
            data=json.dumps(user).encode(), headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(request, timeout=30).close()
        engine = hq.sync_engine(bank_url)
        with engine.begin() as db:
            db.execute(sa.insert(hq.handoffs).values(sender_id=sender, customer_id=None, status=hq.OPEN,
                                                     reason="asked for a person", requested_at=hq.now()))
        engine.dispose()
        base = f"http://127.0.0.1:{console_port}"
        agent = requests.Session()
        login = agent.get(f"{base}/login", timeout=10).text
        csrf = login.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        agent.post(f"{base}/login", data={"csrf": csrf, "name": "bench", "password": PASSWORD}, timeout=30)
        page = agent.get(f"{base}/", timeout=10).text
        token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        headers = {"X-CSRF-Token": token}
        assert agent.post(f"{base}/api/claim", json={"sender": sender}, headers=headers, timeout=10).ok
        times: List[float] = []
        for n in range(replies + 3):  # the first 3 warm the connections up and are not counted
            text = f"agent reply {n}"
            started = time.perf_counter()
            response = agent.post(f"{base}/api/reply", json={"sender": sender, "text": text}, headers=headers,
                                  timeout=30)
            if not response.ok:
                raise SystemExit(f"reply {n}: {response.status_code} {response.text}")
            arrived, data = got.get(timeout=30)
            if data.get("text") != text:
                raise SystemExit(f"reply {n}: the socket got {data!r}")
            if n >= 3:
                times.append(arrived - started)
        client.disconnect()
    finally:
        stack.stop_all(services)
    return {"replies": len(times), "replicas": replicas, "p50_ms": round(statistics.median(times) * 1000, 1),
            "p95_ms": round(_percentile(times, 0.95) * 1000, 1), "max_ms": round(max(times) * 1000, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.handoff", description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=50)
    parser.add_argument("--replicas", type=int, default=1, choices=[1, 2])
    args = parser.parse_args(argv)
    figures = run(args.replies, args.replicas)
    line = (f"agent send -> customer's socket, {figures['replies']} replies, {figures['replicas']} Rasa "
            f"replica(s): p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, max {figures['max_ms']} ms")
    print(line)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = RESULTS.read_text().splitlines() if RESULTS.is_file() else []
    rows = {r.split("|")[1].strip(): r for r in previous if r.startswith("| ") and r.split("|")[1].strip().isdigit()}
    rows[str(figures["replicas"])] = (f"| {figures['replicas']} | {figures['replies']} | {figures['p50_ms']} ms | "
                                      f"{figures['p95_ms']} ms | {figures['max_ms']} ms | {time.strftime('%Y-%m-%d')} |")
    RESULTS.write_text(
        "# Agent replies: console send to the customer's socket (`python -m bench.handoff`)\n\n"
        "| Rasa replicas | replies | p50 | p95 | max | measured |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows[k] for k in sorted(rows)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
