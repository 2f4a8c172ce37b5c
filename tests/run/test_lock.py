"""The run lock: one process at a time, never stuck after a crash, and probing writes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from t23d.run.lock import LOCK_NAME, RunBusy, RunLock, is_locked

HOLD = (
    "import sys, time; from pathlib import Path; from t23d.run.lock import RunLock; "
    "RunLock(Path(sys.argv[1]), 'train').acquire(); print('locked', flush=True); time.sleep(600)"
)


def hold_in_subprocess(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_holder_is_refused_with_who_holds_it(tmp_path):
    proc = hold_in_subprocess(tmp_path)
    try:
        assert is_locked(tmp_path)
        with pytest.raises(RunBusy, match=f"in use by process {proc.pid} \\(train, since ") as exc:
            RunLock(tmp_path, "resume").acquire()
        assert f"kill -INT {proc.pid}" in str(exc.value)
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path):
    proc = hold_in_subprocess(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / LOCK_NAME).is_file()  # the file stays, the lock does not
    assert not is_locked(tmp_path)
    with RunLock(tmp_path, "resume") as lock:
        assert lock.held
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not is_locked(tmp_path)


def test_probing_writes_nothing_and_works_read_only(tmp_path):
    assert not is_locked(tmp_path) and not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path, "train"):
        before = (tmp_path / LOCK_NAME).read_text()
        time.sleep(0.01)
        # another process probing sees the lock and leaves the holder record alone
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from t23d.run.lock import is_locked; print(is_locked({str(tmp_path)!r}))",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert probe.stdout.strip() == "True"
        assert (tmp_path / LOCK_NAME).read_text() == before
