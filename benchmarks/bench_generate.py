"""``t23d generate`` with a learned prior, run exactly as a user runs it, and what comes out measured.

For each prompt of the learned toy prior's training set (``benchmarks/learned_prior/``), this runs the
real CLI in a subprocess::

    python -m t23d.cli.main generate PROMPT --preset fast --config configs/deepfloyd-if.yaml \
        --config <prior-resolution.yaml> [--config EXTRA ...] --prior PRIOR --device cpu --seed S \
        [--steps N] --out OUT

and then measures, against the procedural object the prior learned from (rendered analytically at the
same cameras, same framing, by ``learned_prior/scene.py``):

(a) **stage 1 makes the prompted object**: silhouette IoU of the field's opacity vs the object's
    coverage over an orbit (3 elevations x 16 azimuths at the run's evaluation distance and fov);
    the best IoU against any *other* training object (how discriminative the number is); object
    PSNR (albedo over black on the union of both masks, field vs object) and which object of the set
    the field is nearest to by that PSNR;
(b) **export fidelity**: ``export.json``'s mesh-vs-field PSNR on object pixels, on whole images, and IoU;
(c) **Janus** on asymmetric objects (a marking on the front only, e.g. the penguin's white belly):
    each object pixel of an albedo render is labelled with the nearest colour of the object's palette;
    ``janus`` = (marking share in back views) / (marking share in front views) for the field (0 for the
    true object: the back shows no marking; about 1 means a second front on the back). Also the PSNR of
    back views against the true back and against the true front seen from the same side;
(d) **wall time** of the whole command and ``run.json``'s training / export split.

Results go to ``OUT/results.json`` (one record per run) and a Markdown table on stdout.
The variant column ``prior_kind`` is ``deepfloyd-if`` (the single-view toy prior of ``learned_prior/train.py``)
or ``mvdream`` (the multi-view toy prior of ``learned_prior/train_mv.py``, loaded by the product's MVDream
guidance from its ``MVDreamPipeline`` folder). Both are fed at the resolution they were trained at, with the
same timestep range (0.02-0.98, constant: MVDream's own annealed schedule is made for 8,000+ steps) and the
same CFG scale (``--guidance-scale``), so the prior's multi-view conditioning is the difference.

    python benchmarks/bench_generate.py --prompts "a red ball" "a penguin" --steps 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "learned_prior"))

from scene import ToyObject, render_views, toy_objects  # noqa: E402

PRIOR_KINDS: dict[str, str | None] = {"deepfloyd-if": "configs/deepfloyd-if.yaml", "mvdream": None}
"""Base config of each prior kind (MVDream has none: ``--prior`` an ``MVDreamPipeline`` folder selects it)."""
GUIDANCE_TYPES = {"deepfloyd-if": "DeepFloydGuidanceConfig", "mvdream": "MVDreamGuidanceConfig"}
"""The ``guidance.type`` of each prior kind."""
DEFAULT_PRIOR = Path("/work/bench-data/priors/toy-if-32")
DEFAULT_OUT = Path("/work/bench-data/bench_generate")


@dataclass
class Variant:
    """One column of the comparison: which prior kind, which stages."""

    prior_kind: str = "deepfloyd-if"
    """Key of :data:`PRIOR_KINDS`."""
    stage: str = "stage 1"
    """Only ``stage 1`` (SDS on the NeRF) exists in the product today; the refine stage comes later."""


def loadavg() -> str:
    """The 1/5/15-minute load averages."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def slug(text: str) -> str:
    """File-name-safe form of ``text``."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def prior_resolution_yaml(
    prior: Path,
    out_dir: Path,
    framing: str = "prior",
    kind: str = "deepfloyd-if",
    guidance_scale: float = 20.0,
) -> Path:
    """A config override feeding the prior at the resolution its UNet was trained at (and rendering at it).

    ``configs/deepfloyd-if.yaml`` targets the real IF (64 px); the toy prior is trained at 32 px. With
    ``framing="prior"`` the training cameras also stand at the distances the prior's training images were
    rendered from (``toy_prior.json``'s ``data_meta.camera``; the product's default ``SphereFitDistance``
    frames the unit sphere from further away, so the object looks smaller than anything the prior saw);
    ``framing="product"`` keeps the preset's cameras. ``kind`` picks the guidance type; the multi-view
    prior's latent is its image size (its VAE does not downsample), its timestep range is made constant
    (0.02-0.98, as IF's) and both get ``guidance_scale``.
    """
    unet_config = json.loads((prior / "unet" / "config.json").read_text())
    sample_size = unet_config.get("sample_size", unet_config.get("image_size"))
    text = (
        f"# the learned toy prior was trained at {sample_size} px: render and feed the UNet at that size\n"
        f"camera:\n  resolution: {sample_size}\n"
    )
    name = f"prior-resolution-{sample_size}"
    info_path = prior / "toy_prior.json"
    if framing == "prior" and info_path.is_file():
        cam = json.loads(info_path.read_text()).get("data_meta", {}).get("camera", {})
        if "distance_range" in cam:
            lo, hi = cam["distance_range"]
            text += (
                "  # the camera distances of the prior's training images (world units)\n"
                f"  distance:\n    type: WorldDistance\n    distance_range: [{lo}, {hi}]\n"
            )
            name += "-prior-framing"
    text += f"guidance:\n  type: {GUIDANCE_TYPES[kind]}\n  guidance_scale: {guidance_scale}\n"
    if kind == "mvdream":
        text += (
            f"  vae_resolution: {sample_size}\n"
            "  min_step_percent: {type: Constant, value: 0.02}\n"
            "  max_step_percent: {type: Constant, value: 0.98}\n"
        )
        name = f"mvdream-{name}"
    else:
        text += f"  resolution: {sample_size}\n"
    path = out_dir / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def generate_command(
    prompt: str, variant: Variant, prior: Path, configs: list[Path], args: argparse.Namespace, out: Path
) -> list[str]:
    """The ``t23d generate`` command line of one run."""
    cmd = [sys.executable, "-m", "t23d.cli.main", "generate", prompt, "--preset", args.preset]
    base = PRIOR_KINDS[variant.prior_kind]
    if base is not None:
        cmd += ["--config", base]
    for c in configs:
        cmd += ["--config", str(c)]
    cmd += ["--prior", str(prior), "--device", "cpu", "--seed", str(args.seed), "--out", str(out)]
    if args.steps is not None:
        cmd += ["--steps", str(args.steps)]
    if args.geometry is not None:
        cmd += ["--geometry", args.geometry]
    return cmd


def run_generate(cmd: list[str], out: Path, threads: int | None, passive_wait: bool) -> tuple[Path, float]:
    """Run the CLI; returns the run directory (the only one under ``out``) and the wall time in seconds.

    ``threads`` sets ``OMP_NUM_THREADS`` of the run (None: torch's default, one per core, as for a user);
    ``passive_wait`` sets ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep instead of spinning while they wait).
    """
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    if passive_wait:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    t0 = time.perf_counter()
    with open(out / "generate.log", "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"t23d generate failed ({proc.returncode}); see {out / 'generate.log'}")
    runs = [d for d in out.iterdir() if d.is_dir()]
    if len(runs) != 1:
        raise RuntimeError(f"expected one run directory in {out}, found {[d.name for d in runs]}")
    return runs[0], wall


# --- measurements -------------------------------------------------------------------------------
def eval_views(cfg, resolution: int, num_azimuths: int, elevations: tuple[float, ...]):
    """Orbit cameras at the run's evaluation distance and fov; returns (cameras, azimuth, elevation)."""
    from t23d.render.cameras import Cameras, orbit_cameras

    views = [
        orbit_cameras(num_azimuths, resolution, cfg.camera.eval_distance, cfg.camera.eval_fov, e)
        for e in elevations
    ]
    cams = Cameras(
        torch.cat([v.cameras.c2w for v in views]),
        torch.cat([v.cameras.intrinsics for v in views]),
        resolution,
        resolution,
    )
    return cams, torch.cat([v.azimuth_deg for v in views]), torch.cat([v.elevation_deg for v in views])


def render_field_albedo(run_dir: Path, cams) -> tuple[torch.Tensor, torch.Tensor]:
    """The trained field's albedo over black ``[B, H, W, 3]`` and opacity ``[B, H, W]`` at ``cams``."""
    from t23d.field.background import Background, ConstantBackground
    from t23d.optimise.generate import load_generate_state
    from t23d.render.volume import render_images

    cfg, state = load_generate_state(run_dir, torch.device("cpu"))
    state.field.eval()
    black = Background(ConstantBackground((0.0, 0.0, 0.0)))
    out = render_images(state.field, black, cams, cfg.render, state.occupancy)
    return out["rgb"], out["opacity"]


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two boolean masks (pooled over every pixel of every view)."""
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 1.0


def masked_psnr(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR of ``x`` vs ``y`` ``[..., 3]`` over the pixels of ``mask`` ``[...]`` (peak 1)."""
    n = int(mask.sum())
    if n == 0:
        return float("nan")
    mse = float(((x - y)[mask] ** 2).mean())
    return 99.0 if mse < 1e-10 else -10.0 * torch.log10(torch.tensor(mse)).item()


def marking_share(albedo: torch.Tensor, mask: torch.Tensor, obj: ToyObject) -> torch.Tensor:
    """Per view ``[B]``: share of object pixels whose colour is nearest to ``obj.front_marking``.

    ``albedo [B, H, W, 3]`` is un-premultiplied; pixels are labelled with the nearest colour of the
    object's palette (its parts' albedos).
    """
    colors = sorted({p.color for p in obj.parts})
    palette = torch.tensor(colors)  # [P, 3]
    marking = colors.index(obj.front_marking)
    dist = (albedo[..., None, :] - palette).square().sum(-1)  # [B, H, W, P]
    is_marking = (dist.argmin(-1) == marking) & mask
    return is_marking.flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1)


def janus_measure(
    obj: ToyObject, field_rgb, field_opacity, gt, azimuth: torch.Tensor, elevation: torch.Tensor, cams
) -> dict:
    """Front/back consistency of an asymmetric object (see the module docstring, item c)."""
    ring = elevation == elevation.unique()[len(elevation.unique()) // 2]  # the middle elevation ring
    front = ring & (azimuth.abs() < 45.0)
    back = ring & (azimuth.abs() > 135.0)
    f_mask = field_opacity > 0.5
    g_mask = gt.alpha > 0.5
    f_albedo = field_rgb / field_opacity.clamp(min=1e-4)[..., None]
    g_albedo = gt.albedo / gt.alpha.clamp(min=1e-4)[..., None]
    f_share = marking_share(f_albedo, f_mask, obj)
    g_share = marking_share(g_albedo, g_mask, obj)
    field_front, field_back = float(f_share[front].mean()), float(f_share[back].mean())
    # the true object's front, seen from where each back camera stands (what a second face would look like)
    back_idx = back.nonzero(as_tuple=True)[0]
    mirrored = render_views(obj, _rotated_cameras(cams[back_idx], 180.0), mode="albedo")
    union_back = f_mask[back_idx] | g_mask[back_idx]
    return {
        "marking_share_front": round(field_front, 3),
        "marking_share_back": round(field_back, 3),
        "true_marking_share_front": round(float(g_share[front].mean()), 3),
        "true_marking_share_back": round(float(g_share[back].mean()), 3),
        "janus": round(field_back / field_front, 3) if field_front > 0.02 else None,
        "back_psnr_vs_true_back": round(masked_psnr(field_rgb[back_idx], gt.albedo[back_idx], union_back), 2),
        "back_psnr_vs_true_front": round(
            masked_psnr(field_rgb[back_idx], mirrored.albedo, f_mask[back_idx] | (mirrored.alpha > 0.5)), 2
        ),
    }


def _rotated_cameras(cams, degrees: float):
    """``cams`` rotated about the world +Z axis by ``degrees`` (the object seen from the opposite side)."""
    from t23d.render.cameras import Cameras

    a = torch.deg2rad(torch.tensor(degrees))
    rot = torch.eye(4)
    rot[0, 0], rot[0, 1], rot[1, 0], rot[1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
    return Cameras(rot @ cams.c2w, cams.intrinsics, cams.width, cams.height)


def evaluate_run(run_dir: Path, obj: ToyObject, objects: dict[str, ToyObject], args) -> dict:
    """Metrics (a)-(c) of one run directory."""
    from t23d.optimise.generate import load_run_config

    cfg = load_run_config(run_dir)
    cams, azimuth, elevation = eval_views(
        cfg, args.eval_resolution, args.eval_azimuths, tuple(args.eval_elevations)
    )
    field_rgb, field_opacity = render_field_albedo(run_dir, cams)
    f_mask = field_opacity > 0.5
    truth = {name: render_views(o, cams, mode="albedo") for name, o in objects.items()}
    gt = truth[obj.prompt]
    psnr_to = {n: masked_psnr(field_rgb, t.albedo, f_mask | (t.alpha > 0.5)) for n, t in truth.items()}
    iou_to = {n: iou(f_mask, t.alpha > 0.5) for n, t in truth.items()}
    others = {n: v for n, v in iou_to.items() if n != obj.prompt}
    best_other = max(others, key=others.get) if others else None
    export = json.loads((run_dir / "export" / "export.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    fid = export.get("fidelity") or {}
    record = {
        "iou": round(iou_to[obj.prompt], 3),
        "best_other_iou": round(others[best_other], 3) if best_other else None,
        "best_other": best_other,
        "object_psnr": round(psnr_to[obj.prompt], 2),
        "nearest_object": max(psnr_to, key=psnr_to.get),
        "field_opacity_mean_on_object": round(float(field_opacity[gt.alpha > 0.5].mean()), 3),
        "export_psnr_object": fid.get("psnr"),
        "export_psnr_image": fid.get("image_psnr"),
        "export_iou": fid.get("iou"),
        "faces": export.get("num_faces"),
        "train_s": round(run.get("timings", {}).get("train_s", float("nan")), 1),
        "export_s": round(run.get("timings", {}).get("export_s", float("nan")), 1),
        "steps": run.get("completed_steps"),
    }
    if obj.front_marking is not None:
        record["janus"] = janus_measure(obj, field_rgb, field_opacity, gt, azimuth, elevation, cams)
    save_comparison(run_dir / "bench_compare.png", gt, field_rgb, field_opacity, elevation)
    return record


def save_comparison(path: Path, gt, field_rgb, field_opacity, elevation) -> None:
    """Two rows (object, field) of the middle-elevation orbit, albedo over white."""
    from t23d.render.preview import image_grid, save_png

    ring = elevation == elevation.unique()[len(elevation.unique()) // 2]
    white_gt = gt.albedo[ring] + (1 - gt.alpha[ring])[..., None]
    white_field = field_rgb[ring] + (1 - field_opacity[ring])[..., None]
    save_png(path, image_grid(torch.cat([white_gt, white_field]), int(ring.sum())))


# --- driver -------------------------------------------------------------------------------------
def markdown_table(records: list[dict]) -> str:
    """One row per run."""
    head = (
        "| prompt | prior | geometry | stage | steps | IoU vs object | best other (IoU) | object PSNR | nearest object "
        "| export PSNR obj / img | export IoU | Janus (back/front marking) | wall | train / export |\n"
        "|---|---|---|---|---:|---:|---|---:|---|---:|---:|---|---:|---:|"
    )
    rows = [head]
    for r in records:
        m = r["metrics"]
        j = m.get("janus")
        jtxt = "—"
        if j:
            ratio = "no front" if j["janus"] is None else f"{j['janus']:.2f}"
            jtxt = f"{ratio} ({j['marking_share_back']:.2f}/{j['marking_share_front']:.2f})"
        rows.append(
            f"| {r['prompt']} | {r['variant']['prior_kind']} | {r.get('geometry', '—')} | {r['variant']['stage']} "
            f"| {m['steps']} "
            f"| {m['iou']:.2f} | {m['best_other']} ({m['best_other_iou']:.2f}) | {m['object_psnr']:.1f} dB "
            f"| {m['nearest_object']} | {m['export_psnr_object']:.1f} / {m['export_psnr_image']:.1f} dB "
            f"| {m['export_iou']:.2f} | {jtxt} | {r['wall_s'] / 60:.1f} min | {m['train_s']:.0f} / {m['export_s']:.0f} s |"
        )
    return "\n".join(rows)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", type=Path, default=DEFAULT_PRIOR, help="pipeline folder of the learned prior")
    ap.add_argument("--prior-kind", default="deepfloyd-if", choices=sorted(PRIOR_KINDS))
    ap.add_argument("--prompts", nargs="*", default=None, help="default: every object the prior learned")
    ap.add_argument("--guidance-scale", type=float, default=20.0, help="CFG scale (IF's default; both kinds)")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--steps", type=int, default=None, help="default: the preset's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=Path, action="append", default=[], help="extra YAML overrides")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument(
        "--geometry", choices=("density", "sdf"), default=None, help="pass --geometry to t23d generate"
    )
    ap.add_argument(
        "--framing",
        choices=("prior", "product"),
        default="prior",
        help="training cameras at the distances the prior was trained at (prior) or the preset's (product)",
    )
    ap.add_argument("--tag", default=None, help="sub-folder of OUT for this batch (default: a timestamp)")
    ap.add_argument("--eval-resolution", type=int, default=64)
    ap.add_argument("--eval-azimuths", type=int, default=16)
    ap.add_argument("--eval-elevations", type=float, nargs="+", default=[0.0, 15.0, 30.0])
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS of the generate runs (default: unset, torch uses every core, as for a user); "
        "on a loaded shared machine 1 avoids spin-waiting",
    )
    ap.add_argument(
        "--passive-wait",
        action="store_true",
        help="OMP_WAIT_POLICY=PASSIVE for the runs: on an overloaded shared machine spinning OpenMP threads "
        "made a step 5-8x slower",
    )
    ap.add_argument("--evaluate-only", type=Path, nargs="*", default=None, metavar="RUN_DIR",
                    help="measure existing run directories instead of running generate")  # fmt: skip
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads or 2)
    objects = toy_objects()
    info = (
        json.loads((args.prior / "toy_prior.json").read_text())
        if (args.prior / "toy_prior.json").is_file()
        else {}
    )
    prompts = args.prompts or info.get("objects") or list(objects)
    unknown = [p for p in prompts if p not in objects]
    if unknown:
        raise SystemExit(f"--prompts {unknown}: no procedural object for them; known: {sorted(objects)}")
    variant = Variant(prior_kind=args.prior_kind)
    batch = args.out / (args.tag or time.strftime("%Y%m%d-%H%M%S"))
    configs = [
        prior_resolution_yaml(args.prior, batch, args.framing, args.prior_kind, args.guidance_scale),
        *args.config,
    ]
    records = []
    results_path = batch / "results.json"
    if args.evaluate_only is not None:
        for run_dir in args.evaluate_only:
            prompt = json.loads((run_dir / "run.json").read_text())["prompt"]
            records.append(
                {"prompt": prompt, "variant": vars(variant), "run_dir": str(run_dir), "wall_s": float("nan"),
                 "metrics": evaluate_run(run_dir, objects[prompt], objects, args)}
            )  # fmt: skip
        print(markdown_table(records))
        return
    for prompt in prompts:
        out = batch / slug(prompt)
        cmd = generate_command(prompt, variant, args.prior, configs, args, out)
        before = loadavg()
        print(f"[{time.strftime('%H:%M:%S')}] {prompt}: load {before}", flush=True)
        run_dir, wall = run_generate(cmd, out, args.threads, args.passive_wait)
        after = loadavg()
        metrics = evaluate_run(run_dir, objects[prompt], objects, args)
        shown = [c if c != sys.executable else "python" for c in cmd]
        records.append(
            {
                "prompt": prompt,
                "variant": vars(variant),
                "command": " ".join(f'"{c}"' if " " in c else c for c in shown),
                "run_dir": str(run_dir),
                "wall_s": round(wall, 1),
                "loadavg_before": before,
                "loadavg_after": after,
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
                "threads": args.threads,
                "geometry": args.geometry or "preset default",
                "framing": args.framing,
                "prior_steps": info.get("steps"),
                "omp_wait_policy": "PASSIVE" if args.passive_wait else os.environ.get("OMP_WAIT_POLICY"),
                "metrics": metrics,
            }
        )
        print(json.dumps(records[-1], indent=1), flush=True)
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"prior": str(args.prior), "prior_info": info.get("date"), "runs": records}, indent=1)
        )
        tmp.replace(results_path)
    print(markdown_table(records))


if __name__ == "__main__":
    main()
