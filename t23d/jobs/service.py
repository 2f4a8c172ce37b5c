"""The job service: a data folder's store plus the backend that runs its jobs (local or Ray).

One process at a time owns a data folder (an exclusive ``flock`` on ``DATA/t23d.lock``, released by
the kernel if that process dies, even by ``kill -9``). On start it therefore knows that any job still
marked running was left by a dead owner: it kills that job's process if it survived and puts the job
back in the queue, where it resumes from its checkpoint.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from t23d.common.errors import ConfigError, T23dError
from t23d.jobs.local import LocalWorkers, WorkerConfig, recover_orphans
from t23d.jobs.process import JobPaths
from t23d.jobs.spec import CommandSettings, JobSpec, validate_spec
from t23d.jobs.store import Job, JobConflict, JobStore

logger = logging.getLogger(__name__)
LOCK_NAME = "t23d.lock"


class Backend(Protocol):
    """What runs the queued jobs of a store."""

    description: str

    def start(self) -> None:
        """Start taking jobs."""

    def wake(self) -> None:
        """A job was queued."""

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop; running jobs are interrupted (checkpoint saved) and queued again."""


@dataclass
class ServiceConfig:
    """Everything the job service needs (the web server adds HTTP options on top)."""

    data_dir: Path
    """Folder of the job database, uploads and run directories (``DATA/jobs/<id>/``)."""
    settings: CommandSettings
    """Priors, config overrides and device given to every job."""
    workers: WorkerConfig
    """Local worker count and timing (also the Ray dispatcher's timing)."""
    ray: str | None = None
    """None: local workers; "local": start a Ray instance on this machine; else a Ray cluster address."""
    ray_cpus_per_job: float = 1.0
    """CPUs a Ray task declares when the cluster has no GPU (with GPUs: ``num_gpus=1``)."""
    max_queued: int = 100
    """Queued jobs allowed at once; more are refused (HTTP 429)."""


class DataDirLock:
    """Exclusive ownership of a data folder."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise naming the folder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise T23dError(
                f"the data folder {self.path.parent} is in use by another t23d service or batch "
                "(stop it, or pass another --data/--out)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Release the lock."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class JobService:
    """Submit, inspect, cancel and resume jobs; runs them with the configured backend."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self.store = JobStore(config.data_dir)
        self._lock = DataDirLock(config.data_dir)
        self.backend: Backend = self._make_backend()
        self.started = False

    def _make_backend(self) -> Backend:
        cfg = self.config
        if cfg.ray is None:
            return LocalWorkers(self.store, cfg.settings, cfg.workers)
        from t23d.jobs.ray_backend import RayWorkers

        return RayWorkers(
            self.store, cfg.settings, cfg.workers, address=cfg.ray, cpus_per_job=cfg.ray_cpus_per_job
        )

    def start(self) -> None:
        """Own the data folder, recover jobs left running by a dead owner, start the backend."""
        self._lock.acquire()
        try:
            requeued = recover_orphans(self.store, only_expired=False)
            if requeued:
                logger.info(
                    "requeued %d job(s) left running by a previous service: %s",
                    len(requeued),
                    ", ".join(requeued),
                )
            self.backend.start()
        except BaseException:
            self._lock.release()
            raise
        self.started = True

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the backend (running jobs save a checkpoint and are queued again) and release the folder."""
        if self.started:
            self.backend.stop(timeout_s)
            self.started = False
        self._lock.release()

    # ------------------------------------------------------------------ jobs
    def paths(self, job_id: str) -> JobPaths:
        """Where the job's files live."""
        return JobPaths(self.config.data_dir, job_id)

    @staticmethod
    def new_job_id() -> str:
        """A fresh job id (to place uploads before :meth:`submit`)."""
        return uuid.uuid4().hex[:12]

    def submit(self, spec: JobSpec, *, job_id: str | None = None, batch_key: str | None = None) -> Job:
        """Validate and queue a job (raises ``ConfigError`` or ``QueueFull``)."""
        validate_spec(spec, self.config.settings.priors)
        job = self.store.submit(spec, max_queued=self.config.max_queued, job_id=job_id, batch_key=batch_key)
        self.backend.wake()
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job."""
        return self.store.cancel(job_id)

    def resume(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again; it continues from its checkpoint."""
        job = self.store.resume(job_id, max_queued=self.config.max_queued)
        self.backend.wake()
        return job

    def retry(self, job_id: str) -> Job:
        """A new job with the same spec (and a copy of the inputs), started from scratch."""
        old = self.store.get(job_id)
        if old.status not in ("completed", "failed", "cancelled"):
            raise JobConflict(f"job {job_id} is {old.status}; only finished jobs can be retried")
        new_id = self.new_job_id()
        spec = old.spec
        old_inputs = self.paths(job_id).inputs
        if getattr(spec, "input", None) and Path(spec.input).is_relative_to(old_inputs):
            import dataclasses

            new_inputs = self.paths(new_id).inputs
            shutil.copytree(old_inputs, new_inputs)
            spec = dataclasses.replace(spec, input=str(new_inputs / Path(spec.input).relative_to(old_inputs)))
        try:
            return self.submit(spec, job_id=new_id)
        except BaseException:
            shutil.rmtree(self.paths(new_id).job_dir, ignore_errors=True)
            raise

    def delete(self, job_id: str) -> Job:
        """Delete a finished job and its files."""
        job = self.store.delete(job_id)
        shutil.rmtree(self.paths(job_id).job_dir, ignore_errors=True)
        return job

    def check_prior(self, prior: str | None) -> None:
        """Raise ``ConfigError`` unless ``prior`` is None or one of the service's priors."""
        if prior is not None and prior not in self.config.settings.priors:
            raise ConfigError(f"prior {prior!r} is not one of this service's priors")
