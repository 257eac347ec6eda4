"""Staff sign-in: argon2id password hashes (argon2-cffi), server-side sessions, CSRF
tokens and a limit on failed logins.

The session cookie carries a random token; the database keeps only its SHA-256, with
the session's CSRF token, which every state-changing request must echo (header
`X-CSRF-Token` or form field `csrf`). The cookie is HttpOnly, SameSite=Strict and,
over HTTPS (or with CONSOLE_COOKIE_SECURE=1), Secure. Nothing else authenticates: a
customer's socket.io JWT or Rasa's token mean nothing here.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from typing import Deque, Dict, Optional, Tuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

COOKIE = "lsc_console"
LOGIN_CSRF_COOKIE = "lsc_console_login"
MIN_PASSWORD_CHARS = 10

_hasher = PasswordHasher()  # argon2id with the library's current parameters
# Verified when the account does not exist, so that a wrong name takes as long as a
# wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    return _hasher.hash(password)


def verify_password(password_hash: Optional[str], password: str) -> Tuple[bool, Optional[str]]:
    """(matches, a new hash when the stored one uses old parameters)."""
    try:
        _hasher.verify(password_hash or _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, None
    if password_hash is None:
        return False, None
    return True, _hasher.hash(password) if _hasher.check_needs_rehash(password_hash) else None


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: Optional[str], b: Optional[str]) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


class LoginLimiter:
    """At most `attempts` failed logins per account name and `client_attempts` per client
    address within `window_s` seconds; beyond that every login is refused (even a right
    password) until the oldest failure leaves the window."""

    def __init__(self, attempts: int, client_attempts: int, window_s: float) -> None:
        self.limits = {"ip": client_attempts, "name": attempts}
        self.window_s = window_s
        self._failures: Dict[str, Deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _keys(self, client: str, name: str) -> Tuple[str, str]:
        return f"ip:{client}", f"name:{name.strip().lower()[:64]}"

    def wait(self, client: str, name: str) -> float:
        """Seconds until a login may be tried again, or 0."""
        now = time.monotonic()
        longest = 0.0
        with self._lock:
            for key in self._keys(client, name):
                failures = self._failures.get(key)
                if not failures:
                    continue
                while failures and now - failures[0] > self.window_s:
                    failures.popleft()
                if len(failures) >= self.limits[key.split(":", 1)[0]]:
                    longest = max(longest, self.window_s - (now - failures[0]))
        return longest

    def failed(self, client: str, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in self._keys(client, name):
                self._failures[key].append(now)

    def succeeded(self, client: str, name: str) -> None:
        with self._lock:
            self._failures.pop(self._keys(client, name)[1], None)
