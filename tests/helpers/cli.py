"""Helpers for the tests that run the real ``t23d`` command in a subprocess: run it to the end, start it
in the background, and wait for a line in a run's log. The hub is offline in every subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
CLI_TIMEOUT_S = 600  # a safety net: a shared, loaded 2-core machine slows a training step 10-30x


def t23d_env(**overrides: str) -> dict[str, str]:
    """This process's environment with the hub offline (``HF_HUB_OFFLINE=1``) and ``overrides`` applied."""
    return dict(os.environ, HF_HUB_OFFLINE="1", **overrides)


def t23d_command(*args: str) -> list[str]:
    """The argument list that runs ``t23d *args`` with this interpreter (and so this checkout's code)."""
    return [sys.executable, "-m", "t23d.cli.main", *args]


def run_t23d(
    *args: str, timeout: float = CLI_TIMEOUT_S, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``t23d *args`` from the repository root to the end; stdout and stderr are captured as text.

    ``env`` replaces the whole environment (default: :func:`t23d_env`); ``timeout`` is in seconds.
    """
    return subprocess.run(
        t23d_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=t23d_env() if env is None else dict(env),
        cwd=REPO,
    )


def start_t23d(*args: str) -> subprocess.Popen:
    """Start ``t23d *args`` from the repository root in the background, stdout and stderr piped as text."""
    return subprocess.Popen(
        t23d_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=t23d_env(),
        cwd=REPO,
    )


def wait_for_log(out: Path, text: str, proc: subprocess.Popen, timeout: float = CLI_TIMEOUT_S) -> Path:
    """Wait until ``text`` appears in the log of the (single) run under ``out``; return that run's folder.

    Fails with the process's stderr if ``proc`` exits first, and after ``timeout`` seconds.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        logs = list(out.glob("*/log.txt"))
        if logs and text in logs[0].read_text():
            return logs[0].parent
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in the run's log")
