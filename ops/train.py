"""Train the Rasa model from config.yml, domain/ and data/."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Optional

from ops import settings


class TrainingError(RuntimeError):
    pass


def latest_model(models_dir: Path = settings.MODELS_DIR) -> Optional[Path]:
    models = sorted(models_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return models[-1] if models else None


def train(out: Path = settings.MODELS_DIR, fixed_name: Optional[str] = None, quiet: bool = False) -> Path:
    """Run `rasa train` and return the new model's path. `quiet`: one line on the terminal
    while it runs, the whole output in build/logs/setup/train.log (ops/step.sh, as the
    Makefile's set-up steps)."""
    if not (settings.NLU_DIR / "banking77.yml").is_file():
        raise TrainingError("training data missing: run `python -m ops import-data` first")
    argv = [
        str(settings.RASA_VENV / "bin" / "rasa"), "train",
        "--config", "config.yml", "--domain", "domain", "--data", "data",
        "--out", str(out),
    ]
    if fixed_name:
        argv += ["--fixed-model-name", fixed_name]
    if quiet:
        argv = [str(settings.ROOT / "ops" / "step.sh"), "train", "Rasa model (rasa train)", *argv]
    started = time.monotonic()
    result = subprocess.run(argv, cwd=settings.ROOT)
    if result.returncode != 0:
        raise TrainingError(f"rasa train failed with exit code {result.returncode}")
    model = latest_model(out)
    if model is None:
        raise TrainingError(f"rasa train wrote no model to {out}")
    print(f"trained {model.name} in {time.monotonic() - started:.0f} s")
    return model
