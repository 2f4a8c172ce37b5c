"""How closely does an image -> 3D run reproduce its input photo? Reference-view PSNR / IoU and export fidelity.

Runs the real CLI on a synthetic RGBA object photo (a red disc and a blue square on transparency)::

    python -m t23d.cli.main generate --image toy.png --preset fast --config configs/image-cpu-smoke.yaml \
        --config OVERRIDES.yaml --steps N --prior TINY_ZERO123 --device cpu --out OUT

and reads back what the run measured itself: ``run.json`` ``reference_metrics`` (the field rendered at the
reference camera vs the processed input: PSNR over the whole image and over the object's pixels, silhouette
IoU) and ``export/export.json`` ``fidelity`` (the exported mesh vs the field).

No real Zero123 weights can be downloaded here, so the prior is the tiny **random** Zero123-layout pipeline
of the tests (``tests/fixtures/tiny_zero123.py``, loaded through the product loader): its SDS term is noise
for the field, much weaker than the reference-view terms (weights 5000 -> 10000 and 500 vs 1). The numbers
therefore measure the reference-view part of the recipe (and that random SDS does not stop it), not the
quality of novel views.

    python benchmarks/bench_image_reference.py --steps 100 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "image-cpu-smoke.yaml"


def loadavg() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def toy_photo(path: Path, size: int = 128) -> Path:
    """Write the synthetic RGBA photo: a red disc and a blue square, transparent elsewhere."""
    from PIL import Image

    yy, xx = np.mgrid[0:size, 0:size]
    s = size / 96.0
    disk = (xx - 40 * s) ** 2 + (yy - 50 * s) ** 2 < (22 * s) ** 2
    square = (abs(xx - 62 * s) < 12 * s) & (abs(yy - 40 * s) < 12 * s)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[disk] = (220, 40, 30, 255)
    rgba[square] = (30, 60, 220, 255)
    Image.fromarray(rgba).save(path)
    return path


OVERRIDES = """\
# bench_image_reference.py: the smoke settings with a 64 px reference view and a finer export.
reference:
  resolution: {ref_res}
  image_prompt:
    size: 128
export:
  resolution: 96
  faces: 5000
  texture_size: 256
  fidelity_views: 4
  fidelity_resolution: 64
checkpoint_every: 100000
"""


def run_once(steps: int, prior: Path, photo: Path, work: Path, ref_res: int, geometry: str) -> dict:
    """One CLI run of ``steps`` steps with ``geometry`` (density | sdf); returns its measured numbers."""
    overrides = work / f"overrides_{geometry}_{steps}.yaml"
    overrides.write_text(OVERRIDES.format(ref_res=ref_res))
    out = work / f"out_{geometry}_{steps}"
    cmd = [
        sys.executable, "-m", "t23d.cli.main", "generate",
        "--image", str(photo), "--preset", "fast",
        "--config", str(SMOKE), "--config", str(overrides),
        "--steps", str(steps), "--geometry", geometry, "--prior", str(prior), "--device", "cpu", "--out", str(out),
    ]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"t23d generate failed ({res.returncode}):\n{res.stderr[-3000:]}")
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    info = json.loads((run_dir / "run.json").read_text())
    fid = json.loads((run_dir / "export" / "export.json").read_text())["fidelity"]
    m = info["reference_metrics"]
    return {
        "steps": steps,
        "geometry": geometry,
        "ref_psnr": round(m["psnr"], 2),
        "ref_psnr_object": round(m["psnr_object"], 2),
        "ref_iou": round(m["iou"], 3),
        "ref_resolution": m["resolution"],
        "export_psnr_object": round(fid["psnr"], 2),
        "export_psnr_image": round(fid["image_psnr"], 2),
        "export_iou": round(fid["iou"], 3),
        "train_s": round(info["timings"]["train_s"], 1),
        "export_s": round(info["timings"]["export_s"], 1),
        "wall_s": round(wall, 1),
        "run_dir": str(run_dir),
    }


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=[100, 200], help="run lengths to measure")
    p.add_argument("--reference-resolution", type=int, default=64, help="reference render side (px)")
    p.add_argument("--keep", type=Path, default=None, help="keep the runs under this folder")
    p.add_argument(
        "--geometry",
        nargs="+",
        choices=["density", "sdf"],
        default=["density"],
        help="field geometries to compare",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    """Measure each run length and print one JSON line per run."""
    args = build_parser().parse_args(argv)
    sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    from tiny_zero123 import build_tiny_zero123

    with tempfile.TemporaryDirectory(prefix="t23d-bench-image-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        prior = build_tiny_zero123(work / "tiny_zero123")
        photo = toy_photo(work / "toy.png")
        print(json.dumps({"loadavg_before": loadavg()}), flush=True)
        for steps in args.steps:
            for geometry in args.geometry:
                row = run_once(steps, prior, photo, work, args.reference_resolution, geometry)
                print(json.dumps(row), flush=True)
        print(json.dumps({"loadavg_after": loadavg()}), flush=True)


if __name__ == "__main__":
    main()
