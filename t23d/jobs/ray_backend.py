"""The Ray backend: each job is a Ray task with declared resources, running the CLI in a subprocess.

The dispatcher (a thread in the process that owns the store) claims queued jobs, submits one task per
job, renews the jobs' leases while their tasks run and records each task's result; tasks never touch
the database. A task declares ``num_gpus=1`` when the cluster has GPUs, else ``num_cpus``. If the Ray
worker running a task dies (node lost, OOM kill, ``kill -9``), Ray retries the task (``max_retries``) and
the retry resumes from the run directory's latest checkpoint; the job's CLI process dies with its worker
(``PR_SET_PDEATHSIG``), so it never runs twice.

What the cluster must share: the data folder (uploads, run directories) at the same path on every node,
e.g. an NFS mount, and the same Python environment with t23d installed. Cancellation reaches a task
through a file in the job's folder (:data:`~t23d.jobs.process.CANCEL_FILE`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from t23d.common.errors import T23dError
from t23d.jobs.local import WorkerConfig
from t23d.jobs.process import JobPaths, failure_message, spawn, supervise
from t23d.jobs.spec import CommandSettings, build_command, find_run_dir, spec_from_dict, spec_to_dict
from t23d.jobs.store import Job, JobStore, new_worker_id

logger = logging.getLogger(__name__)
WORKER_PID_FILE = "ray-worker.pid"
"""Written by each task attempt into the job folder: the pid of the Ray worker process running it."""


def run_job_task(
    spec: dict[str, Any], data_dir: str, job_id: str, settings: dict[str, Any]
) -> dict[str, Any]:
    """The body of a job's Ray task (runs on a Ray worker): run the CLI, resuming if a checkpoint exists.

    Returns ``{"exit_code", "cancelled", "stopped", "run_dir", "error"}``.
    """
    paths = JobPaths(Path(data_dir), job_id)
    paths.runs.mkdir(parents=True, exist_ok=True)
    (paths.job_dir / WORKER_PID_FILE).write_text(f"{os.getpid()}\n")
    cmd = build_command(spec_from_dict(spec), paths.runs, CommandSettings(**settings))
    proc = spawn(cmd, paths.log)

    def request() -> str:
        try:
            return paths.cancel_file.read_text().strip()
        except OSError:
            return ""

    outcome = supervise(
        proc, should_cancel=lambda: request() == "cancel", should_stop=lambda: request() == "stop"
    )
    run_dir = find_run_dir(paths.runs)
    failed = outcome.exit_code != 0 and not (outcome.cancelled or outcome.stopped)
    return {
        "exit_code": outcome.exit_code,
        "cancelled": outcome.cancelled,
        "stopped": outcome.stopped,
        "run_dir": str(run_dir) if run_dir else None,
        "error": failure_message(paths, run_dir, outcome.exit_code) if failed else None,
    }


class RayWorkers:
    """Dispatch the store's queued jobs to Ray (``address="local"`` starts Ray on this machine)."""

    def __init__(
        self,
        store: JobStore,
        settings: CommandSettings,
        config: WorkerConfig | None = None,
        *,
        address: str = "local",
        cpus_per_job: float = 1.0,
        max_retries: int = 3,
        num_cpus: int | None = None,
    ):
        self.store = store
        self.settings = settings
        self.config = config or WorkerConfig()
        self.address = address
        self.cpus_per_job = cpus_per_job
        self.max_retries = max_retries
        self.num_cpus = num_cpus
        self.description = f"ray ({address})"
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._inflight: dict[Any, Job] = {}
        self._worker = new_worker_id()
        self._remote: Any = None
        self._started_ray = False

    def start(self) -> None:
        """Connect to (or start) Ray and start the dispatcher."""
        try:
            import ray
        except ImportError as e:
            raise T23dError('--ray needs Ray: pip install "t23d[ray]"') from e
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address == "local":
                kwargs["num_cpus"] = self.num_cpus
            else:
                kwargs["address"] = self.address
            try:
                ray.init(**kwargs)
            except Exception as e:
                raise T23dError(
                    f"--ray {self.address}: could not connect to Ray ({type(e).__name__}: {e})"
                ) from e
            self._started_ray = True
        resources = ray.cluster_resources()
        options: dict[str, Any] = {"max_retries": self.max_retries, "retry_exceptions": False}
        if resources.get("GPU", 0) >= 1:
            options["num_gpus"] = 1
            options["num_cpus"] = 1
        else:
            options["num_cpus"] = self.cpus_per_job
        self._remote = ray.remote(run_job_task).options(**options)
        self.description = (
            f"ray ({self.address}: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs)"
        )
        logger.info("Ray backend: %s, each job %s", self.description, options)
        self._thread = threading.Thread(target=self._loop, name="t23d-ray-dispatch", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Tell the dispatcher a job was queued."""
        self._wake.set()

    def stop(self, timeout_s: float | None = None) -> None:
        """Ask running tasks to stop (checkpoint), give their jobs back to the queue, disconnect."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s if timeout_s is not None else self.config.grace_s + 10)
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False

    def _capacity(self) -> int:
        import ray

        res = ray.cluster_resources()
        if res.get("GPU", 0) >= 1:
            return int(res["GPU"])
        return max(1, int(res.get("CPU", 1) // max(self.cpus_per_job, 1e-9)))

    def _submit(self, job: Job) -> None:
        paths = JobPaths(self.store.data_dir, job.id)
        paths.cancel_file.unlink(missing_ok=True)
        settings = {
            "priors": list(self.settings.priors),
            "config_files": list(self.settings.config_files),
            "device": self.settings.device,
            "python": self.settings.python,
        }
        ref = self._remote.remote(spec_to_dict(job.spec), str(self.store.data_dir), job.id, settings)
        self._inflight[ref] = job

    def _loop(self) -> None:
        import ray

        capacity, capacity_at, beat = 1, 0.0, 0.0
        while True:
            now = time.monotonic()
            if self._stopping.is_set():
                for job in self._inflight.values():
                    JobPaths(self.store.data_dir, job.id).cancel_file.write_text("stop")
                if not self._inflight:
                    return
            else:
                if now - capacity_at > 10:
                    capacity, capacity_at = self._capacity(), now
                while len(self._inflight) < capacity:
                    job = self.store.claim(self._worker, self.config.lease_s)
                    if job is None:
                        break
                    self._submit(job)
            if now - beat >= self.config.heartbeat_s:
                beat = now
                self._heartbeat()
            if not self._inflight:
                self._wake.wait(self.config.poll_s)
                self._wake.clear()
                continue
            refs = list(self._inflight)
            ready, pending = ray.wait(refs, num_returns=1, timeout=self.config.poll_s)
            if ready and pending:  # collect every other finished task too, without waiting
                ready += ray.wait(pending, num_returns=len(pending), timeout=0)[0]
            for ref in ready:
                self._record(ref, self._inflight.pop(ref))

    def _heartbeat(self) -> None:
        import ray

        for ref, job in list(self._inflight.items()):
            fresh = self.store.heartbeat(job.id, self._worker, self.config.lease_s)
            if fresh is None:  # someone else owns the job now: stop this task
                ray.cancel(ref, force=True)
                del self._inflight[ref]
            elif fresh.cancel_requested:
                JobPaths(self.store.data_dir, job.id).cancel_file.write_text("cancel")
            if fresh is not None and fresh.run_dir is None:
                run_dir = find_run_dir(JobPaths(self.store.data_dir, job.id).runs)
                if run_dir is not None:
                    self.store.record_run_dir(job.id, str(run_dir))

    def _record(self, ref: Any, job: Job) -> None:
        import ray

        try:
            result = ray.get(ref)
        except Exception as e:  # the task failed after Ray's retries (or was cancelled)
            error = f"Ray task failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            self.store.finish(job.id, self._worker, "failed", error=error)
            return
        run_dir = result["run_dir"]
        if result["exit_code"] == 0 and run_dir:
            self.store.finish(job.id, self._worker, "completed", exit_code=0, run_dir=run_dir)
        elif result["cancelled"]:
            self.store.finish(
                job.id, self._worker, "cancelled", exit_code=result["exit_code"], run_dir=run_dir
            )
        elif result["stopped"]:
            self.store.finish(job.id, self._worker, "queued", exit_code=result["exit_code"], run_dir=run_dir)
        else:
            self.store.finish(
                job.id,
                self._worker,
                "failed",
                exit_code=result["exit_code"],
                error=result["error"],
                run_dir=run_dir,
            )
