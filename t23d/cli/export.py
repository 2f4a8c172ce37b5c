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
        "height": args.height,
        "origin": args.origin,
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    cfg = apply_overrides(base, overrides)
    from t23d.export.config import validate_export_config

    validate_export_config(cfg)
    return dataclasses.replace(cfg)


def main(args: argparse.Namespace) -> int:
    from t23d.common.errors import T23dError
    from t23d.run.rundir import read_run, update_run

    run_dir = Path(args.run_dir)
    info = read_run(run_dir)
    kind = info["t23d_run"]
    if kind == "generate":
        from t23d.optimise.generate import export_generate_run as export_run
        from t23d.optimise.generate import load_generate_state as load_state
    elif kind == "refine":
        from t23d.optimise.refine_run import export_refine_run as export_run
        from t23d.optimise.refine_run import load_refine_run as load_state
    elif kind == "reconstruct":
        from t23d.reconstruct.run import export_reconstruct_run as export_run
        from t23d.reconstruct.run import load_reconstruct_state as load_state
    else:
        raise T23dError(f"{run_dir} is a '{kind}' run, which has no asset to export")
    cfg, state = load_state(run_dir)
    export_cfg = export_overrides(cfg.export, args)
    out_dir = Path(args.out) if args.out else run_dir / "export"
    summary = export_run(run_dir, cfg, state, export_cfg, out_dir)
    if args.out is None:
        update_run(run_dir, export=summary)
    print(f"exported: {summary.get('asset_path', out_dir)}")
    return 0
