"""Rate limits (issue 19): per conversation and per client address on the REST and
socket.io channels (addons/rate_limit.py, addons/channels.py), and per client address in
nginx for scale-out (ops/nginx.py, deploy/nginx.conf.j2).

The end-to-end tests run one stack with small limits and without the loopback exemption;
clients are told apart by X-Forwarded-For, which Rasa believes from loopback (a local
nginx), so one machine can play several clients.
"""
from __future__ import annotations

import asyncio
import json
import os
import queue
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

import jwt
import pytest
import socketio

from addons import channels
from addons.rate_limit import RateLimiter, Settings, TokenBuckets, hold_refusal, networks, retry_after
from ops import nginx, settings, stack

JWT_KEY = "rate-limit-test-jwt-key-0123456789abcdef"
ORIGIN = "http://localhost:8080"
LIMITS = {
    "RATE_LIMIT_EXEMPT": "",  # loopback is limited too: the test clients are on this machine
    "RATE_LIMIT_SENDER_PER_MIN": "30",
    "RATE_LIMIT_SENDER_BURST": "5",
    "RATE_LIMIT_CLIENT_PER_MIN": "12",
    "RATE_LIMIT_CLIENT_BURST": "15",
    # refusals at once: these tests count what a burst of requests gets, back to back
    # (the delay is tested on its own: test_a_refusal_is_held_until_the_client_may_send)
    "RATE_LIMIT_REFUSAL_DELAY_S": "0",
}


# --- the limiter ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_the_rate():
    clock = Clock()
    buckets = TokenBuckets(per_min=30, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(2.0)  # one token every 2 s
    assert buckets.take("b") == 0  # another key has its own bucket
    clock.now += 1.0
    assert buckets.take("a") == pytest.approx(1.0)
    clock.now += 1.0
    assert buckets.take("a") == 0
    clock.now += 3600
    assert [buckets.take("a") for _ in range(4)][-1] > 0  # refilled to the burst, not beyond
    assert retry_after(0.2) == 1 and retry_after(2.01) == 3


def test_a_refusal_is_held_until_the_client_may_send():
    """A refused request waits min(the wait, RATE_LIMIT_REFUSAL_DELAY_S) before its 429."""
    async def held(wait: float, delay: float) -> float:
        started = time.monotonic()
        await hold_refusal(wait, Settings(refusal_delay_s=delay))
        return time.monotonic() - started

    assert 0.25 <= asyncio.run(held(0.3, 1.0)) < 0.9  # the wait, when shorter
    assert 0.45 <= asyncio.run(held(5.0, 0.5)) < 1.4  # the delay, when shorter
    assert asyncio.run(held(5.0, 0.0)) < 0.1  # 0: at once
    assert Settings.from_env({}).refusal_delay_s == 1.0
    assert Settings.from_env({"RATE_LIMIT_REFUSAL_DELAY_S": "0.2"}).refusal_delay_s == 0.2


def test_zero_turns_a_limit_off():
    buckets = TokenBuckets(per_min=0, burst=1)
    assert all(buckets.take("a") == 0 for _ in range(1000))


def test_settings_come_from_the_environment_and_bad_ones_are_named():
    default = Settings.from_env({})
    assert (default.sender_per_min, default.sender_burst, default.client_per_min, default.client_burst) == (
        60, 20, 120, 20)
    assert default.exempt == tuple(networks("127.0.0.0/8 ::1")) == default.trusted_proxies
    mine = Settings.from_env({**LIMITS, "RATE_LIMIT_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1"})
    assert (mine.sender_per_min, mine.sender_burst, mine.client_per_min, mine.client_burst) == (30, 5, 12, 15)
    assert mine.exempt == () and [str(n) for n in mine.trusted_proxies] == ["10.0.0.0/8", "192.168.1.1/32"]
    for name, value in [("RATE_LIMIT_SENDER_PER_MIN", "fast"), ("RATE_LIMIT_CLIENT_BURST", "-1"),
                        ("RATE_LIMIT_EXEMPT", "localhost"), ("RATE_LIMIT_CLIENT_PER_MIN", "nan")]:
        with pytest.raises(ValueError, match=name):
            Settings.from_env({name: value})


def test_rasa_refuses_to_start_with_a_bad_rate_limit_setting(monkeypatch):
    monkeypatch.setenv("RATE_LIMIT_SENDER_BURST", "many")
    monkeypatch.setattr(channels, "_rate_limiter", None)
    with pytest.raises(SystemExit, match="RATE_LIMIT_SENDER_BURST"):
        channels.RestInput.from_credentials(None)
    monkeypatch.setattr(channels, "_rate_limiter", None)


def test_loopback_is_exempt_by_default_and_limits_are_per_sender_and_per_client():
    clock = Clock()
    limiter = RateLimiter(Settings(sender_per_min=60, sender_burst=2, client_per_min=60, client_burst=3,
                                   exempt=tuple(networks("127.0.0.0/8"))), clock)
    assert all(limiter.check_client("127.0.0.1") == 0 and limiter.check_sender("s", "127.0.0.1") == 0
               for _ in range(100))
    assert [limiter.check_sender("s1", "203.0.113.1") for _ in range(3)][2] > 0
    assert limiter.check_sender("s2", "203.0.113.1") == 0  # another conversation of the same client
    assert [limiter.check_client("203.0.113.1") for _ in range(4)][3] > 0
    assert limiter.check_client("203.0.113.2") == 0  # another client


def test_the_client_is_named_by_a_trusted_proxy_only():
    limiter = RateLimiter(Settings(trusted_proxies=tuple(networks("127.0.0.1 10.0.0.0/8"))))
    # a client talking to Rasa directly cannot choose its address
    assert limiter.client_address("203.0.113.5", "198.51.100.1") == "203.0.113.5"
    # behind nginx: the address nginx appended, not what the client put further left
    assert limiter.client_address("127.0.0.1", "198.51.100.1, 203.0.113.5") == "203.0.113.5"
    assert limiter.client_address("10.1.2.3", "198.51.100.1, 203.0.113.5, 10.0.0.7") == "203.0.113.5"
    assert limiter.client_address("127.0.0.1", None) == "127.0.0.1"
    assert limiter.client_address("127.0.0.1", "garbage") == "garbage"  # its own bucket, nobody else's


def test_buckets_are_bounded(monkeypatch):
    from addons import rate_limit

    monkeypatch.setattr(rate_limit, "MAX_BUCKETS", 100)
    clock = Clock()
    buckets = TokenBuckets(per_min=60, burst=5, clock=clock)
    for i in range(1000):
        buckets.take(f"client-{i}")
        clock.now += 0.01
    assert len(buckets.buckets) <= 100


# --- nginx ---------------------------------------------------------------------------------


def test_deploy_nginx_conf_is_the_template_rendered():
    """deploy/nginx.conf (compose) and the scale-out stack's nginx come from deploy/nginx.conf.j2."""
    assert nginx.COMPOSE_CONFIG.read_text() == nginx.compose_config(), "run `python -m ops.nginx`"
    generated = nginx.nginx_config(settings.ROOT / "build", 8080, [5005, 5006], actions_port=5055,
                                   actions_ports=[5056])
    compose = nginx.compose_config()
    for shared in ("upstream rasa_sticky", "location /socket.io/", "proxy_read_timeout 300s", "location = /lb-health"):
        assert shared in compose and shared in generated
    assert "server rasa:5005" in compose and "upstream actions" not in compose and "events {" not in compose
    assert "server 127.0.0.1:5006" in generated and "upstream actions" in generated and "events {" in generated


def test_deploy_nginx_has_the_default_per_client_limit():
    conf = nginx.COMPOSE_CONFIG.read_text()
    default = Settings()
    assert f"rate={int(default.client_per_min)}r/m" in conf
    assert f"burst={default.client_burst} nodelay" in conf
    assert "limit_req_status 429" in conf and "add_header Retry-After" in conf
    generated = nginx.nginx_config(settings.ROOT / "build", 8080, [5005], rate_limit=default)
    for directive in ("limit_req_zone", f"rate={int(default.client_per_min)}r/m",
                      f"burst={default.client_burst} nodelay", "limit_req_status 429", "Retry-After 1"):
        assert directive in generated
    assert "limit_req" not in nginx.nginx_config(settings.ROOT / "build", 8080, [5005],
                                                 rate_limit=Settings(client_per_min=0))


# --- end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rasa_env():
    return {**LIMITS, "SOCKETIO_JWT_KEY": JWT_KEY}


def post(url: str, sender: str, text: str, client: Optional[str] = None,
         headers: Optional[Dict[str, str]] = None, body: Optional[bytes] = None) -> Tuple[int, Dict[str, str], Any]:
    """One REST message (or `body`), from `client` (X-Forwarded-For) when given: status,
    headers, decoded body."""
    request = urllib.request.Request(
        f"{url}/webhooks/rest/webhook", data=body or json.dumps({"sender": sender, "message": text}).encode(),
        headers={"Content-Type": "application/json", **({"X-Forwarded-For": client} if client else {}),
                 **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def assert_too_many(status: int, headers: Dict[str, str], body: Any, by: str = "rasa") -> int:
    """A 429 with Retry-After and a JSON error, from Rasa's channel or from nginx."""
    assert status == 429, (status, body)
    seconds = int(headers["Retry-After"])
    assert 1 <= seconds <= 60
    assert isinstance(body, dict) and body.get("retry_after") == seconds
    expected = channels.RATE_LIMITED_TEXT.format(seconds=seconds) if by == "rasa" else json.loads(
        nginx.RATE_LIMITED_JSON % seconds)["error"]
    assert body.get("error") == expected
    return seconds


def test_a_flooding_sender_gets_429s_while_another_is_served(running_stack):
    url = running_stack.rasa_url
    flood = [post(url, "flooder", "/greet", client="198.51.100.10") for _ in range(20)]
    statuses = [status for status, _, _ in flood]
    assert statuses[:5] == [200] * 5, statuses  # the burst
    refused = [f for f in flood if f[0] == 429]
    assert len(refused) >= 10 and set(statuses) == {200, 429}, statuses
    for status, headers, body in refused:
        assert_too_many(status, headers, body)
    # another customer, from another address, is served meanwhile
    status, _, reply = post(url, "patient", "/greet", client="198.51.100.11")
    assert status == 200 and reply and reply[0]["text"]
    # nothing of a refused message reached Rasa
    stored = [e for e in running_stack.events("flooder") if e["event"] == "user"]
    assert len(stored) == statuses.count(200)
    # after Retry-After the flooder is served again
    time.sleep(assert_too_many(*refused[-1]))
    assert post(url, "flooder", "/greet", client="198.51.100.10")[0] == 200


def test_a_flooding_client_gets_429s_while_another_client_is_served(running_stack):
    url = running_stack.rasa_url
    # one address, a new conversation each time: the per-client limit (burst 15)
    flood = [post(url, f"bot-{i}", "/greet", client="203.0.113.20") for i in range(30)]
    statuses = [status for status, _, _ in flood]
    assert statuses[:15] == [200] * 15 and statuses.count(429) >= 10, statuses
    assert_too_many(*next(f for f in flood if f[0] == 429))
    # malformed requests count too (and are refused before they are read)
    assert post(url, "", "", client="203.0.113.20", body=b"not json")[0] == 429
    assert post(url, "someone", "/greet", client="203.0.113.21")[0] == 200
    # a client cannot pick another's address: X-Forwarded-For from a client Rasa does not
    # trust as a proxy would be ignored; from loopback (a local nginx) the last hop counts
    assert post(url, "spoof", "/greet", client="203.0.113.21, 203.0.113.20")[0] == 429
    assert post(url, "spoof", "/greet", client="203.0.113.20, 203.0.113.22")[0] == 200


def _socket(url: str, session_id: str) -> Tuple[socketio.Client, "queue.Queue[Any]"]:
    now = int(time.time())
    token = jwt.encode({"sub": session_id, "iat": now, "exp": now + 600}, JWT_KEY, algorithm="HS256")
    client = socketio.Client(reconnection=False, websocket_extra_options={"origin": ORIGIN})
    got: "queue.Queue[Any]" = queue.Queue()
    confirmed: "queue.Queue[Any]" = queue.Queue()
    client.on("bot_uttered", got.put)
    client.on("session_confirm", confirmed.put)
    client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    client.emit("session_request", {"session_id": session_id})
    assert confirmed.get(timeout=10) == session_id
    return client, got


def _drain(got: "queue.Queue[Any]", count: int, timeout: float = 60) -> List[Dict[str, Any]]:
    messages = [got.get(timeout=timeout) for _ in range(count)]
    time.sleep(1.0)
    while not got.empty():
        messages.append(got.get_nowait())
    return messages


def test_socketio_a_flooding_session_gets_an_error_the_widget_shows(running_stack):
    flooder, flood = _socket(running_stack.rasa_url, "sio-flooder")
    other, others = _socket(running_stack.rasa_url, "sio-patient")
    try:
        for _ in range(10):
            flooder.emit("user_uttered", {"message": "/greet", "session_id": "sio-flooder"})
        messages = _drain(flood, 10)
        other.emit("user_uttered", {"message": "/greet", "session_id": "sio-patient"})
        served = _drain(others, 1)
    finally:
        flooder.disconnect()
        other.disconnect()
    errors = [m for m in messages if "error" in m]
    assert len(errors) >= 4 and len(messages) - len(errors) >= 5, messages
    for message in errors:
        assert message["error"]["status"] == 429 and message["error"]["retry_after"] >= 1
        assert message["text"].startswith("You're sending messages faster than I can answer")
    assert served and "error" not in served[0] and served[0]["text"]
    stored = [e for e in running_stack.events("sio-flooder") if e["event"] == "user"]
    assert len(stored) == len(messages) - len(errors)


@pytest.mark.skipif(not os.access(nginx.NGINX, os.X_OK), reason=f"nginx is not installed ({nginx.NGINX})")
def test_nginx_limits_each_client_for_all_replicas(running_stack, tmp_path):
    port = stack.free_port()
    rasa_port = int(running_stack.rasa_url.rsplit(":", 1)[1])
    limits = Settings(client_per_min=60, client_burst=3, exempt=())
    balancer = nginx.nginx_service(tmp_path, port, nginx.nginx_config(tmp_path, port, [rasa_port], rate_limit=limits))
    with stack.running([balancer], timeout=30):
        url = f"http://127.0.0.1:{port}"
        results = [post(url, f"via-nginx-{i}", "/greet") for i in range(8)]
        statuses = [status for status, _, _ in results]
        assert statuses[:3] == [200] * 3 and statuses.count(429) >= 4, statuses
        status, headers, body = next(r for r in results if r[0] == 429)
        assert_too_many(status, headers, body, by="nginx")
        # the bank's back end (an Authorization header) is left to Rasa's checks
        assert post(url, "via-nginx-back-end", "/greet", headers={"Authorization": "Bearer x"})[0] == 200
        assert urllib.request.urlopen(f"{url}/lb-health", timeout=5).status == 200
