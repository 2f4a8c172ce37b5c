"""``t23d export RUN_DIR``: rerun the asset stage alone from a run directory."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any


def export_overrides(base: Any, args: argparse.Namespace) -> Any:
    """Apply the export flags shared by ``export`` and ``reconstruct`` to an ExportConfig."""
    from t23d.common.config import apply_overrides

    flags = {
        "format": args.export_format,
        "resolution": args.resolution,
        "faces": args.faces,
        "texture_size": args.texture_size,
        "threshold": args.threshold,
        "extraction": getattr(args, "extraction", None),
        "height": args.height,
        "origin": args.origin,
        "texture": getattr(args, "texture", None),
        "texture_source": getattr(args, "texture_source", None),
        "albedo_reference": getattr(args, "albedo_reference", None),
        "normal_map": getattr(args, "normal_map", None),
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    cfg = apply_overrides(base, overrides)
    from t23d.export.config import validate_export_config

    validate_export_config(cfg)
    return dataclasses.replace(cfg)


def main(args: argparse.Namespace) -> int:
    import contextlib
    import logging

    from t23d.common.errors import T23dError
    from t23d.run.checkpoint import latest_step
    from t23d.run.lifecycle import locked_run
    from t23d.run.lock import RunBusy, is_locked
    from t23d.run.rundir import read_run, update_run

    run_dir = Path(args.run_dir)
    info = read_run(run_dir)
    kind = info["t23d_run"]
    if kind == "generate":
        from t23d.optimise.generate import export_generate_run as export_run
        from t23d.optimise.generate import load_generate_state as load_state
        from t23d.optimise.generate import load_run_config as load_config
    elif kind == "refine":
        from t23d.optimise.refine_run import export_refine_run as export_run
        from t23d.optimise.refine_run import load_refine_config as load_config
        from t23d.optimise.refine_run import load_refine_run as load_state
    elif kind == "reconstruct":
        from t23d.reconstruct.run import export_reconstruct_run as export_run
        from t23d.reconstruct.run import load_reconstruct_config as load_config
        from t23d.reconstruct.run import load_reconstruct_state as load_state
    else:
        raise T23dError(f"{run_dir} is a '{kind}' run, which has no asset to export")
    # the options are checked before anything is locked, loaded or written
    export_cfg = export_overrides(load_config(run_dir).export, args)
    if export_cfg.albedo_reference is not None and kind != "reconstruct":
        raise T23dError(
            f"--albedo-reference calibrates the albedo of photo runs; {run_dir} is a '{kind}' run, whose "
            "colours come from a prior, not from photos of a card: drop --albedo-reference"
        )
    if export_cfg.texture_source == "photos" and kind != "reconstruct":
        raise T23dError(
            f"--texture-source photos projects the photos of a photo run; {run_dir} is a '{kind}' run, which "
            "has none: drop --texture-source (its texture is the field's)"
        )
    out_dir = Path(args.out) if args.out else run_dir / "export"
    with contextlib.ExitStack() as held:
        if args.out is None:
            # writes RUN_DIR/export and run.json, which a training process also writes: exclusive
            try:
                held.enter_context(locked_run(run_dir, "export"))
            except RunBusy as e:
                raise T23dError(
                    f"{e} (or export a snapshot of its latest checkpoint elsewhere now: t23d export {run_dir} "
                    "--out DIR)"
                ) from None
        elif is_locked(run_dir):
            logging.getLogger("t23d.export").warning(
                "%s is still training: exporting its latest checkpoint (step %s), a snapshot of the run so far",
                run_dir,
                latest_step(run_dir / "checkpoints"),
            )
        cfg, state = load_state(run_dir)
        summary = export_run(run_dir, cfg, state, export_cfg, out_dir)
        if args.out is None:
            update_run(run_dir, export=summary)
    print(f"exported: {summary.get('asset_path', out_dir)}")
    return 0
