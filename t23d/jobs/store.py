"""The job store: one SQLite database (stdlib ``sqlite3``, WAL) in the service's data folder.

The store is the source of truth. Every state change is one transaction, and every change a worker
makes is *fenced* by its lease: a worker claims a job (``queued -> running``, recording its worker id
and a lease deadline), renews the lease with heartbeats, and its final ``finish`` only takes effect
while it still holds the job. A job whose lease ran out (its worker died) is put back in the queue by
:meth:`JobStore.requeue_orphans`, and runs again from its checkpoint; a late ``finish`` from the dead
worker then changes nothing, so no job is recorded twice.

States: ``queued -> running -> completed | failed | cancelled``; ``failed``/``cancelled`` can be
resumed (back to ``queued``, keeping the run directory), ``queued`` can be cancelled at once,
``running`` is cancelled by its worker once it sees ``cancel_requested``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from t23d.common.errors import T23dError
from t23d.jobs.spec import JobSpec, spec_from_dict, spec_json, spec_title

logger = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
STATUSES: tuple[str, ...] = ("queued", "running", "completed", "failed", "cancelled")
TERMINAL: tuple[str, ...] = ("completed", "failed", "cancelled")
DB_NAME = "t23d-jobs.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    lease_until REAL,
    host TEXT,
    pid INTEGER,
    pid_start TEXT,
    run_dir TEXT,
    exit_code INTEGER,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    batch_key TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
"""


class JobNotFound(T23dError):
    """No job has this id."""


class JobConflict(T23dError):
    """The job is not in a state that allows the requested change."""


class QueueFull(T23dError):
    """The queue already holds the maximum number of queued jobs."""


@dataclass
class Job:
    """One row of the job table."""

    id: str
    kind: str
    title: str
    spec: JobSpec
    status: str
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    worker: str | None
    lease_until: float | None
    host: str | None
    pid: int | None
    pid_start: str | None
    run_dir: str | None
    exit_code: int | None
    error: str | None
    cancel_requested: bool
    batch_key: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the spec as a dict, no lease internals)."""
        from t23d.jobs.spec import spec_to_dict

        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "status": self.status,
            "spec": spec_to_dict(self.spec),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "attempts": self.attempts,
            "exit_code": self.exit_code,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "batch_key": self.batch_key,
        }


def _row_to_job(row: sqlite3.Row) -> Job:
    d = dict(row)
    d.pop("seq")
    d["spec"] = spec_from_dict(json.loads(d["spec"]))
    d["cancel_requested"] = bool(d["cancel_requested"])
    return Job(**d)


def new_worker_id() -> str:
    """A unique id for a worker (host, pid and a random part)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobStore:
    """Jobs in ``data_dir/t23d-jobs.sqlite3``. Thread-safe: one connection per thread."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_NAME
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    # ----------------------------------------------------------------- plumbing
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: writers are serialised, readers never blocked)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _get(self, conn: sqlite3.Connection, job_id: str) -> Job:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return _row_to_job(row)

    # ----------------------------------------------------------------- reading
    def get(self, job_id: str) -> Job:
        """The job with this id; raises :class:`JobNotFound`."""
        return self._get(self._conn(), job_id)

    def list(
        self, status: str | None = None, limit: int = 1000, batch_prefix: str | None = None
    ) -> list[Job]:
        """Jobs, newest first, optionally of one status or whose batch key starts with a prefix."""
        sql, args = "SELECT * FROM jobs", []
        where = []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if batch_prefix is not None:
            where.append("batch_key LIKE ? ESCAPE '\\'")
            args.append(batch_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(int(limit))
        return [_row_to_job(r) for r in self._conn().execute(sql, args).fetchall()]

    def counts(self) -> dict[str, int]:
        """Number of jobs in each status."""
        rows = self._conn().execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        out = dict.fromkeys(STATUSES, 0)
        out.update({r[0]: r[1] for r in rows})
        return out

    def find_batch_key(self, batch_key: str) -> Job | None:
        """The job submitted with this batch key, if any."""
        row = self._conn().execute("SELECT * FROM jobs WHERE batch_key = ?", (batch_key,)).fetchone()
        return _row_to_job(row) if row is not None else None

    # ----------------------------------------------------------------- client changes
    def submit(
        self,
        spec: JobSpec,
        *,
        max_queued: int | None = None,
        batch_key: str | None = None,
        job_id: str | None = None,
    ) -> Job:
        """Queue a new job; raises :class:`QueueFull` when ``max_queued`` jobs are already queued."""
        now = time.time()
        job_id = job_id or uuid.uuid4().hex[:12]
        with self._tx() as c:
            if max_queued is not None:
                (queued,) = c.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()
                if queued >= max_queued:
                    raise QueueFull(
                        f"the queue is full ({queued} queued jobs, limit {max_queued}); retry later"
                    )
            c.execute(
                "INSERT INTO jobs (id, kind, title, spec, status, created_at, updated_at, batch_key) "
                "VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
                (job_id, spec.kind, spec_title(spec)[:200], spec_json(spec), now, now, batch_key),
            )
            return self._get(c, job_id)

    def cancel(self, job_id: str) -> Job:
        """Cancel: a queued job at once, a running one by asking its worker (``cancel_requested``)."""
        now = time.time()
        with self._tx() as c:
            job = self._get(c, job_id)
            if job.status == "queued":
                c.execute(
                    "UPDATE jobs SET status = 'cancelled', finished_at = ?, updated_at = ? WHERE id = ?",
                    (now, now, job_id),
                )
            elif job.status == "running":
                c.execute("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?", (now, job_id))
            else:
                raise JobConflict(
                    f"job {job_id} is {job.status}; only queued or running jobs can be cancelled"
                )
            return self._get(c, job_id)

    def resume(self, job_id: str, *, max_queued: int | None = None) -> Job:
        """Put a failed or cancelled job back in the queue; it continues from its checkpoint."""
        now = time.time()
        with self._tx() as c:
            job = self._get(c, job_id)
            if job.status not in ("failed", "cancelled"):
                raise JobConflict(
                    f"job {job_id} is {job.status}; only failed or cancelled jobs can be resumed"
                )
            if max_queued is not None:
                (queued,) = c.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()
                if queued >= max_queued:
                    raise QueueFull(
                        f"the queue is full ({queued} queued jobs, limit {max_queued}); retry later"
                    )
            c.execute(
                "UPDATE jobs SET status = 'queued', cancel_requested = 0, error = NULL, exit_code = NULL, "
                "finished_at = NULL, worker = NULL, lease_until = NULL, updated_at = ? WHERE id = ?",
                (now, job_id),
            )
            return self._get(c, job_id)

    def delete(self, job_id: str) -> Job:
        """Remove a finished job's row (its files are the caller's business)."""
        with self._tx() as c:
            job = self._get(c, job_id)
            if job.status not in TERMINAL:
                raise JobConflict(f"job {job_id} is {job.status}; cancel it before deleting it")
            c.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            return job

    # ----------------------------------------------------------------- worker changes
    def claim(self, worker: str, lease_s: float) -> Job | None:
        """Take the oldest queued job (``queued -> running``) for ``worker``; None when the queue is empty."""
        now = time.time()
        with self._tx() as c:
            row = c.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            c.execute(
                "UPDATE jobs SET status = 'running', worker = ?, lease_until = ?, attempts = attempts + 1, "
                "started_at = COALESCE(started_at, ?), updated_at = ?, pid = NULL, pid_start = NULL, host = NULL "
                "WHERE id = ?",
                (worker, now + lease_s, now, now, row[0]),
            )
            return self._get(c, row[0])

    def heartbeat(self, job_id: str, worker: str, lease_s: float) -> Job | None:
        """Renew ``worker``'s lease; returns the job (to see ``cancel_requested``), or None if the lease
        was lost (the job was requeued or finished by someone else): the worker must stop it."""
        now = time.time()
        with self._tx() as c:
            cur = c.execute(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND worker = ? AND status = 'running'",
                (now + lease_s, job_id, worker),
            )
            return self._get(c, job_id) if cur.rowcount == 1 else None

    def record_process(self, job_id: str, worker: str, pid: int, pid_start: str | None, host: str) -> bool:
        """Record the job's process (so an orphan can be found after a crash); False if not held."""
        with self._tx() as c:
            cur = c.execute(
                "UPDATE jobs SET pid = ?, pid_start = ?, host = ? WHERE id = ? AND worker = ? AND status = 'running'",
                (pid, pid_start, host, job_id, worker),
            )
            return cur.rowcount == 1

    def record_run_dir(self, job_id: str, run_dir: str) -> None:
        """Remember the job's run directory (idempotent)."""
        with self._tx() as c:
            c.execute(
                "UPDATE jobs SET run_dir = ?, updated_at = ? WHERE id = ?", (run_dir, time.time(), job_id)
            )

    def finish(
        self,
        job_id: str,
        worker: str,
        status: str,
        *,
        exit_code: int | None = None,
        error: str | None = None,
        run_dir: str | None = None,
    ) -> bool:
        """End ``worker``'s attempt: ``completed``, ``failed``, ``cancelled``, or ``queued`` (given back,
        e.g. on shutdown, to resume later). Returns False (and changes nothing) if the lease was lost."""
        if status not in ("completed", "failed", "cancelled", "queued"):
            raise ValueError(f"finish status must be completed, failed, cancelled or queued, got {status!r}")
        now = time.time()
        finished = now if status != "queued" else None
        with self._tx() as c:
            cur = c.execute(
                "UPDATE jobs SET status = ?, exit_code = ?, error = ?, finished_at = ?, updated_at = ?, "
                "run_dir = COALESCE(?, run_dir), worker = NULL, lease_until = NULL, pid = NULL, "
                "cancel_requested = CASE WHEN ? = 'queued' THEN cancel_requested ELSE 0 END "
                "WHERE id = ? AND worker = ? AND status = 'running'",
                (status, exit_code, error, finished, now, run_dir, status, job_id, worker),
            )
            if cur.rowcount != 1:
                logger.warning(
                    "job %s: %s no longer holds it; its result (%s) was dropped", job_id, worker, status
                )
            return cur.rowcount == 1

    def expired(self, now: float | None = None) -> list[Job]:
        """Running jobs whose lease has run out (their worker stopped sending heartbeats)."""
        now = time.time() if now is None else now
        rows = (
            self._conn()
            .execute(
                "SELECT * FROM jobs WHERE status = 'running' AND (lease_until IS NULL OR lease_until < ?)",
                (now,),
            )
            .fetchall()
        )
        return [_row_to_job(r) for r in rows]

    def running(self) -> list[Job]:
        """All running jobs."""
        rows = self._conn().execute("SELECT * FROM jobs WHERE status = 'running'").fetchall()
        return [_row_to_job(r) for r in rows]

    def requeue(self, job_id: str, expected_worker: str | None) -> bool:
        """Put a running job whose worker is gone back in the queue (it resumes from its checkpoint).

        Fenced by ``expected_worker``: nothing happens if another worker took the job meanwhile.
        A job whose cancellation was requested is marked cancelled instead.
        """
        now = time.time()
        with self._tx() as c:
            cur = c.execute(
                "UPDATE jobs SET status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END, "
                "finished_at = CASE WHEN cancel_requested = 1 THEN ? ELSE NULL END, "
                "worker = NULL, lease_until = NULL, pid = NULL, pid_start = NULL, updated_at = ? "
                "WHERE id = ? AND status = 'running' AND worker IS ?",
                (now, now, job_id, expected_worker),
            )
            return cur.rowcount == 1
