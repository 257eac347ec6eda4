"""The GGUF -> safetensors conversion, checked through the cache it leaves."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from generator import convert
from generator.chat import TransformersChatEngine
from generator.settings import REPO_ROOT


def test_cache_holds_a_plain_safetensors_model(settings, engines):
    path = settings.chat_cache_path
    assert convert.cache_is_complete(path)
    assert (path / "model.safetensors").stat().st_size > 100_000_000
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config  # really de-quantised, loadable without gguf
    assert not list(path.parent.glob(f".{path.name}.tmp-*"))  # no leftovers


def test_loading_from_the_cache_works(settings):
    started = time.perf_counter()
    engine = TransformersChatEngine.load(settings)
    try:
        assert time.perf_counter() - started < 30
        assert next(engine.model.parameters()).dtype.is_floating_point
        assert engine.tokenizer.chat_template
    finally:
        engine.close()


def test_convert_cli_is_a_no_op_when_cached(settings):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "generator.convert", "--cache-dir", str(settings.cache_dir)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "already present" in done.stderr
    assert time.perf_counter() - started < 10


def test_interrupted_conversion_leaves_no_cache(tmp_path, settings, monkeypatch):
    def crash(folder, gguf):
        (folder / "model.safetensors").write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "_convert_into", crash)
    with pytest.raises(KeyboardInterrupt):
        convert.ensure_chat_cache(settings.with_overrides(cache_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []
