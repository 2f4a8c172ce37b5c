"""Local workers and process supervision, with small Python programs as the job's process (the real CLI
runs in tests/serve and tests/jobs/test_ray.py): cancel, failure, shutdown, orphans, parent death."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from helpers.platform import wait_for

from t23d.jobs.local import LocalWorkers, WorkerConfig, recover_orphans
from t23d.jobs.process import JobPaths, process_start_time, spawn
from t23d.jobs.spec import CommandSettings, GenerateSpec
from t23d.jobs.store import JobStore

# A stand-in for the CLI with its contract: makes a run directory under --out, stops on SIGINT with
# exit code 130, fails with exit code 2 and an error line, or finishes with 0.
PROGRAM = textwrap.dedent(
    """
    import json, os, signal, sys, time
    out, mode = sys.argv[1], sys.argv[2]
    run = os.path.join(out, "run-1")
    os.makedirs(run, exist_ok=True)
    json.dump({"t23d_run": "generate", "status": "running"}, open(os.path.join(run, "run.json"), "w"))
    signal.signal(signal.SIGINT, lambda *a: sys.exit(130))
    if mode == "fail":
        print("t23d generate: error: boom in the prior", file=sys.stderr)
        sys.exit(2)
    for _ in range(600 if mode == "hang" else 1):
        time.sleep(0.05)
    """
)


def program_command(mode: str):
    def command(spec, runs_parent: Path, settings) -> list[str]:
        return [sys.executable, "-c", PROGRAM, str(runs_parent), mode]

    return command


def workers(store: JobStore, mode: str, **kw) -> LocalWorkers:
    cfg = WorkerConfig(num_workers=1, heartbeat_s=0.1, poll_s=0.05, grace_s=10, **kw)
    return LocalWorkers(store, CommandSettings(), cfg, command_fn=program_command(mode))


def test_job_completes_and_records_its_run_dir(tmp_path):
    store = JobStore(tmp_path)
    pool = workers(store, "ok")
    pool.start()
    try:
        job = store.submit(GenerateSpec(prompt="x"))
        pool.wake()
        done = wait_for(
            lambda: store.get(job.id).status == "completed" and store.get(job.id), 60, what="completion"
        )
        assert done.exit_code == 0 and done.run_dir == str(JobPaths(tmp_path, job.id).runs / "run-1")
        assert "$ " in JobPaths(tmp_path, job.id).log.read_text()  # the command is logged
    finally:
        pool.stop()


def test_failure_records_the_error_line(tmp_path):
    store = JobStore(tmp_path)
    pool = workers(store, "fail")
    pool.start()
    try:
        job = store.submit(GenerateSpec(prompt="x"))
        failed = wait_for(
            lambda: store.get(job.id).status == "failed" and store.get(job.id), 60, what="failure"
        )
        assert failed.exit_code == 2 and "boom in the prior" in failed.error
    finally:
        pool.stop()


def test_cancel_interrupts_the_running_process(tmp_path):
    store = JobStore(tmp_path)
    pool = workers(store, "hang")
    pool.start()
    try:
        job = store.submit(GenerateSpec(prompt="x"))
        running = wait_for(lambda: (j := store.get(job.id)).pid and j, 60, what="the job process")
        store.cancel(job.id)
        done = wait_for(
            lambda: store.get(job.id).status == "cancelled" and store.get(job.id), 60, what="cancel"
        )
        assert done.exit_code == 130  # SIGINT, the CLI's "checkpoint saved" exit
        assert process_start_time(running.pid) != running.pid_start  # the process is gone
    finally:
        pool.stop()


def test_shutdown_gives_running_jobs_back_to_the_queue(tmp_path):
    store = JobStore(tmp_path)
    pool = workers(store, "hang")
    pool.start()
    job = store.submit(GenerateSpec(prompt="x"))
    wait_for(lambda: store.get(job.id).pid, 60, what="the job process")
    pool.stop()
    after = store.get(job.id)
    assert after.status == "queued" and after.exit_code == 130 and after.attempts == 1


def test_orphaned_process_is_killed_and_its_job_requeued(tmp_path):
    store = JobStore(tmp_path)
    job = store.submit(GenerateSpec(prompt="x"))
    store.claim("dead-worker", lease_s=0.01)
    proc = spawn([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "orphan.log")
    import socket

    start = process_start_time(proc.pid)
    store.record_process(job.id, "dead-worker", proc.pid, start, socket.gethostname())
    time.sleep(0.05)
    assert recover_orphans(store, only_expired=True) == [job.id]
    assert process_start_time(proc.pid) != start  # killed (and reaped) before the job was requeued
    assert store.get(job.id).status == "queued"


def test_job_process_dies_with_its_worker(tmp_path):
    """PR_SET_PDEATHSIG: a worker killed with SIGKILL leaves no job process behind (it would run twice)."""
    worker = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from t23d.jobs.process import spawn
        p = spawn([sys.executable, "-c", "import time; time.sleep(60)"], Path({str(tmp_path / "w.log")!r}))
        print(p.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", worker], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    child = int(parent.stdout.readline())
    start = process_start_time(child)
    assert start is not None
    parent.kill()
    parent.wait(10)
    wait_for(lambda: process_start_time(child) != start, 10, 0.05, "the job process to die with its worker")
