"""Small pure pieces: stop-sequence handling and settings parsing."""

from __future__ import annotations

import pytest

from generator.engine import find_stop, unsafe_suffix
from generator.settings import Settings


def test_find_stop_picks_the_earliest():
    assert find_stop("abc. def\n", ("\n", ".")) == 3
    assert find_stop("abc", ("x",)) == -1
    assert find_stop("abc", ()) == -1


def test_unsafe_suffix_holds_back_partial_stops_and_broken_characters():
    assert unsafe_suffix("Hello Us", ("User:",)) == 2
    assert unsafe_suffix("Hello", ("User:",)) == 0
    assert unsafe_suffix("caf\ufffd", ()) == 1


def test_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GENERATOR_PORT", "9001")
    monkeypatch.setenv("GENERATOR_THREADS", "2")
    monkeypatch.setenv("GENERATOR_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GENERATOR_API_KEY", "k")
    s = Settings.from_env()
    assert (s.port, s.threads, s.cache_dir, s.api_key) == (9001, 2, tmp_path, "k")


def test_settings_defaults_work_without_env(monkeypatch):
    for name in ("GENERATOR_PORT", "GENERATOR_THREADS", "GENERATOR_API_KEY", "GENERATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    s = Settings.from_env()
    assert (s.host, s.port, s.threads, s.api_key) == ("127.0.0.1", 8000, 1, None)


def test_batching_settings_from_env(monkeypatch):
    monkeypatch.setenv("GENERATOR_MAX_BATCH", "8")
    monkeypatch.setenv("GENERATOR_PREFILL_TOKENS", "256")
    monkeypatch.setenv("GENERATOR_PREFIX_CACHE_ENTRIES", "0")
    monkeypatch.setenv("GENERATOR_DTYPE", "BFloat16")
    s = Settings.from_env()
    assert (s.max_batch, s.prefill_tokens, s.prefix_cache_entries, s.dtype) == (8, 256, 0, "bfloat16")


@pytest.mark.parametrize("name, value", [("GENERATOR_PORT", "eighty"), ("GENERATOR_THREADS", "0"),
                                         ("GENERATOR_DEFAULT_MAX_TOKENS", "999"), ("GENERATOR_MAX_BATCH", "0"),
                                         ("GENERATOR_DTYPE", "int4")])
def test_bad_settings_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError):
        Settings.from_env()
