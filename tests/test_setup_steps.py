"""ops/step.sh, which shows each `make setup` step as one line (Makefile): the command's
whole output goes to build/logs/setup/<step>.log, the terminal gets one line, a failure
the log's last lines and the command's exit code."""
from __future__ import annotations

import os
import subprocess

from ops import settings

STEP = str(settings.ROOT / "ops" / "step.sh")


def step(tmp_path, *command, verbose=False):
    env = {name: value for name, value in os.environ.items() if name != "STEP_VERBOSE"}
    if verbose:
        env["STEP_VERBOSE"] = "1"
    return subprocess.run([STEP, "demo", "Demo step", *command], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_step_is_one_line_and_its_output_goes_to_the_log(tmp_path):
    noisy = "for i in $(seq 200); do echo warning $i; echo err $i >&2; done"
    result = step(tmp_path, "bash", "-c", noisy)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.count("\n") == 1 and result.stdout.split() == ["Demo", "step", "done", "in", "0s"]
    log = (tmp_path / "build" / "logs" / "setup" / "demo.log").read_text().splitlines()
    assert len(log) == 400 and "warning 200" in log and "err 200" in log


def test_a_failing_step_shows_the_end_of_its_log_and_its_exit_code(tmp_path):
    result = step(tmp_path, "bash", "-c", "for i in $(seq 50); do echo line $i; done; exit 3")
    assert result.returncode == 3
    lines = result.stdout.splitlines()
    assert "FAILED" in lines[0] and "(exit 3)" in lines[0] and "build/logs/setup/demo.log" in lines[0]
    assert [line.strip() for line in lines[1:]] == [f"line {i}" for i in range(21, 51)]


def test_verbose_shows_everything(tmp_path):
    result = step(tmp_path, "bash", "-c", "echo one; echo two", verbose=True)
    assert result.returncode == 0 and result.stdout == "one\ntwo\n"
    assert not (tmp_path / "build").exists()
