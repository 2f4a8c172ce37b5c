"""``kill -9`` the real ``t23d serve`` process mid-job and restart it: queued jobs stay queued, the running
job resumes from its checkpoint (the CLI's ``--resume``), finished jobs stay in the gallery, none runs twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
from helpers.cli import t23d_command, t23d_env
from helpers.platform import JOB_CONFIGS, JOB_TIMEOUT_S, free_port, wait_for

from t23d.jobs.process import process_start_time
from t23d.jobs.store import JobStore


def start_server(data: Path, port: int, prior: Path, log: Path) -> subprocess.Popen:
    cmd = t23d_command(
        "serve", "--data", str(data), "--port", str(port), "--prior", str(prior), "--device", "cpu"
    )
    for c in JOB_CONFIGS:
        cmd += ["--config", c]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=t23d_env())
    base = f"http://127.0.0.1:{port}"

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"t23d serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{base}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 120, 0.2, "t23d serve to answer")
    return proc


def test_kill_9_and_restart(tmp_path, tiny_sd_dir):
    data, port, log = tmp_path / "data", free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    server = start_server(data, port, tiny_sd_dir, log)
    try:
        a = httpx.post(
            f"{base}/api/jobs", json={"prompt": "a red ball", "preset": "fast", "steps": 6}
        ).json()["id"]
        b = httpx.post(f"{base}/api/jobs", json={"prompt": "a stone grotto", "preset": "fast"}).json()["id"]
        store = JobStore(data)
        runs = data / "jobs" / a / "runs"

        def checkpointed():
            run_dirs = list(runs.glob("*/checkpoints/latest.json"))
            return run_dirs and json.loads(run_dirs[0].read_text())

        wait_for(checkpointed, JOB_TIMEOUT_S, 0.05, "job A's first checkpoint")
        live = httpx.get(f"{base}/api/jobs/{a}").json()  # live progress from the run's progress.json
        assert (
            live["status"] == "running" and live["steps"] == 6 and live["phase"] in ("training", "finishing")
        )
        assert live["step"] >= 1 and isinstance(live["loss"], float)
        running = store.get(a)
        assert running.status == "running" and running.pid
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
        # the job's CLI process dies with the server (it must not go on and then run a second time)
        wait_for(
            lambda: process_start_time(running.pid) != running.pid_start,
            10,
            0.05,
            "the orphaned job process to die",
        )
        assert (
            store.get(a).status == "running" and store.get(b).status == "queued"
        )  # as the store last saw them

        server = start_server(data, port, tiny_sd_dir, log)
        assert httpx.get(f"{base}/api/jobs/{b}").json()["status"] == "queued"
        assert httpx.post(f"{base}/api/jobs/{b}/cancel").json()["status"] == "cancelled"

        def a_finished():
            job = httpx.get(f"{base}/api/jobs/{a}").json()
            assert job["status"] not in ("failed", "cancelled"), job
            return job["status"] == "completed" and job

        done = wait_for(a_finished, JOB_TIMEOUT_S, 0.5, "job A to complete after the restart")
        assert done["attempts"] == 2 and done["step"] == done["steps"] == 6
        (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]  # one run directory: resumed, not restarted
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "completed" and info["resumed_from_step"] >= 1
        assert "--resume" in (data / "jobs" / a / "worker.log").read_text()

        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
        server = start_server(data, port, tiny_sd_dir, log)
        jobs = {j["id"]: j for j in httpx.get(f"{base}/api/jobs").json()["jobs"]}
        assert (
            jobs[a]["status"] == "completed"
            and jobs[a]["files"]["asset"]
            and jobs[b]["status"] == "cancelled"
        )
        assert httpx.get(f"{base}/api/jobs/{a}/asset").content[:4] == b"glTF"
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
