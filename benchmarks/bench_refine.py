"""CPU cost of one refine step (``t23d refine``) at several render resolutions, and its breakdown.

A stage-1 run is made first with the given prior (a tiny random one is built when no ``--prior`` is
given, so the numbers are the refine machinery's own cost: rasterisation, colour field, shading,
anti-aliasing, backward; a real prior adds its UNet/VAE cost on top). Then, for each resolution, a
refine run of ``--steps`` steps on a mesh of ``--faces`` faces (the ``fast`` preset's colour field), and
the mean wall time per step after ``--warmup`` steps, split into render / guidance / backward /
optimiser (``StepInfo.timings``).

    python benchmarks/bench_refine.py --resolutions 128 256 512 --faces 20000 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--faces", type=int, default=20_000, help="faces of the refined mesh")
    ap.add_argument("--steps", type=int, default=8, help="steps per resolution (incl. warm-up)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prior", default=None, help="prior folder (default: a tiny random SD built here)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO / "tests" / "optimise"))
    from gen_helpers import smoke_config

    from t23d.optimise.generate import run_generate
    from t23d.optimise.refine_config import MeshInitConfig, refine_preset
    from t23d.optimise.refine_run import refine_config_for, run_refine
    from t23d.render.cameras import RandomCameraConfig

    work = Path(tempfile.mkdtemp(prefix="refine-bench-"))
    prior = Path(args.prior) if args.prior else None
    if prior is None:
        from fixtures.tiny_priors import build_tiny_sd

        prior = build_tiny_sd(work / "tiny-sd")
    # a stage-1 field with a compact blob: enough surface for a mesh of --faces faces
    stage1 = run_generate(smoke_config(prior, steps=2, export_at_end=False), work / "stage1")
    load0 = open("/proc/loadavg").read().split()[:3]
    rows = []
    for res in args.resolutions:
        base = refine_preset("fast")
        cfg = dataclasses.replace(
            base,
            steps=args.steps,
            device="cpu",
            export_at_end=False,
            checkpoint_every=10**6,
            mesh=MeshInitConfig(resolution=256, faces=args.faces, visibility_views=16),
            camera=RandomCameraConfig(resolution=res),
            preview=dataclasses.replace(base.preview, num_views=1, turntable_frames=0, resolution=32),
        )
        cfg = refine_config_for(stage1, cfg)
        times: list[dict[str, float]] = []

        def record(info, times=times):
            times.append({**info.timings, "wall": time.perf_counter()})

        t0 = time.perf_counter()
        run_dir = run_refine(cfg, work / f"r{res}", callback=record)
        faces = json.loads((run_dir / "run.json").read_text())["init"]["mesh_faces"]
        walls = [t0] + [t["wall"] for t in times]
        steps = [walls[i + 1] - walls[i] for i in range(len(times))][args.warmup :]
        phases = {
            k: sum(t[k] for t in times[args.warmup :]) / len(steps)
            for k in ("render", "guidance", "backward", "optimiser")
        }
        rows.append(
            {
                "resolution": res,
                "faces": faces,
                "step_s": sum(steps) / len(steps),
                **{f"{k}_s": v for k, v in phases.items()},
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    load1 = open("/proc/loadavg").read().split()[:3]
    result = {
        "rows": rows,
        "prior": str(prior),
        "threads": args.threads,
        "loadavg_before": load0,
        "loadavg_after": load1,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    print("| render px | faces | step (s) | render | guidance | backward | optimiser |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['resolution']} | {r['faces']} | {r['step_s']:.3f} | {r['render_s']:.3f} | {r['guidance_s']:.3f} "
            f"| {r['backward_s']:.3f} | {r['optimiser_s']:.3f} |"
        )
    print(f"load average before {' '.join(load0)}, after {' '.join(load1)}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
