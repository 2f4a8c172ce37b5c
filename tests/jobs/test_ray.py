"""The Ray backend on a local Ray instance (loopback): two real tiny jobs run as Ray tasks, and the one
whose Ray worker is killed with SIGKILL is retried by Ray and completes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal

import pytest
from helpers.platform import JOB_TIMEOUT_S, make_service, wait_for, wait_status

from t23d.jobs.process import process_start_time
from t23d.jobs.ray_backend import WORKER_PID_FILE
from t23d.jobs.spec import GenerateSpec

pytest.importorskip("ray", reason="the Ray backend needs the ray extra (pip install 't23d[ray]')")


@pytest.fixture(scope="module")
def ray_service(tiny_sd_dir, tmp_path_factory):
    service = make_service(tmp_path_factory.mktemp("ray-data"), tiny_sd_dir, ray="local")
    service.start()  # one local Ray instance for the module (~15 s to start on 2 cores)
    yield service
    service.stop(timeout_s=60)


@pytest.mark.slow  # ~50 s with the local Ray cluster's start; run with --run-slow (the job logic is tested on local workers)
def test_two_jobs_run_as_ray_tasks_and_a_killed_worker_is_retried(ray_service):
    service = ray_service
    assert service.backend.description.startswith("ray (local")
    plain = service.submit(GenerateSpec(prompt="a red ball", preset="fast", seed=1))
    killed = service.submit(GenerateSpec(prompt="a stone grotto", preset="fast", steps=6, seed=2))
    paths = service.paths(killed.id)

    def first_checkpoint():
        found = list(paths.runs.glob("*/checkpoints/latest.json"))
        return found and (paths.job_dir / WORKER_PID_FILE).is_file() and json.loads(found[0].read_text())

    wait_for(first_checkpoint, JOB_TIMEOUT_S, 0.05, "the job's first checkpoint")
    worker_pid = int((paths.job_dir / WORKER_PID_FILE).read_text())
    start = process_start_time(worker_pid)
    os.kill(worker_pid, signal.SIGKILL)
    wait_for(lambda: process_start_time(worker_pid) != start, 10, 0.05, "the Ray worker to die")

    done = wait_status(service, killed.id, ("completed",))
    assert int((paths.job_dir / WORKER_PID_FILE).read_text()) != worker_pid  # Ray ran it again elsewhere
    (run_dir,) = [p for p in paths.runs.iterdir() if p.is_dir()]  # resumed in place, not restarted
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["resumed_from_step"] >= 1 and info["completed_steps"] == 6
    assert done.attempts == 1  # one claim in the store: the retry happened inside Ray
    assert "--resume" in paths.log.read_text()

    other = wait_status(service, plain.id, ("completed",))
    assert other.run_dir and list((service.paths(plain.id).runs).glob("*/export/*.glb"))


@pytest.mark.slow
def test_cancel_reaches_a_ray_task(ray_service):
    service = ray_service
    job = service.submit(GenerateSpec(prompt="a red ball", preset="fast", steps=500))
    wait_for(
        lambda: (service.paths(job.id).job_dir / WORKER_PID_FILE).is_file(), JOB_TIMEOUT_S, 0.1, "the task"
    )
    service.cancel(job.id)
    done = wait_status(service, job.id, ("cancelled",), timeout=180)
    assert done.error is None
