"""API latency of ``t23d serve`` under 50 concurrent pollers on loopback while a job trains (issue 10).

Starts the real service (``python -m t23d.cli.main serve``) with the tiny random prior, submits a long
generate job, waits until it is training, then runs ``--pollers`` concurrent clients, each sending
``--requests`` sequential ``GET /api/jobs/{id}`` (what a page or script polls); bounded in count and time,
loopback only; each poller pauses ``--interval-s`` between its requests (a page polls about twice a second;
0 sends back to back, which measures saturation). Prints p50/p95/p99/max latency.

    python benchmarks/bench_api_latency.py --pollers 50 --requests 40 --interval-s 0.5
    python benchmarks/bench_api_latency.py --pollers 50 --requests 40 --interval-s 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def poll(
    base: str, job_id: str, pollers: int, requests: int, budget_s: float, interval_s: float
) -> list[float]:
    import httpx

    latencies: list[float] = []
    deadline = time.monotonic() + budget_s
    limits = httpx.Limits(max_connections=pollers, max_keepalive_connections=pollers)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def one(k: int) -> None:
            await asyncio.sleep(interval_s * k / pollers)  # spread the pollers over one interval
            for _ in range(requests):
                if time.monotonic() > deadline:
                    return
                t0 = time.perf_counter()
                r = await client.get(f"/api/jobs/{job_id}")
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
                await asyncio.sleep(interval_s)

        await asyncio.gather(*(one(k) for k in range(pollers)))
    return latencies


def pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]
        if len(values) > 1
        else values[0]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pollers", type=int, default=50)
    ap.add_argument("--requests", type=int, default=40, help="sequential requests per poller")
    ap.add_argument(
        "--interval-s", type=float, default=0.5, help="pause between a poller's requests (0: back to back)"
    )
    ap.add_argument("--budget-s", type=float, default=120, help="stop polling after this long in any case")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import httpx

    sys.path.insert(0, str(REPO / "tests"))
    from fixtures.tiny_priors import build_tiny_sd

    tmp = Path(tempfile.mkdtemp(prefix="t23d-bench-api-"))
    prior = build_tiny_sd(tmp / "tiny-sd")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "t23d.cli.main", "serve", "--data", str(tmp / "data"), "--port", str(port)]
    cmd += ["--prior", str(prior), "--device", "cpu", "--config", str(REPO / "configs" / "cpu-smoke.yaml")]
    log = open(tmp / "serve.log", "wb")
    server = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, HF_HUB_OFFLINE="1")
    )
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        job_id = httpx.post(
            f"{base}/api/jobs", json={"prompt": "a red ball", "preset": "fast", "steps": 100000}
        ).json()["id"]
        worker_log = tmp / "data" / "jobs" / job_id / "worker.log"
        for _ in range(3000):  # wait until the job is training (not just starting)
            if worker_log.exists() and "training 'a red ball'" in worker_log.read_text():
                break
            time.sleep(0.1)
        else:
            raise SystemExit("the job never started training; see " + str(worker_log))
        load_before = open("/proc/loadavg").read().split()[:3]
        t0 = time.monotonic()
        latencies = asyncio.run(
            poll(base, job_id, args.pollers, args.requests, args.budget_s, args.interval_s)
        )
        wall = time.monotonic() - t0
        job = httpx.get(f"{base}/api/jobs/{job_id}").json()
        assert job["status"] == "running", job
        httpx.post(f"{base}/api/jobs/{job_id}/cancel")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    ms = [x * 1000 for x in latencies]
    result = {
        "pollers": args.pollers,
        "interval_s": args.interval_s,
        "requests": len(ms),
        "wall_s": round(wall, 1),
        "requests_per_s": round(len(ms) / wall, 1),
        "p50_ms": round(pct(ms, 50), 1),
        "p95_ms": round(pct(ms, 95), 1),
        "p99_ms": round(pct(ms, 99), 1),
        "max_ms": round(max(ms), 1),
        "job_step_at_end": job.get("step"),
        "loadavg_before": load_before,
        "loadavg_after": open("/proc/loadavg").read().split()[:3],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
