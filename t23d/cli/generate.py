"""``t23d generate``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from t23d.cli.common import Progress, apply_yaml_files, stop_on_sigint


def main(args: argparse.Namespace) -> int:
    from t23d.common.errors import T23dError
    from t23d.optimise.config import preset
    from t23d.optimise.generate import run_generate
    from t23d.optimise.state import TrainingInterrupted

    resume = Path(args.resume) if args.resume else None
    if resume is None and args.prompt is None:
        raise T23dError('a prompt is required, e.g. t23d generate "stone grotto" (or --resume RUN_DIR)')
    cfg = apply_yaml_files(preset(args.preset), args.config)
    changes: dict = {}
    if args.prompt is not None:
        changes["prompt"] = args.prompt
    if args.negative_prompt is not None:
        changes["negative_prompt"] = args.negative_prompt
    if args.steps is not None:
        if args.steps < 1:
            raise T23dError(f"--steps must be a positive integer, got {args.steps}")
        changes["steps"] = args.steps
    elif resume is not None:
        changes["steps"] = 0  # keep the saved number of steps
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.device is not None:
        changes["device"] = args.device
    if args.no_export:
        changes["export_at_end"] = False
    if args.prior is not None:
        changes["guidance"] = dataclasses.replace(cfg.guidance, pretrained=args.prior)
    cfg = dataclasses.replace(cfg, **changes)
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise T23dError(f"--device {cfg.device!r} is not one of: auto, cpu, cuda")

    progress: Progress | None = None

    def on_step(info) -> None:
        nonlocal progress
        if progress is None:
            progress = Progress(info.total_steps, initial=info.step - 1)
        progress(info)

    with stop_on_sigint() as should_stop:
        try:
            run_dir = run_generate(
                cfg, Path(args.out), resume=resume, callback=on_step, should_stop=should_stop
            )
        except TrainingInterrupted as e:
            if progress:
                progress.close()
            print(
                f"interrupted at step {e.step}; checkpoint saved in {e.run_dir}/checkpoints\n"
                f"resume with: t23d generate --resume {e.run_dir}",
                file=sys.stderr,
            )
            return 130
        finally:
            if progress:
                progress.close()
    print(f"done: {run_dir}")
    return 0
