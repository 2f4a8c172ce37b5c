"""Asset-export fidelity on the oracle-prior result (issue 3's benchmark figure).

Trains ``t23d generate``'s loop with the test suite's oracle guidance (``tests/helpers/oracle.py``: the
analytic optimum noise prediction for renders of a known coloured sphere; a test helper, never a
product prior), then exports the asset at the default export settings exactly as ``t23d generate``
does at the end of a run (with ``ExportConfig()``'s defaults: 256^3, 50k faces, 1024^2, rather than the
``fast`` preset's smaller export), and prints the export report: mesh-vs-field fidelity (object-pixel PSNR,
whole-image PSNR, silhouette IoU), triangles, file size and stage timings.

    python benchmarks/bench_oracle_export.py --steps 600 --resolution 64
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # helpers.oracle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--resolution", type=int, default=64, help="SDS render resolution")
    ap.add_argument("--out", type=Path, default=Path("/tmp/t23d-bench/oracle_runs"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from helpers.oracle import OracleGuidance

    from t23d.common.schedule import Constant
    from t23d.export import ExportConfig
    from t23d.field.background import ConstantBackground
    from t23d.optimise.config import preset
    from t23d.optimise.generate import run_generate
    from t23d.optimise.regularisers import RegularisersConfig
    from t23d.render.cameras import RandomCameraConfig, WorldDistance
    from t23d.render.shading import ShadingConfig

    distance, fov = 1.75, 50.0
    cfg = dataclasses.replace(
        preset("fast"),
        prompt="oracle sphere",
        steps=args.steps,
        device="cpu",
        export_at_end=True,
        background=ConstantBackground((1.0, 1.0, 1.0)),
        camera=RandomCameraConfig(
            resolution=args.resolution, distance=WorldDistance((distance, distance)), fov_range=(fov, fov)
        ),
        shading=ShadingConfig(albedo_only_steps=10**9),
        regularisers=RegularisersConfig(orientation=Constant(0.0), sparsity=Constant(0.0)),
        checkpoint_every=10**6,
        export=ExportConfig(),
    )
    t0 = time.perf_counter()
    run_dir = run_generate(cfg, args.out, guidance=OracleGuidance(distance, fov))
    total_s = time.perf_counter() - t0
    report = json.loads((run_dir / "export" / "export.json").read_text())
    asset = Path(report["asset_path"])
    fid = report["fidelity"]
    result = {
        "steps": args.steps,
        "sds_resolution": args.resolution,
        "train_and_export_s": round(total_s, 1),
        "export_s": report["timings"]["total"],
        "fidelity_psnr_object": fid["psnr"],
        "fidelity_psnr_image": fid["image_psnr"],
        "fidelity_iou": fid["iou"],
        "fidelity_views": fid["num_views"],
        "triangles": report["num_faces"],
        "file_bytes": asset.stat().st_size,
        "timings": report["timings"],
        "run_dir": str(run_dir),
    }
    print(json.dumps(result, indent=1))
    (run_dir / "bench_oracle_export.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
