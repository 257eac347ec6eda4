"""Rate limits of the REST and socket.io channels (addons/channels.py), and their settings.

Two token buckets per message: one per conversation (the sender id, or the socket.io
session id) and one per client address. A message that finds either bucket empty is
refused before Rasa sees it: REST answers 429 with Retry-After, socket.io a `bot_uttered`
the widget shows, with `error: {status: 429, retry_after}`. A client's refused requests
count against its address too, so a flood of bad requests is limited as well.

Settings (assistant/config.py `rate_limits()`, the README's configuration table;
ops/nginx puts the same per-client limit in nginx): RATE_LIMIT_SENDER_PER_MIN and
_BURST (per conversation), RATE_LIMIT_CLIENT_PER_MIN and _BURST (per client address),
RATE_LIMIT_EXEMPT (not limited; default loopback: this machine's own tools, the
benchmarks, `make shell`), RATE_LIMIT_REFUSAL_DELAY_S (a refusal is held that long, at
most until the client may send again), RATE_LIMIT_TRUSTED_PROXIES (load balancers whose
X-Forwarded-For names the client; default loopback).

The buckets live in the Rasa process: with several replicas a conversation whose
messages are spread over them gets up to that many times the per-sender limit, and
nginx (one per deployment) holds the per-client limit for all of them.
"""
from __future__ import annotations

import asyncio
import ipaddress
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

from assistant.config import Network, networks
from assistant.config import RateLimits as Settings  # built by config.rate_limits()

__all__ = ["MAX_BUCKETS", "Bucket", "RateLimiter", "Settings", "TokenBuckets", "hold_refusal", "networks",
           "retry_after"]

# The most buckets kept per limit; beyond it, full (idle) buckets are dropped first.
MAX_BUCKETS = 100_000


def _in(address: str, nets: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in nets)


@dataclass
class Bucket:
    tokens: float
    updated: float


@dataclass
class TokenBuckets:
    """`per_min` tokens a minute into a bucket of `burst` per key; a request takes one."""

    per_min: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    buckets: Dict[str, Bucket] = field(default_factory=dict)

    def take(self, key: str) -> float:
        """0 when the request may go ahead (a token is taken), else the seconds until it may."""
        if self.per_min <= 0:
            return 0.0
        now = self.clock()
        rate = self.per_min / 60.0
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self._prune(now, rate)
            bucket = self.buckets[key] = Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / rate

    def _prune(self, now: float, rate: float) -> None:
        full = [k for k, b in self.buckets.items() if b.tokens + (now - b.updated) * rate >= self.burst]
        for key in full or list(self.buckets)[: len(self.buckets) // 2]:
            del self.buckets[key]


class RateLimiter:
    """The channels' limits: `check(sender, client)` -> seconds to wait, 0 when allowed."""

    def __init__(self, settings: Optional[Settings] = None, clock: Callable[[], float] = time.monotonic):
        self.settings = settings or Settings.from_env()
        self.senders = TokenBuckets(self.settings.sender_per_min, self.settings.sender_burst, clock)
        self.clients = TokenBuckets(self.settings.client_per_min, self.settings.client_burst, clock)
        self._lock = threading.Lock()

    def exempt(self, client: str) -> bool:
        return _in(client, self.settings.exempt)

    def check_client(self, client: str) -> float:
        """Count one request of this client address (before anything else is read)."""
        if self.exempt(client):
            return 0.0
        with self._lock:
            return self.clients.take(client)

    def check_sender(self, sender: str, client: str) -> float:
        """Count one message of this conversation."""
        if self.exempt(client):
            return 0.0
        with self._lock:
            return self.senders.take(sender)

    def client_address(self, peer: str, forwarded_for: Optional[str]) -> str:
        """The client: the peer, or, when the peer is a trusted proxy, the right-most
        X-Forwarded-For address that is not one (what a client puts further left is
        its own claim, not believed)."""
        address = peer or ""
        if forwarded_for and _in(address, self.settings.trusted_proxies):
            for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
                address = hop
                if not _in(hop, self.settings.trusted_proxies):
                    break
        return address


async def hold_refusal(wait: float, settings: Settings) -> None:
    """Hold a refused request for min(wait, RATE_LIMIT_REFUSAL_DELAY_S) seconds before the
    refusal goes out: a client that ignores Retry-After then sends at most one request a
    second per connection, and costs the server a sleeping task instead of the work of
    answering thousands of refusals (bench/results/flood.md)."""
    delay = min(wait, settings.refusal_delay_s)
    if delay > 0:
        await asyncio.sleep(delay)


def retry_after(seconds: float) -> int:
    """Whole seconds for a Retry-After header (at least 1)."""
    return max(1, math.ceil(seconds))
