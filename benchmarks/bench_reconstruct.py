"""Photo reconstruction benchmark: the project's quality bar on a synthetic object scene.

Scene: t23d.data.synthetic's textured object (a box and a sphere, radius < 1), Blender format, 100
training views + 20 unseen test views at 256x256, RGBA (composited on white). Reports, at wall-clock
milestones, the held-out PSNR of the field; at the end, what users get: the exported .glb rendered
unlit at the unseen test cameras vs the real views (PSNR), its Chamfer-L1 distance to the true
surface in the input's world frame, and training rays/s.

    python benchmarks/bench_reconstruct.py --preset default --minutes 10 --milestones 1 2 5 10

Evaluation time is excluded from the training clock.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch


def make_scene(folder: Path, n_train: int, n_test: int, resolution: int, full_sphere: bool = False):
    """The synthetic object scene; ``full_sphere`` spreads training views from -60 to 80 degrees of
    elevation so that the whole surface is seen (the default, 5-65 degrees, never sees the bottom)."""
    from t23d.data.synthetic import SyntheticScene
    from t23d.data.synthetic_writers import write_blender

    scene = SyntheticScene()
    if not (folder / "transforms_train.json").is_file():
        extra = (
            {"train_elevation_deg": (-60.0, 80.0), "test_elevation_deg": (-30.0, 50.0)} if full_sphere else {}
        )
        write_blender(
            scene, folder, n_train=n_train, n_test=n_test, resolution=resolution, supersample=2, **extra
        )
    return scene


def glb_metrics(glb: Path, data_dir: Path, scene) -> dict:
    """Unlit renders of the exported asset at the test cameras vs the real test views; Chamfer-L1."""
    import trimesh
    from scipy.spatial import cKDTree

    from t23d.data import DataConfig, load_dataset
    from t23d.reconstruct.metrics import psnr
    from t23d.render.mesh import MeshAppearance, render_mesh

    mesh = trimesh.load(glb, force="mesh")
    v = np.asarray(mesh.vertices, dtype=np.float64)
    v_input = np.stack([v[:, 0], -v[:, 2], v[:, 1]], -1)  # glTF Y-up -> the input's Z-up frame
    faces = np.asarray(mesh.faces)
    tex = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    look = MeshAppearance(uvs=np.asarray(mesh.visual.uv, dtype=np.float64), texture=tex)
    ds = load_dataset(data_dir, DataConfig())
    c2w_world = ds.c2w_world()
    psnrs: dict[int, list[float]] = {1: [], 2: []}
    for i in ds.test_indices:
        cam = (c2w_world[i], ds.intrinsics[i].double().numpy(), ds.height, ds.width)
        for ss, vals in psnrs.items():  # 1 ray per pixel, and 2x2 (the real views' own anti-aliasing)
            rgb, coverage = render_mesh(v_input, faces, look, cam, supersample=ss)
            pred = rgb + (1 - coverage[..., None]) * 1.0  # real views are composited on white
            vals.append(psnr(torch.from_numpy(pred).float(), ds.images[i]))
    pts = trimesh.Trimesh(v_input, faces).sample(100_000)
    true = scene.sample_surface(100_000, seed=3)
    d1 = cKDTree(true).query(pts)[0].mean()
    d2 = cKDTree(pts).query(true)[0].mean()
    return {
        "glb_psnr": float(np.mean(psnrs[2])),
        "glb_psnr_1spp": float(np.mean(psnrs[1])),
        "chamfer_l1": float(0.5 * (d1 + d2)),
        "accuracy": float(d1),
        "completeness": float(d2),
        "faces": int(len(faces)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="scene folder (made if missing)")
    ap.add_argument("--full-sphere", action="store_true", help="training views all around the object")
    ap.add_argument("--out", type=Path, default=Path("/tmp/t23d-bench/runs"))
    ap.add_argument("--preset", default="default")
    ap.add_argument("--config", action="append", default=[], help="YAML overrides")
    ap.add_argument("--minutes", type=float, default=10.0, help="training wall-clock budget")
    ap.add_argument("--milestones", type=float, nargs="*", default=[1, 2, 5, 10], help="minutes")
    ap.add_argument("--eval-views", type=int, default=5, help="test views evaluated at each milestone")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from t23d.cli.common import apply_yaml_files
    from t23d.data import load_dataset
    from t23d.reconstruct.config import default_background, reconstruct_preset
    from t23d.reconstruct.metrics import psnr
    from t23d.reconstruct.run import _DATA_BACKGROUND, _train_images, evaluate_views
    from t23d.reconstruct.train import build_reconstruct_state, photometric_step
    from t23d.render.cameras import Cameras
    from t23d.render.volume import render_images

    if args.data is None:
        args.data = Path("/tmp/t23d-bench/object256" + ("_full" if args.full_sphere else ""))
    scene = make_scene(args.data, 100, 20, 256, args.full_sphere)
    cfg = apply_yaml_files(reconstruct_preset(args.preset), args.config)
    cfg = dataclasses.replace(cfg, input=str(args.data), device="cpu")
    ds = load_dataset(args.data, cfg.data)
    cfg = dataclasses.replace(cfg, background=default_background(cfg, ds.alphas is not None))
    bg = torch.tensor(_DATA_BACKGROUND[cfg.data.background])
    state = build_reconstruct_state(cfg, cfg.background, torch.device("cpu"))
    data = _train_images(ds, bg, torch.device("cpu"))

    def quick_psnr() -> float:
        state.field.eval()
        vals = []
        for i in ds.test_indices[: args.eval_views]:
            cams = Cameras(ds.c2w[i : i + 1], ds.intrinsics[i : i + 1], ds.width, ds.height)
            out = render_images(state.field, state.background, cams, cfg.render, state.occupancy)
            vals.append(psnr(out["rgb"][0], ds.images[i]))
        state.field.train()
        return float(np.mean(vals))

    milestones = sorted(m for m in args.milestones if m <= args.minutes)
    rows, train_s, rays = [], 0.0, 0
    budget = args.minutes * 60
    # run until the budget is spent (the step count of the schedule is the preset's)
    while train_s < budget and state.step < cfg.steps:
        t0 = time.perf_counter()
        photometric_step(cfg, state, data)
        train_s += time.perf_counter() - t0
        rays += cfg.rays_per_batch
        if milestones and train_s >= milestones[0] * 60:
            rows.append(
                {
                    "minutes": milestones.pop(0),
                    "step": state.step,
                    "psnr": quick_psnr(),
                    "rays_per_s": rays / train_s,
                }
            )
            print(rows[-1], flush=True)
    if not rows or rows[-1]["step"] != state.step:
        rows.append(
            {
                "minutes": round(train_s / 60, 2),
                "step": state.step,
                "psnr": quick_psnr(),
                "rays_per_s": rays / train_s,
            }
        )
    metrics = evaluate_views(cfg, state, ds, bg)
    # export exactly as `t23d reconstruct` does, through a run directory
    from t23d.common.atomic import write_json_atomic
    from t23d.reconstruct.run import SCENE_JSON, export_reconstruct_run, scene_record
    from t23d.run.rundir import create_run_dir, update_run, write_config

    run_dir = create_run_dir(args.out, "bench")
    write_config(run_dir, cfg)
    write_json_atomic(run_dir / SCENE_JSON, scene_record(ds))
    update_run(run_dir, t23d_run="reconstruct", status="completed")
    state.save(run_dir / "checkpoints", 1)
    t0 = time.perf_counter()
    export = export_reconstruct_run(run_dir, cfg, state)
    export_s = time.perf_counter() - t0
    glb = Path(export["asset_path"])
    asset = glb_metrics(glb, args.data, scene)
    result = {
        "preset": args.preset,
        "configs": args.config,
        "steps": state.step,
        "train_s": train_s,
        "milestones": rows,
        "field_test_psnr": metrics["psnr"],
        "field_test_ssim": metrics["ssim"],
        "export_s": export_s,
        "fidelity": export.get("fidelity"),
        **asset,
        "run_dir": str(run_dir),
    }
    print(json.dumps(result, indent=1, default=str))
    (run_dir / "bench.json").write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
