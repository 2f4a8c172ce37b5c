"""Does ``t23d refine`` improve on stage 1? Measured with the learned toy prior against the object it learned.

For a stage-1 run made by ``t23d generate`` with the learned prior (``benchmarks/bench_generate.py``, or
``--generate`` here), this runs the real CLI::

    python -m t23d.cli.main refine STAGE1_RUN --preset fast [--steps N] [--resolution R] --device cpu --out OUT

and measures both the stage-1 field and the refined mesh (rendered by the product's own renderers:
volume rendering / the rasteriser) against the procedural object the prior learned from
(``benchmarks/learned_prior/scene.py``), from an orbit of 3 elevations x 16 azimuths at the run's
evaluation distance and fov, at ``--eval-resolution`` pixels (above stage 1's 32 px):

- **silhouette IoU** (opacity > 0.5 vs the object's coverage) and **object PSNR** (albedo over black on
  the union of both masks);
- **texture sharpness**: the mean magnitude of the albedo's image gradient over object pixels, as a
  fraction of the true object's (1 = as sharp as the object; a blurred texture scores lower);
- the exported assets' **fidelity** (``export.json``: mesh vs what it was made from).

    python benchmarks/bench_refine_quality.py --prompt "a red ball" --generate --steps 1000 --refine-steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "benchmarks" / "learned_prior"))

from bench_generate import (  # noqa: E402
    DEFAULT_PRIOR,
    eval_views,
    iou,
    loadavg,
    masked_psnr,
    prior_resolution_yaml,
    render_field_albedo,
)
from scene import render_views, toy_objects  # noqa: E402


def sharpness(albedo: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean |image gradient| of ``albedo`` [B, H, W, 3] over pixels whose 2x2 neighbourhood is in ``mask``."""
    gx = (albedo[:, :-1, 1:] - albedo[:, :-1, :-1]).norm(dim=-1)
    gy = (albedo[:, 1:, :-1] - albedo[:, :-1, :-1]).norm(dim=-1)
    inner = mask[:, :-1, :-1] & mask[:, 1:, :-1] & mask[:, :-1, 1:]
    g = (gx.square() + gy.square()).sqrt()
    return float(g[inner].mean()) if inner.any() else float("nan")


def render_refined_albedo(run_dir: Path, cams) -> tuple[torch.Tensor, torch.Tensor]:
    """The refined mesh's colour over black ``[B, H, W, 3]`` and coverage ``[B, H, W]`` (2x supersampled)."""
    from t23d.optimise.refine_run import load_refine_run, render_source_fn_of

    _, state = load_refine_run(run_dir, torch.device("cpu"))
    fn = render_source_fn_of(state, supersample=2)
    rgb, alpha = zip(
        *(fn(cams.c2w[i], cams.intrinsics[i], cams.height, cams.width) for i in range(len(cams)))
    )
    return torch.stack(rgb), torch.stack(alpha)


def measure(rgb: torch.Tensor, alpha: torch.Tensor, gt) -> dict:
    """IoU, object PSNR and sharpness of premultiplied ``rgb`` / ``alpha`` against the object ``gt``."""
    mask, g_mask = alpha > 0.5, gt.alpha > 0.5
    albedo = rgb / alpha.clamp(min=1e-4)[..., None]
    g_albedo = gt.albedo / gt.alpha.clamp(min=1e-4)[..., None]
    return {
        "iou": round(iou(mask, g_mask), 3),
        "object_psnr": round(masked_psnr(rgb, gt.albedo, mask | g_mask), 2),
        "sharpness": round(sharpness(albedo, mask), 4),
        "true_sharpness": round(sharpness(g_albedo, g_mask), 4),
    }


def prior_framing_yaml(prior: Path, out_dir: Path) -> Path | None:
    """A refine config override placing the SDS cameras at the distances the toy prior's training images
    were rendered from (``toy_prior.json``), as ``bench_generate.py`` does for stage 1; None if unknown."""
    info = prior / "toy_prior.json"
    cam = json.loads(info.read_text()).get("data_meta", {}).get("camera", {}) if info.is_file() else {}
    if "distance_range" not in cam:
        return None
    lo, hi = cam["distance_range"]
    path = out_dir / "prior-framing.yaml"
    path.write_text(f"camera:\n  distance:\n    type: WorldDistance\n    distance_range: [{lo}, {hi}]\n")
    return path


def run_cli(args: list[str], log: Path, threads: int | None) -> float:
    """Run ``python -m t23d.cli.main ARGS``; returns the wall time. Raises on failure."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "-m", "t23d.cli.main", *args], cwd=REPO, env=env, stdout=f,
                              stderr=subprocess.STDOUT)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"t23d {args[0]} failed ({proc.returncode}); see {log}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", default="a red ball")
    ap.add_argument("--prior", type=Path, default=DEFAULT_PRIOR)
    ap.add_argument("--stage1", type=Path, default=None, help="an existing stage-1 run (else --generate)")
    ap.add_argument("--generate", action="store_true", help="make the stage-1 run first (fast preset)")
    ap.add_argument("--steps", type=int, default=None, help="stage-1 steps (default: the fast preset's)")
    ap.add_argument("--geometry", choices=("density", "sdf"), default=None, help="stage-1 --geometry")
    ap.add_argument(
        "--refine-steps", type=int, default=None, help="refine steps (default: the fast preset's)"
    )
    ap.add_argument("--resolution", type=int, default=None, help="refine render size (default: 128)")
    ap.add_argument(
        "--framing",
        choices=("prior", "product"),
        default="prior",
        help="SDS cameras of both stages at the distances the prior was trained at (prior) or the presets'",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("/work/bench-data/bench_refine"))
    ap.add_argument("--eval-resolution", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads or 2)
    out = args.out / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    loads = {"start": loadavg()}
    walls = {}
    stage1 = args.stage1
    if stage1 is None:
        if not args.generate:
            raise SystemExit("pass --stage1 RUN_DIR or --generate")
        res_yaml = prior_resolution_yaml(args.prior, out, args.framing)
        cmd = ["generate", args.prompt, "--preset", "fast", "--config", "configs/deepfloyd-if.yaml", "--config",
               str(res_yaml), "--prior", str(args.prior), "--device", "cpu", "--seed", str(args.seed),
               "--out", str(out / "stage1")]  # fmt: skip
        if args.steps:
            cmd += ["--steps", str(args.steps)]
        if args.geometry:
            cmd += ["--geometry", args.geometry]
        walls["generate_s"] = round(run_cli(cmd, out / "generate.log", args.threads), 1)
        (stage1,) = [d for d in (out / "stage1").iterdir() if d.is_dir()]
    cmd = ["refine", str(stage1), "--preset", "fast", "--device", "cpu", "--seed", str(args.seed), "--out",
           str(out / "refined")]  # fmt: skip
    if args.refine_steps:
        cmd += ["--steps", str(args.refine_steps)]
    if args.resolution:
        cmd += ["--resolution", str(args.resolution)]
    framing = prior_framing_yaml(args.prior, out) if args.framing == "prior" else None
    if framing is not None:
        cmd += ["--config", str(framing)]
    loads["before_refine"] = loadavg()
    walls["refine_s"] = round(run_cli(cmd, out / "refine.log", args.threads), 1)
    loads["end"] = loadavg()
    (refined,) = [d for d in (out / "refined").iterdir() if d.is_dir()]

    from t23d.optimise.generate import load_run_config

    cams, _, _ = eval_views(load_run_config(stage1), args.eval_resolution, 16, (0.0, 15.0, 30.0))
    gt = render_views(toy_objects()[args.prompt], cams, mode="albedo")
    s1 = measure(*render_field_albedo(stage1, cams), gt)
    s2 = measure(*render_refined_albedo(refined, cams), gt)
    record = {"prompt": args.prompt, "stage1_run": str(stage1), "refine_run": str(refined), "command": " ".join(cmd),
              "walls": walls, "loadavg": loads, "stage1": s1, "refined": s2}  # fmt: skip
    for name, run in (("stage1", stage1), ("refined", refined)):
        path = run / "export" / "export.json"
        if path.is_file():
            e = json.loads(path.read_text())
            fid = e.get("fidelity") or {}
            record[name]["export"] = {"psnr": fid.get("psnr"), "image_psnr": fid.get("image_psnr"),
                                      "iou": fid.get("iou"), "faces": e.get("num_faces"),
                                      "normal_map": e.get("normal_map")}  # fmt: skip
        record[name]["steps"] = json.loads((run / "run.json").read_text()).get("completed_steps")
    (out / "results.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
