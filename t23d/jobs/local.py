"""Local workers: ``num_workers`` threads, each running one job at a time as a CLI subprocess."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from t23d.jobs.process import JobPaths, failure_message, kill_orphan, process_start_time, spawn, supervise
from t23d.jobs.spec import CommandSettings, JobSpec, build_command, find_run_dir
from t23d.jobs.store import Job, JobStore, new_worker_id

logger = logging.getLogger(__name__)

CommandFn = Callable[[JobSpec, Path, CommandSettings], list[str]]


@dataclass
class WorkerConfig:
    """Timing of workers (local or Ray dispatch)."""

    num_workers: int = 1
    """Jobs run at once by local workers (each in its own process)."""
    lease_s: float = 30.0
    """Seconds a claim stays valid without a heartbeat; a job whose worker is silent for longer is
    put back in the queue."""
    heartbeat_s: float = 1.0
    """Seconds between heartbeats (which also pick up cancellation requests)."""
    poll_s: float = 0.5
    """Seconds an idle worker waits before looking at the queue again (a submit in the same process
    wakes it at once)."""
    grace_s: float = 60.0
    """Seconds a job gets to save a checkpoint after SIGINT (cancel, shutdown) before SIGKILL."""


def recover_orphans(store: JobStore, *, only_expired: bool) -> list[str]:
    """Put running jobs whose worker is gone back in the queue, first killing their process if it is
    still alive on this host. With ``only_expired=False`` every running job is treated as orphaned
    (the caller holds the data folder's lock, so no other worker can exist)."""
    host = socket.gethostname()
    requeued = []
    for job in store.expired() if only_expired else store.running():
        if job.host == host:
            kill_orphan(job.pid, job.pid_start)
        if store.requeue(job.id, job.worker):
            logger.info("job %s: its worker is gone; requeued (it resumes from its checkpoint)", job.id)
            requeued.append(job.id)
    return requeued


class LocalWorkers:
    """Run queued jobs of ``store`` in subprocesses on this machine."""

    def __init__(
        self,
        store: JobStore,
        settings: CommandSettings,
        config: WorkerConfig | None = None,
        command_fn: CommandFn = build_command,
    ):
        self.store = store
        self.settings = settings
        self.config = config or WorkerConfig()
        self.command_fn = command_fn
        self.host = socket.gethostname()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def description(self) -> str:
        """Human description for health/status."""
        return f"local ({self.config.num_workers} worker{'s' if self.config.num_workers != 1 else ''})"

    def start(self) -> None:
        """Start the worker threads and the lease sweeper."""
        for i in range(self.config.num_workers):
            t = threading.Thread(target=self._loop, name=f"t23d-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._sweep_loop, name="t23d-sweeper", daemon=True)
        t.start()
        self._threads.append(t)

    def wake(self) -> None:
        """Tell idle workers a job was queued."""
        self._wake.set()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop: running jobs get SIGINT (they save a checkpoint) and go back to the queue."""
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.config.grace_s + 5)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _sweep_loop(self) -> None:
        while not self._stopping.wait(max(1.0, self.config.lease_s / 3)):
            try:
                recover_orphans(self.store, only_expired=True)
            except Exception:  # the sweeper must survive a locked or busy database
                logger.exception("lease sweep failed")

    def _loop(self) -> None:
        worker = new_worker_id()
        while not self._stopping.is_set():
            try:
                job = self.store.claim(worker, self.config.lease_s)
            except Exception:
                logger.exception("claiming a job failed")
                job = None
            if job is None:
                self._wake.wait(self.config.poll_s)
                self._wake.clear()
                continue
            try:
                self.run_job(job, worker)
            except Exception as e:  # never lose the worker thread to one job
                logger.exception("job %s: worker error", job.id)
                self.store.finish(job.id, worker, "failed", error=f"worker error: {type(e).__name__}: {e}")

    def run_job(self, job: Job, worker: str) -> None:
        """Run one claimed job to its end and record the outcome (fenced by ``worker``'s lease)."""
        cfg = self.config
        paths = JobPaths(self.store.data_dir, job.id)
        paths.runs.mkdir(parents=True, exist_ok=True)
        cmd = self.command_fn(job.spec, paths.runs, self.settings)
        proc = spawn(cmd, paths.log)
        self.store.record_process(job.id, worker, proc.pid, process_start_time(proc.pid), self.host)
        state = {"job": job, "lost": False, "beat": time.monotonic(), "run_dir": None}

        def tick() -> None:
            if state["run_dir"] is None:
                run_dir = find_run_dir(paths.runs)
                if run_dir is not None:
                    state["run_dir"] = run_dir
                    self.store.record_run_dir(job.id, str(run_dir))
            if time.monotonic() - state["beat"] >= cfg.heartbeat_s:
                state["beat"] = time.monotonic()
                fresh = self.store.heartbeat(job.id, worker, cfg.lease_s)
                if fresh is None:
                    logger.warning("job %s: lease lost; stopping its process", job.id)
                    state["lost"] = True
                else:
                    state["job"] = fresh

        outcome = supervise(
            proc,
            poll_s=min(0.2, cfg.heartbeat_s),
            should_cancel=lambda: state["job"].cancel_requested,
            should_stop=lambda: self._stopping.is_set() or state["lost"],
            on_tick=tick,
            grace_s=cfg.grace_s,
        )
        if state["lost"]:
            return
        run_dir = find_run_dir(paths.runs)
        run_dir_s = str(run_dir) if run_dir else None
        if outcome.exit_code == 0 and run_dir is not None:
            self.store.finish(job.id, worker, "completed", exit_code=0, run_dir=run_dir_s)
        elif outcome.cancelled:
            self.store.finish(job.id, worker, "cancelled", exit_code=outcome.exit_code, run_dir=run_dir_s)
        elif outcome.stopped:
            self.store.finish(job.id, worker, "queued", exit_code=outcome.exit_code, run_dir=run_dir_s)
        else:
            error = failure_message(paths, run_dir, outcome.exit_code)
            self.store.finish(
                job.id, worker, "failed", exit_code=outcome.exit_code, error=error, run_dir=run_dir_s
            )
