"""``t23d reconstruct``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from t23d.cli.common import apply_yaml_files, run_training_command, schedules_for_steps


def main(args: argparse.Namespace) -> int:
    from t23d.cli.export import export_overrides
    from t23d.common.errors import T23dError
    from t23d.reconstruct.config import reconstruct_preset
    from t23d.reconstruct.run import run_reconstruct

    resume = Path(args.resume) if args.resume else None
    if resume is None and args.input is None:
        raise T23dError("an input is required, e.g. t23d reconstruct photos/ (or --resume RUN_DIR)")
    base = reconstruct_preset(args.preset, getattr(args, "geometry", None))
    base = schedules_for_steps(base, args.steps if resume is None else None)
    cfg = apply_yaml_files(base, args.config)
    changes: dict = {}
    if args.input is not None:
        changes["input"] = args.input
    data_changes: dict = {}
    if args.data_format is not None:
        data_changes["format"] = args.data_format
    if args.downscale is not None:
        if args.downscale < 1:
            raise T23dError(f"--downscale must be a positive integer, got {args.downscale}")
        data_changes["downscale"] = args.downscale
    if getattr(args, "scale", None) is not None:
        data_changes["scale"] = args.scale
    if getattr(args, "bbox", None) is not None:
        data_changes["bbox"] = list(args.bbox)
    if data_changes:
        from t23d.common.config import apply_overrides

        changes["data"] = apply_overrides(cfg.data, data_changes, prefix="data")
    if args.steps is not None:
        if args.steps < 1:
            raise T23dError(f"--steps must be a positive integer, got {args.steps}")
        changes["steps"] = args.steps
    elif resume is not None:
        changes["steps"] = 0
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.device is not None:
        if args.device not in ("auto", "cpu", "cuda"):
            raise T23dError(f"--device {args.device!r} is not one of: auto, cpu, cuda")
        changes["device"] = args.device
    if args.no_export:
        changes["export_at_end"] = False
    from t23d.common.config import apply_overrides

    local = args.local_codes
    if local is not None and local != "auto":
        if not local.isdigit():
            raise T23dError(f"--local-codes {local!r}: give 'auto' or a size (an integer >= 0; 0: off)")
        local = int(local)
    appearance = {"shading": args.shading, "per_image": args.appearance, "local_codes": local}
    appearance = {k: v for k, v in appearance.items() if v is not None}
    if appearance:
        changes["appearance"] = apply_overrides(cfg.appearance, appearance, prefix="appearance")
    if args.refine_poses:
        changes["pose_refinement"] = dataclasses.replace(cfg.pose_refinement, enabled=True)
    if getattr(args, "warm_start", None) is not None:
        if args.warm_start < 0:
            raise T23dError(f"--warm-start must be a number of steps >= 0, got {args.warm_start}")
        changes["warm_start"] = dataclasses.replace(cfg.warm_start, steps=args.warm_start)
    if args.few_views is not None:
        changes["few_view"] = apply_overrides(cfg.few_view, {"mode": args.few_views}, prefix="few_view")
    changes["export"] = export_overrides(cfg.export, args)
    cfg = dataclasses.replace(cfg, **changes)

    return run_training_command(
        "reconstruct", lambda **kw: run_reconstruct(cfg, Path(args.out), resume=resume, **kw)
    )
