"""Small pure pieces: stop-sequence handling and settings parsing."""

from __future__ import annotations

import pytest
import torch

from generator.engine import CancelToken, SamplingParams, find_stop, unsafe_suffix
from generator.scheduler import Listener, Request, _penalised, _Row
from generator.settings import Settings


def test_find_stop_picks_the_earliest():
    assert find_stop("abc. def\n", ("\n", ".")) == 3
    assert find_stop("abc", ("x",)) == -1
    assert find_stop("abc", ()) == -1


def test_unsafe_suffix_holds_back_partial_stops_and_broken_characters():
    assert unsafe_suffix("Hello Us", ("User:",)) == 2
    assert unsafe_suffix("Hello", ("User:",)) == 0
    assert unsafe_suffix("caf\ufffd", ()) == 1


def _row(tokens, **penalties) -> _Row:
    params = SamplingParams(max_tokens=8, temperature=0, **penalties)
    request = Request(prompt=[0], params=params, cancel=CancelToken(), listener=Listener())
    return _Row(request, 0, position=1, tokens=list(tokens))


def test_penalties_count_each_rows_own_tokens():
    logits = torch.zeros(3, 6)
    rows = [_row([1, 1, 2], frequency_penalty=1.0, presence_penalty=0.5), _row([1, 2, 3]),
            _row([0, 0, 0, 5], frequency_penalty=-0.5)]
    out = _penalised(logits, rows)
    assert out.tolist() == [[0, -2.5, -1.5, 0, 0, 0],  # 1.0 * count + 0.5 for tokens seen
                            [0, 0, 0, 0, 0, 0],  # no penalty asked: untouched
                            [1.5, 0, 0, 0, 0, 0.5]]  # negative penalties favour repeats
    assert logits.eq(0).all()  # the model's logits are not changed in place


def test_no_penalty_is_no_work():
    logits = torch.zeros(2, 6)
    assert _penalised(logits, [_row([1, 2]), _row([3])]) is logits
    assert _penalised(logits, [_row([], frequency_penalty=2.0)]) is logits  # nothing generated yet


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


def test_auto_dtype_is_bfloat16_only_where_the_cpu_has_it(tmp_path):
    from generator.settings import Settings, native_bfloat16

    with_bf16, without = tmp_path / "bf16", tmp_path / "plain"
    with_bf16.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    without.write_text("flags\t\t: fpu sse2 avx2 fma\n")
    assert native_bfloat16(with_bf16) and not native_bfloat16(without)
    assert not native_bfloat16(tmp_path / "missing")
    assert Settings().dtype == "auto"
    assert Settings().torch_dtype == ("bfloat16" if native_bfloat16() else "float32")
    assert Settings(dtype="float32").torch_dtype == "float32"
