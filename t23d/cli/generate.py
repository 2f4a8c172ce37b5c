"""``t23d generate``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from t23d.cli.common import apply_yaml_files, run_training_command, schedules_for_steps


def main(args: argparse.Namespace) -> int:
    from t23d.common.errors import T23dError
    from t23d.optimise.config import preset
    from t23d.optimise.generate import run_generate

    resume = Path(args.resume) if args.resume else None
    image = getattr(args, "image", None)
    if resume is None and args.prompt is None and image is None:
        raise T23dError(
            'a prompt is required, e.g. t23d generate "stone grotto" (or --image PHOTO, or --resume RUN_DIR)'
        )
    if image is not None:
        cfg = _image_config(args)
    else:
        for flag in ("mask", "elevation"):
            if getattr(args, flag, None) is not None:
                raise T23dError(f"--{flag} goes with --image PHOTO (image -> 3D); this run has no --image")
        base = preset(args.preset, getattr(args, "geometry", None))
        base = schedules_for_steps(base, args.steps if resume is None else None)
        cfg = apply_yaml_files(base, args.config)
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
        from t23d.guidance.detect import guidance_config_for_prior

        # the folder's (or hub repository's) model_index.json picks the guidance kind (SD, IF, ...)
        changes["guidance"] = guidance_config_for_prior(cfg.guidance, args.prior)
    cfg = dataclasses.replace(cfg, **changes)
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise T23dError(f"--device {cfg.device!r} is not one of: auto, cpu, cuda")

    made: dict[str, Path] = {}

    def run(**kw) -> Path:
        made["run_dir"] = run_generate(cfg, Path(args.out), resume=resume, **kw)
        return made["run_dir"]

    code = run_training_command("generate", run)
    if code != 0 or not getattr(args, "refine", False):
        return code
    from t23d.cli.refine import main as refine_main

    refine_args = argparse.Namespace(
        run_dir=str(made["run_dir"]),
        preset="fast" if args.preset == "fast" else "default",
        config=list(getattr(args, "refine_config", [])),
        steps=None,
        resolution=None,
        prior=None,  # the stage-1 run's prior (already --prior when given)
        seed=args.seed,
        device=args.device,
        out=None,
        resume=None,
        no_export=args.no_export,
    )
    return refine_main(refine_args)


def _image_config(args: argparse.Namespace):
    """The config of ``t23d generate --image``: the image preset, YAML overrides, then the image flags."""
    from t23d.common.errors import T23dError
    from t23d.optimise.config import image_preset

    if args.resume:
        raise T23dError(
            "--image starts a new run; --resume RUN_DIR continues one with the image it was started with "
            "(kept in RUN_DIR/input/): drop --image"
        )
    if args.prompt is not None:
        raise T23dError(
            f"--image cannot be combined with a text prompt ({args.prompt!r}): the Zero123 prior is conditioned "
            "on the image only"
        )
    if getattr(args, "refine", False):
        raise T23dError("--refine is not available for --image runs yet; run 't23d generate --image' alone")
    if args.negative_prompt is not None:
        raise T23dError("--negative-prompt has no effect on an --image run (the Zero123 prior takes no text)")
    cfg = apply_yaml_files(
        image_preset(args.preset, getattr(args, "geometry", None), args.steps), args.config
    )
    if cfg.reference is None:
        raise T23dError("--config set 'reference: null'; an --image run needs its reference view")
    ref = dataclasses.replace(cfg.reference, image=str(Path(args.image)))
    if args.mask is not None:
        ref = dataclasses.replace(ref, mask=str(Path(args.mask)))
    if args.elevation is not None:
        ref = dataclasses.replace(ref, elevation_deg=float(args.elevation))
    return dataclasses.replace(cfg, reference=ref)
