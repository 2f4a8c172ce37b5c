"""Running one job's CLI process: where its files go, spawning, supervising, and finding orphans.

Shared by the local workers and the Ray tasks. The job's process runs in its own session (a Ctrl-C
in the server's terminal does not reach it; the server decides) and, on Linux, is killed by the
kernel if the worker that started it dies (``PR_SET_PDEATHSIG``), so a dead worker never leaves a
job running that would then run twice.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CANCEL_FILE = "cancel"
"""A file whose presence in the job folder asks the job's supervisor to stop it (used by Ray tasks,
which cannot reach the store)."""


@dataclass(frozen=True)
class JobPaths:
    """Where a job's files live: ``DATA/jobs/<id>/`` with ``inputs/`` (uploads), ``runs/`` (the parent of
    the CLI's run directory) and ``worker.log`` (the CLI's stdout and stderr)."""

    data_dir: Path
    job_id: str

    @property
    def job_dir(self) -> Path:
        """The job's folder."""
        return Path(self.data_dir) / "jobs" / self.job_id

    @property
    def inputs(self) -> Path:
        """Uploaded inputs."""
        return self.job_dir / "inputs"

    @property
    def runs(self) -> Path:
        """Parent of the run directory (``--out``)."""
        return self.job_dir / "runs"

    @property
    def log(self) -> Path:
        """The job process's output."""
        return self.job_dir / "worker.log"

    @property
    def cancel_file(self) -> Path:
        """See :data:`CANCEL_FILE`."""
        return self.job_dir / CANCEL_FILE


def _pdeathsig_preexec() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def spawn(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own session with stdout+stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ if env is None else env)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
            preexec_fn=_pdeathsig_preexec(),  # noqa: PLW1509 (a ctypes call only)
            close_fds=True,
        )


def process_start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, from /proc), to tell it from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces: split after its closing parenthesis
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]  # field 22 overall


def kill_orphan(pid: int | None, pid_start: str | None, timeout_s: float = 10.0) -> bool:
    """SIGKILL the process group of a job process left by a dead worker, if that exact process (same
    start time) still runs; waits until it is gone. Returns True if something was killed."""
    if not pid or pid_start is None or process_start_time(pid) != pid_start:
        return False
    logger.warning("killing orphaned job process %d (its worker is gone)", pid)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process_start_time(pid) == pid_start:
        try:  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return True


@dataclass
class Outcome:
    """How a job process ended."""

    exit_code: int | None
    """The process's exit code (negative: killed by that signal; None: still running, abandoned)."""
    cancelled: bool = False
    """Stopped because cancellation was requested."""
    stopped: bool = False
    """Stopped because its worker is shutting down or lost the job."""


def supervise(
    proc: subprocess.Popen,
    *,
    poll_s: float = 0.2,
    should_cancel: Callable[[], bool] = lambda: False,
    should_stop: Callable[[], bool] = lambda: False,
    on_tick: Callable[[], None] = lambda: None,
    grace_s: float = 60.0,
) -> Outcome:
    """Wait for ``proc``; polls the callbacks every ``poll_s``. On cancel or stop, send SIGINT (the CLI
    saves a checkpoint and exits with 130), then SIGKILL after ``grace_s``."""
    interrupted_at: float | None = None
    cancelled = stopped = False
    while True:
        try:
            code = proc.wait(timeout=poll_s)
            return Outcome(code, cancelled=cancelled, stopped=stopped)
        except subprocess.TimeoutExpired:
            pass
        on_tick()
        if interrupted_at is None:
            if should_cancel():
                cancelled = True
            elif should_stop():
                stopped = True
            if cancelled or stopped:
                interrupted_at = time.monotonic()
                _signal_group(proc, signal.SIGINT)
        elif time.monotonic() - interrupted_at > grace_s:
            _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def failure_message(paths: JobPaths, run_dir: Path | None, exit_code: int | None) -> str:
    """Why a job failed, for the job table: the run's recorded error, else the end of its log."""
    if run_dir is not None:
        try:
            info = json.loads((run_dir / "run.json").read_text())
            if info.get("error"):
                return str(info["error"])
        except (OSError, ValueError):
            pass
    tail = ""
    try:
        lines = [ln for ln in paths.log.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        tail = (errors or lines or [""])[-1]
    except OSError:
        pass
    if exit_code is not None and exit_code < 0:
        name = (
            signal.Signals(-exit_code).name
            if -exit_code in signal.Signals._value2member_map_
            else str(-exit_code)
        )
        return f"the job process was killed by {name}" + (f"; last output: {tail}" if tail else "")
    return tail or f"the job process exited with code {exit_code}"
