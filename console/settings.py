"""Every setting of the agent console, read from the environment once, with laptop defaults."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _float(name: str, default: str) -> float:
    raw = os.environ.get(name, default)
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"refusing to start: {name}={raw!r} is not a number") from None


HOST = os.environ.get("CONSOLE_HOST") or os.environ.get("BIND_HOST", "127.0.0.1")
PORT = int(_float("CONSOLE_PORT", "8090"))
# Rasa (or nginx in front of its replicas) as the console reaches it, and its API token
# (RASA_API_TOKEN, else build/rasa-api-token as `make run` writes it).
RASA_URL = (os.environ.get("CONSOLE_RASA_URL") or f"http://127.0.0.1:{os.environ.get('RASA_PORT', '5005')}").rstrip("/")
RASA_TIMEOUT_S = _float("CONSOLE_RASA_TIMEOUT_S", "15")
# `1`: session cookies only over HTTPS (Secure); `0`: also over plain HTTP; `auto`:
# Secure when the request came over HTTPS (directly or X-Forwarded-Proto from a proxy).
COOKIE_SECURE = os.environ.get("CONSOLE_COOKIE_SECURE", "auto").strip().lower()
SESSION_HOURS = _float("CONSOLE_SESSION_HOURS", "12")
# Failed logins allowed per account name and per client address within the window.
LOGIN_ATTEMPTS = int(_float("CONSOLE_LOGIN_ATTEMPTS", "5"))
LOGIN_CLIENT_ATTEMPTS = int(_float("CONSOLE_LOGIN_CLIENT_ATTEMPTS", "20"))
LOGIN_WINDOW_S = _float("CONSOLE_LOGIN_WINDOW_S", "300")
# Longest agent reply or note, in characters (the channel's MAX_MESSAGE_CHARS).
MAX_TEXT_CHARS = int(_float("MAX_MESSAGE_CHARS", "4000"))
KNOWLEDGE_DIR = ROOT / os.environ.get("KNOWLEDGE_DIR", "knowledge")
