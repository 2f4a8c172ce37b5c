"""The run lock: one process at a time trains or writes into a run directory.

``RUN_DIR/.lock`` is held with an exclusive ``flock`` by ``t23d generate``/``reconstruct`` (new runs and
``--resume``) for the whole run, and by ``t23d export`` when it writes into the run directory. The kernel
releases an ``flock`` when its process ends, however it ends (``kill -9``, out-of-memory, power loss
of the process), so a crashed run never leaves its directory locked; the file itself stays and only
records who held it last (pid, command, start time) for the message of whoever finds it busy.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from t23d.common.errors import T23dError

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class RunBusy(T23dError):
    """Another process holds the run directory's lock (it is still training or exporting)."""

    def __init__(self, run_dir: Path, purpose: str, holder: dict[str, Any]):
        who = f"process {holder['pid']}" if "pid" in holder else "another process"
        what = f" ({holder['purpose']}, since {holder.get('since', '?')})" if "purpose" in holder else ""
        stop = f" or stop it (kill -INT {holder['pid']} saves a checkpoint)" if "pid" in holder else ""
        super().__init__(
            f"cannot {purpose} {run_dir}: the run is in use by {who}{what}. Wait for it to finish{stop}, "
            "then retry"
        )
        self.holder = holder


def read_holder(run_dir: Path) -> dict[str, Any]:
    """What the lock file says about its last holder (may be stale when nobody holds the lock)."""
    try:
        data = json.loads((Path(run_dir) / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class RunLock:
    """Exclusive lock on a run directory; a context manager (``with RunLock(run_dir, "resume"):``).

    ``acquire`` raises :class:`RunBusy` when another live process holds it (never waits). On systems
    without ``fcntl`` (Windows) locking is skipped with a warning.
    """

    def __init__(self, run_dir: Path, purpose: str):
        self.run_dir = Path(run_dir)
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunBusy`."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            logger.warning(
                "file locking is not available here; not protecting %s from concurrent runs", self.run_dir
            )
            return self
        path = self.run_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise T23dError(f"cannot create the lock file {path}: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunBusy(self.run_dir, self.purpose, read_holder(self.run_dir)) from None
        holder = {
            "pid": os.getpid(),
            "purpose": self.purpose,
            "since": _dt.datetime.now().isoformat(timespec="seconds"),
            "argv": sys.argv[:8],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (the file stays)."""
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def is_locked(run_dir: Path) -> bool:
    """Whether some process holds the run directory's lock now. Only probes (takes and drops the lock on
    a read-only descriptor, writing nothing), so it works on a run directory the caller cannot write."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return False
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False  # never locked (no lock file) or unreadable
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the lock
    return False
