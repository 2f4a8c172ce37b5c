"""``t23d refine``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from t23d.cli.common import apply_yaml_files, run_training_command


def refine_command_config(args: argparse.Namespace, source: Path | None):
    """The refine config from ``--preset``, ``--config`` files and flags (completed from ``source``)."""
    from t23d.common.errors import T23dError
    from t23d.optimise.refine_config import refine_preset
    from t23d.optimise.refine_run import refine_config_for

    cfg = apply_yaml_files(refine_preset(args.preset), args.config)
    changes: dict = {}
    if args.steps is not None:
        if args.steps < 1:
            raise T23dError(f"--steps must be a positive integer, got {args.steps}")
        changes["steps"] = args.steps
    elif source is None:
        changes["steps"] = 0  # resuming: keep the saved number of steps
    if args.resolution is not None:
        if args.resolution < 8:
            raise T23dError(f"--resolution must be an integer >= 8 (pixels), got {args.resolution}")
        changes["camera"] = dataclasses.replace(cfg.camera, resolution=args.resolution)
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.device is not None:
        if args.device not in ("auto", "cpu", "cuda"):
            raise T23dError(f"--device {args.device!r} is not one of: auto, cpu, cuda")
        changes["device"] = args.device
    if args.no_export:
        changes["export_at_end"] = False
    cfg = dataclasses.replace(cfg, **changes)
    if source is not None:
        cfg = refine_config_for(source, cfg, args.prior)
    return cfg


def main(args: argparse.Namespace) -> int:
    from t23d.common.errors import T23dError
    from t23d.optimise.refine_run import run_refine

    resume = Path(args.resume) if args.resume else None
    if resume is None and args.run_dir is None:
        raise T23dError(
            "a stage-1 run directory is required: t23d refine RUN_DIR (or --resume REFINE_RUN_DIR)"
        )
    if resume is not None and args.prior is not None:
        raise T23dError("--prior cannot change the prior of a run being resumed; start a new refine run")
    cfg = refine_command_config(args, None if resume is not None else Path(args.run_dir))
    out = Path(args.out) if args.out else None
    return run_training_command("refine", lambda **kw: run_refine(cfg, out, resume=resume, **kw))
