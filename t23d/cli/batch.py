"""``t23d batch``: many generate/reconstruct jobs from a prompts file or a folder of captures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(args: argparse.Namespace) -> int:
    from t23d.common.errors import ConfigError
    from t23d.jobs.batch import read_batch, run_batch
    from t23d.jobs.local import WorkerConfig
    from t23d.jobs.service import ServiceConfig
    from t23d.jobs.spec import (
        CommandSettings,
        GenerateSpec,
        ReconstructSpec,
        resolve_config_files,
        resolve_priors,
        validate_spec,
    )

    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    priors = resolve_priors([args.prior] if args.prior else [])
    generate = GenerateSpec(
        prompt="-", negative_prompt=args.negative_prompt, preset=args.preset, steps=args.steps, seed=args.seed
    )
    reconstruct = ReconstructSpec(
        input="-", data_format=args.data_format, preset=args.preset, steps=args.steps, seed=args.seed,
        downscale=args.downscale,
    )  # fmt: skip
    validate_spec(generate, priors)
    validate_spec(reconstruct)
    items = read_batch(Path(args.source), generate, reconstruct)
    out = Path(args.out).resolve()
    config = ServiceConfig(
        data_dir=out,
        settings=CommandSettings(
            priors=priors, config_files=resolve_config_files(args.config), device=args.device
        ),
        workers=WorkerConfig(num_workers=args.workers),
        ray=args.ray,
    )
    last: dict[str, str] = {}

    def on_progress(jobs) -> None:
        for job in jobs:
            if last.get(job.id) != job.status:
                last[job.id] = job.status
                done = sum(j.status in ("completed", "failed", "cancelled") for j in jobs)
                extra = f": {job.error}" if job.status == "failed" and job.error else ""
                print(f"[{done}/{len(jobs)}] {job.status:9s} {job.title}{extra}", file=sys.stderr, flush=True)

    jobs = run_batch(items, config, on_progress)
    failed = [j for j in jobs if j.status != "completed"]
    print(
        f"{len(jobs) - len(failed)}/{len(jobs)} completed; summary: {out / 'summary.json'}, gallery: {out / 'index.html'}"
    )
    return 1 if failed else 0
