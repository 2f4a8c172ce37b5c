"""Helpers for the platform tests (jobs, serve): a job service on the tiny random prior, waiting for jobs,
and a live HTTP server in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers.cli import CONFIGS
from t23d.jobs.local import WorkerConfig
from t23d.jobs.service import JobService, ServiceConfig
from t23d.jobs.spec import CommandSettings

JOB_CONFIGS = (str(CONFIGS / "cpu-smoke.yaml"), str(Path(__file__).with_name("tiny-job.yaml")))
JOB_TIMEOUT_S = 600  # a tiny job takes ~30 s on 2 idle cores; far more on a loaded machine


def make_service(
    data_dir: Path, prior: Path, *, workers: int = 1, ray: str | None = None, **kw
) -> JobService:
    """A job service whose jobs use the tiny prior and the tiny test configs."""
    settings = CommandSettings(priors=(str(prior),), config_files=JOB_CONFIGS, device="cpu")
    return JobService(
        ServiceConfig(
            data_dir=data_dir, settings=settings, workers=WorkerConfig(num_workers=workers), ray=ray, **kw
        )
    )


def wait_for(predicate, timeout: float = JOB_TIMEOUT_S, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_status(service: JobService, job_id: str, statuses: tuple[str, ...], timeout: float = JOB_TIMEOUT_S):
    """Wait until the job is in one of ``statuses``; on a different final state show its log."""

    def check():
        job = service.store.get(job_id)
        if job.status in statuses:
            return job
        if job.status in ("completed", "failed", "cancelled"):
            log = service.paths(job_id).log
            raise AssertionError(
                f"job {job_id} ended {job.status} ({job.error}):\n{log.read_text()[-3000:] if log.exists() else ''}"
            )
        return None

    return wait_for(check, timeout, what=f"job {job_id} to be {'/'.join(statuses)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, 0.05, "uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
