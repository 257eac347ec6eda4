"""Every setting of the action server, read once from the environment.

Defaults work on one machine with the local generator; point GENERATOR_URL at any
OpenAI-compatible server (vLLM, say) to swap the model without code changes.
"""
from __future__ import annotations

import os


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# Base URL of the OpenAI-compatible API, up to and including /v1.
GENERATOR_URL = os.environ.get("GENERATOR_URL", "http://127.0.0.1:8000/v1").rstrip("/")
GENERATOR_MODEL = os.environ.get("GENERATOR_MODEL", "SmolLM2-135M-Instruct")
GENERATOR_API_KEY = os.environ.get("GENERATOR_API_KEY", "")
# Whole-request timeout for one generation. Rasa waits 300 s for an action and the
# lock store holds a conversation 60 s, so this stays well inside both.
GENERATOR_TIMEOUT_S = _float("GENERATOR_TIMEOUT_S", 30.0)
GENERATOR_CONNECT_TIMEOUT_S = _float("GENERATOR_CONNECT_TIMEOUT_S", 2.0)

LLM_MAX_TOKENS = _int("LLM_MAX_TOKENS", 64)
LLM_TEMPERATURE = _float("LLM_TEMPERATURE", 0.0)
# How many recent user and bot messages the prompt carries.
LLM_HISTORY_MESSAGES = _int("LLM_HISTORY_MESSAGES", 6)
# Longer user messages are cut before they reach the prompt.
LLM_MAX_MESSAGE_CHARS = _int("LLM_MAX_MESSAGE_CHARS", 1000)

BANK_NAME = os.environ.get("BANK_NAME", "Lakeside Bank")
