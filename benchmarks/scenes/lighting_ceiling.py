"""How close can an unlit asset come to the test photos of a changing-light capture? The ceiling.

    PYTHONPATH=. python benchmarks/scenes/lighting_ceiling.py /work/bench-data/monkey-varying-room \
        --views 0,4,8,12,16 --lightings 16 --out /tmp/ceiling

A capture made with ``make_scenes.py --lighting varying`` lights each training photo its own way and
its test photos with the reference light. An unlit asset holds one colour per surface point, learnt from
all the training photos, so even the true surface with the best such colours differs from a test photo
wherever the reference light differs from their average. This renders the true scene (the same Blender
job as the capture, :mod:`render_scene`) at some test cameras under a sample of the training photos'
lightings and gains, averages them per pixel in linear colour (the arithmetic mean; and the geometric
mean, what a field's neutral appearance code tends to: the average log radiance), and scores the averages
against the test photos as :mod:`benchmarks.asset_metrics` scores a ``.glb`` (the object composited on
white, PSNR on whole images). The best of the sampled lightings alone is reported beside them.

Needs a Python with ``bpy`` (``--blender-python`` or ``$T23D_BLENDER_PYTHON``, as ``make_scenes.py``);
Cycles on the CPU, about 6 s per 256² render on one thread. Writes ``OUT/job.json``, the renders
``OUT/v<view>/l<k>.png`` and ``OUT/ceiling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import numpy as np

from benchmarks.asset_metrics import psnr, read_test_views
from t23d.data.images import load_image
from t23d.data.synthetic import linear_to_srgb, srgb_to_linear

HERE = Path(__file__).resolve().parent
DEFAULT_BLENDER_PYTHON = "/tmp/t23d-bpy-venv/bin/python"


def ceiling_job(scene: Path, out: Path, views: list[int], num_lightings: int, threads: int) -> dict:
    """The Blender job: test ``views`` of ``scene`` under ``num_lightings`` training lightings, evenly
    spread through the training photos (lighting-major, so the world changes once per lighting)."""
    record = json.loads((scene / "scene.json").read_text())
    if record["lighting"]["mode"] != "varying":
        raise SystemExit(f"{scene}: its training photos share the test photos' light (lighting 'fixed')")
    test = json.loads((scene / "transforms_test.json").read_text())["frames"]
    train = json.loads((scene / "transforms_train.json").read_text())["frames"]
    step = max(len(train) // num_lightings, 1)
    lightings = [train[i]["t23d_capture"] for i in range(0, step * num_lightings, step)][:num_lightings]
    frames = [
        {
            "split": f"v{v}",
            "name": f"l{k}",
            "c2w": test[v]["transform_matrix"],
            "lighting": light["lighting"],
            "gain": light["gain"],
        }
        for k, light in enumerate(lightings)
        for v in views
    ]
    cap = record["capture"]
    return {
        "object": record["object"], "seed": record["seed"], "out_dir": str(out),
        "resolution": cap["resolution"], "fov_deg": cap["fov_deg"], "samples": record["renderer"]["samples"],
        "denoise": record["renderer"]["denoiser"] is not None, "threads": threads,
        "background": cap["background"], "frames": frames, "sources": {},
    }  # fmt: skip


def _versus(linear: np.ndarray, mask: np.ndarray, photo: np.ndarray) -> float:
    """PSNR of a linear image shown on white outside ``mask [H, W, 1]`` against ``photo`` (on white)."""
    return psnr(linear_to_srgb(linear) * mask + (1 - mask), photo)


def score(scene: Path, out: Path, job: dict) -> dict:
    """PSNR of the averaged lightings (and of the best single one) against the test photos, each test
    photo and its object mask read as :func:`benchmarks.asset_metrics.read_test_views` reads them."""
    views = read_test_views(scene)
    rows: dict[str, list[float]] = {"arithmetic_mean": [], "geometric_mean": [], "best_single": []}
    for split in dict.fromkeys(f["split"] for f in job["frames"]):
        view = views[int(split[1:])]
        mask = view["mask"][..., None]
        names = [f["name"] for f in job["frames"] if f["split"] == split]
        lit = np.stack([srgb_to_linear(load_image(out / split / f"{n}.png")[..., :3]) for n in names])
        rows["arithmetic_mean"].append(_versus(lit.mean(0), mask, view["photo"]))
        rows["geometric_mean"].append(_versus(np.exp(np.log(lit + 1e-4).mean(0)), mask, view["photo"]))
        rows["best_single"].append(max(_versus(x, mask, view["photo"]) for x in lit))
    lightings = len({json.dumps(f["lighting"], sort_keys=True) for f in job["frames"]})
    return {
        "scene": str(scene),
        "views": len(rows["best_single"]),
        "lightings": lightings,
        **{f"psnr_{k}": round(float(np.mean(v)), 2) for k, v in rows.items()},
    }


def main() -> None:
    """Render (unless the renders are there) and score."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scene", type=Path, help="a scene made with make_scenes.py --lighting varying")
    ap.add_argument("--views", default="0,4,8,12,16", help="test views, comma-separated indices")
    ap.add_argument("--lightings", type=int, default=16, help="training lightings to average")
    ap.add_argument("--threads", type=int, default=1, help="Cycles threads")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--blender-python", default=os.environ.get("T23D_BLENDER_PYTHON", DEFAULT_BLENDER_PYTHON))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    job = ceiling_job(
        args.scene, args.out, [int(v) for v in args.views.split(",")], args.lightings, args.threads
    )
    job_path = args.out / "job.json"
    job_path.write_text(json.dumps(job))
    if not all((args.out / f["split"] / f"{f['name']}.png").is_file() for f in job["frames"]):
        subprocess.run([args.blender_python, str(HERE / "render_scene.py"), str(job_path)], check=True)
    result = score(args.scene, args.out, job)
    (args.out / "ceiling.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
