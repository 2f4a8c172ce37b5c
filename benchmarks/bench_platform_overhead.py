"""Scheduling overhead of the job platform per job: local workers vs Ray (issue 10).

Runs N tiny jobs through the real job service (store, claims, leases, heartbeats, subprocess spawn and
supervision, or Ray tasks), with the job's own process replaced by a no-op program that does what the
CLI does to its output folder (creates the run directory) and exits, so what is left is the platform's
own cost. Reported:

- throughput overhead: ``concurrency * wall / N - t_process`` for N jobs queued at once,
- latency overhead: submit -> recorded finished, minus ``t_process``, for single jobs on an idle service.

    python benchmarks/bench_platform_overhead.py --backend local --jobs 100 --workers 2
    python benchmarks/bench_platform_overhead.py --backend ray --jobs 100 --workers 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOOP = """#!/bin/sh
# stands in for "python -m t23d.cli.main ...": makes the run directory the CLI would make, then exits
while [ $# -gt 0 ]; do if [ "$1" = "--out" ]; then out="$2"; fi; shift; done
mkdir -p "$out/run" && printf '{"t23d_run": "generate", "status": "completed"}' > "$out/run/run.json"
"""


def wait_done(store, ids: list[str], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out with {len(pending)} jobs unfinished")
        pending = {i for i in pending if store.get(i).status not in ("completed", "failed", "cancelled")}
        time.sleep(0.005)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["local", "ray"], default="local")
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2, help="local workers, or CPUs of the local Ray instance")
    ap.add_argument("--latency-jobs", type=int, default=10)
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args()

    from t23d.jobs.local import WorkerConfig
    from t23d.jobs.service import JobService, ServiceConfig
    from t23d.jobs.spec import CommandSettings, GenerateSpec

    tmp = Path(tempfile.mkdtemp(prefix="t23d-bench-platform-"))
    noop = tmp / "noop-python"
    noop.write_text(NOOP)
    noop.chmod(0o755)
    runs = []
    for i in range(20):
        out = tmp / f"probe{i}"
        t0 = time.perf_counter()
        subprocess.run([str(noop), "-m", "x", "--out", str(out)], check=True)
        runs.append(time.perf_counter() - t0)
    t_proc = statistics.median(runs)

    if args.backend == "ray":
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t0
    service = JobService(
        ServiceConfig(
            data_dir=tmp / "data",
            settings=CommandSettings(python=str(noop)),
            workers=WorkerConfig(num_workers=args.workers),
            ray="local" if args.backend == "ray" else None,
            max_queued=args.jobs + 10,
        )
    )
    service.start()
    spec = GenerateSpec(prompt="a red ball", preset="fast")
    try:
        warm = [service.submit(spec).id for _ in range(args.workers * 2)]  # Ray starts its workers lazily
        wait_done(service.store, warm)
        t0 = time.time()
        ids = [service.submit(spec).id for _ in range(args.jobs)]
        submit_s = time.time() - t0
        wait_done(service.store, ids)
        jobs = [service.store.get(i) for i in ids]
        wall = max(j.finished_at for j in jobs) - min(j.created_at for j in jobs)
        statuses = {s: sum(j.status == s for j in jobs) for s in {j.status for j in jobs}}
        latencies = []
        for _ in range(args.latency_jobs):
            job_id = service.submit(spec).id
            wait_done(service.store, [job_id])
            job = service.store.get(job_id)
            latencies.append(job.finished_at - job.created_at - t_proc)
            time.sleep(0.2)
    finally:
        service.stop(timeout_s=30)
    result = {
        "backend": args.backend,
        "jobs": args.jobs,
        "concurrency": args.workers,
        "statuses": statuses,
        "process_s": round(t_proc, 4),
        "submit_s_per_job": round(submit_s / args.jobs, 4),
        "wall_s": round(wall, 2),
        "throughput_overhead_s_per_job": round(args.workers * wall / args.jobs - t_proc, 3),
        "latency_overhead_s_median": round(statistics.median(latencies), 3),
        "latency_overhead_s_max": round(max(latencies), 3),
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }
    if args.backend == "ray":
        result["ray_init_s"] = round(ray_start, 1)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
