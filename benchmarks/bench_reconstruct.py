"""Photo reconstruction benchmarks: what users of ``t23d reconstruct`` get.

``--mode set`` (default): runs ``t23d reconstruct`` exactly as a user would (the CLI, in a subprocess,
this tree's code) on every scene of the benchmark set made by ``benchmarks/scenes/make_scenes.py``
(or the ones named by ``--scenes``), one after the other, and reports per scene: the field's held-out
PSNR (the run's ``metrics.json``), the exported ``.glb`` rendered unlit at the unseen test cameras vs
the lit photos (PSNR at 2x2 rays per pixel and at 1), vs the true albedo (when the asset claims an
albedo texture, ``--texture albedo``; else n/a; raw and after a per-channel gain fit, since the photos
do not fix the albedo's scale), silhouette IoU, Chamfer-L1 (mean of accuracy and
completeness, 100k samples each, in the input's world frame), precision / recall / F-score at 0.01
and 0.02, export fidelity from ``export.json``, wall time, training rays/s and the load average
before and after. Writes ``bench_set.json`` and ``bench_set.md`` (tables for benchmarks/RESULTS.md).

    PYTHONPATH=. python benchmarks/bench_reconstruct.py                       # all scenes, default preset
    PYTHONPATH=. python benchmarks/bench_reconstruct.py --scenes duck statue boxsphere --minutes 13

``--minutes`` is the budget of one whole ``t23d reconstruct`` run: if training is still going at
``minutes - export-reserve``, the harness presses Ctrl-C (the product saves a checkpoint and stops)
and exports with ``t23d export RUN_DIR``, as a user would; the row then says where training stopped.
``--clock cpu`` counts the run's CPU time divided by the number of cores instead of wall time, so a
machine shared with other jobs does not cut training short (the wall time is still reported).

``--mode milestones``: the earlier in-process benchmark on t23d.data.synthetic's box + sphere (100
training + 20 test views at 256^2), with the field's PSNR at wall-clock milestones; evaluation time
is excluded from the training clock (benchmarks/RESULTS.md, issue 4):

    python benchmarks/bench_reconstruct.py --mode milestones --preset default --minutes 10 --milestones 1 2 5 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.asset_metrics import THRESHOLDS, glb_metrics, sample_points  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SET = Path("/work/bench-data")


# ------------------------------------------------------------------ the scene set
def loadavg() -> str:
    """The 1/5/15-minute load average."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def discover_scenes(set_dir: Path, names: list[str] | None) -> list[tuple[str, Path, dict]]:
    """``(name, folder, scene.json)`` of the set's scenes (base objects first), or of ``names``."""
    from benchmarks.scenes.layout import OBJECTS, validate_scene_record

    found = {
        p.parent.name: p.parent
        for p in sorted(set_dir.glob("*/scene.json"))
        if not p.parent.name.startswith(".")
    }
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise SystemExit(
                f"--scenes: {missing} not in {set_dir}; available: {', '.join(sorted(found)) or 'none'} "
                "(make them with benchmarks/scenes/make_scenes.py)"
            )
        chosen = names
    else:
        order = list(OBJECTS)
        chosen = sorted(found, key=lambda n: (order.index(n) if n in order else len(order), n))
    out = []
    for name in chosen:
        record = json.loads((found[name] / "scene.json").read_text())
        validate_scene_record(record)
        out.append((name, found[name], record))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _training_done(log_path: Path) -> bool:
    return "held-out views:" in log_path.read_text(errors="replace")


def _cli(args: list[str], log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log_path, "a") as log:
        log.write(f"$ t23d {' '.join(args)}\n")
        log.flush()
        return subprocess.Popen(
            [sys.executable, "-m", "t23d.cli.main", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )


def run_reconstruct_cli(data_dir: Path, runs: Path, args: argparse.Namespace) -> dict:
    """``t23d reconstruct DATA`` with the budget; returns the run directory, wall time and how it ended."""
    runs.mkdir(parents=True, exist_ok=True)
    log_path = runs / "t23d.log"
    cli = ["reconstruct", str(data_dir), "--preset", args.preset, "--out", str(runs)]
    for cfg in args.config:
        cli += ["--config", cfg]
    if args.texture:
        cli += ["--texture", args.texture]
    if args.geometry:
        cli += ["--geometry", args.geometry]
    if args.steps is not None:
        cli += ["--steps", str(args.steps)]
    if args.warm_start is not None:
        cli += ["--warm-start", str(args.warm_start)]
    t0 = time.perf_counter()
    proc = _cli(cli, log_path)
    limit = args.minutes * 60 - args.export_reserve
    cores = os.cpu_count() or 1
    interrupted_at, cpu_s = None, 0.0
    while proc.poll() is None:
        time.sleep(2.0)
        try:
            cpu_s = cpu_seconds(proc.pid)
        except (OSError, IndexError, ValueError):  # the process just ended
            continue
        used = time.perf_counter() - t0 if args.clock == "wall" else cpu_s / cores
        if interrupted_at is None and used > limit and not _training_done(log_path):
            proc.send_signal(signal.SIGINT)  # Ctrl-C: the product saves a checkpoint and stops
            interrupted_at = time.perf_counter() - t0
    reconstruct_s = time.perf_counter() - t0
    dirs = [p for p in runs.iterdir() if p.is_dir()]
    if len(dirs) != 1:
        raise RuntimeError(
            f"t23d reconstruct exited {proc.returncode} and left {len(dirs)} run dirs in {runs}; see {log_path}"
        )
    run_dir = dirs[0]
    export_s = 0.0
    if proc.returncode == 130:  # interrupted by the budget: export as a user would
        t1 = time.perf_counter()
        exp = _cli(["export", str(run_dir)], log_path)
        if exp.wait() != 0:
            raise RuntimeError(f"t23d export {run_dir} failed; see {log_path}")
        export_s = time.perf_counter() - t1
    elif proc.returncode != 0:
        raise RuntimeError(f"t23d reconstruct exited {proc.returncode}; see {log_path}")
    return {
        "run_dir": run_dir,
        "wall_s": reconstruct_s + export_s,
        "cpu_s": cpu_s,
        "stopped_by_budget_at_s": interrupted_at,
        "log": str(log_path),
    }


def field_metrics_of_interrupted(run_dir: Path) -> dict:
    """Held-out PSNR/SSIM of a run stopped before its evaluation, with the product's own evaluation."""
    from t23d.data import load_dataset
    from t23d.reconstruct.run import (
        _DATA_BACKGROUND,
        _saved_sfm_model,
        evaluate_views,
        load_reconstruct_state,
    )

    cfg, state = load_reconstruct_state(run_dir, torch.device("cpu"))
    # the run's saved model: raw photos posed as the run posed them, posed photos' triangulated points
    ds = load_dataset(Path(cfg.input), cfg.data, _saved_sfm_model(run_dir))
    bg = torch.tensor(_DATA_BACKGROUND[cfg.data.background]) if ds.alphas is not None else None
    return evaluate_views(cfg, state, ds, bg)


def evaluate_scene(name: str, folder: Path, record: dict, args: argparse.Namespace, runs: Path) -> dict:
    """Run one scene and measure what the user got."""
    import yaml

    row: dict = {"scene": name, "object": record["object"], "loadavg_before": loadavg()}
    print(f"[{datetime.now():%H:%M:%S}] {name}: t23d reconstruct (load {row['loadavg_before']})", flush=True)
    run = run_reconstruct_cli(folder, runs / name, args)
    run_dir = run["run_dir"]
    info = json.loads((run_dir / "run.json").read_text())
    metrics_path = run_dir / "metrics.json"
    field = (
        json.loads(metrics_path.read_text())
        if metrics_path.is_file()
        else field_metrics_of_interrupted(run_dir)
    )
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    export = json.loads((run_dir / "export" / "export.json").read_text())
    steps = int(info.get("completed_steps") or field.get("steps") or 0)
    train_s = float(info.get("timings", {}).get("train_s", float("nan")))
    truth = sample_points(folder / record["gt"]["path"], 100_000, seed=3)
    asset = glb_metrics(Path(export["asset_path"]), folder, truth)
    albedo_texture = args.texture == "albedo"
    fidelity = export.get("fidelity") or {}
    row.update(
        {
            "field_psnr": field.get("psnr"),
            "field_ssim": field.get("ssim"),
            **{k: v for k, v in asset.items() if not k.startswith("albedo_psnr")},
            **{
                # the albedo columns belong to albedo textures; a radiance texture's are kept apart
                (k if albedo_texture else f"radiance_texture_vs_{k}"): asset[k]
                for k in ("albedo_psnr", "albedo_psnr_aligned")
            },
            **({} if albedo_texture else {"albedo_psnr": None, "albedo_psnr_aligned": None}),
            "fidelity_object_psnr": fidelity.get("psnr"),
            "fidelity_image_psnr": fidelity.get("image_psnr"),
            "fidelity_iou": fidelity.get("iou"),
            "steps": steps,
            "preset_steps": int(cfg["steps"]),
            "train_s": train_s,
            "export_s": float(export.get("timings", {}).get("total", float("nan"))),
            "wall_s": run["wall_s"],
            "cpu_s": run["cpu_s"],
            "rays_per_s": steps * int(cfg["rays_per_batch"]) / train_s if train_s > 0 else None,
            "stopped_by_budget_at_s": run["stopped_by_budget_at_s"],
            "run_dir": str(run_dir),
            "loadavg_after": loadavg(),
        }
    )
    print(
        f"[{datetime.now():%H:%M:%S}] {name}: "
        + json.dumps({k: row[k] for k in ("field_psnr", "glb_psnr", "chamfer_l1", "wall_s")}),
        flush=True,
    )
    return row


def _f(x, fmt: str = "{:.2f}", none: str = "n/a") -> str:
    return none if x is None or (isinstance(x, float) and not np.isfinite(x)) else fmt.format(x)


def _albedo(row: dict) -> str:
    """The albedo cell: raw and per-channel-gain-aligned PSNR, or n/a."""
    if row.get("albedo_psnr") is None:
        return "n/a"
    return f"{_f(row['albedo_psnr'])} / {_f(row.get('albedo_psnr_aligned'))} dB"


def markdown(rows: list[dict], meta: dict) -> str:
    """The two result tables (quality; export and cost) and the run's circumstances."""
    t1, t2 = THRESHOLDS
    lines = [
        f"| scene | field PSNR | `.glb` PSNR 2×2 (1 spp) | albedo PSNR raw / aligned | silhouette IoU | Chamfer-L1 (acc / comp) "
        f"| P / R / F @{t1} | P / R / F @{t2} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['scene']} | failed: {r['error']} |||||||")
            continue
        prf = [" / ".join(_f(r[f"{k}@{t}"]) for k in ("precision", "recall", "fscore")) for t in THRESHOLDS]
        lines.append(
            f"| {r['scene']} | {_f(r['field_psnr'])} dB | {_f(r['glb_psnr'])} ({_f(r['glb_psnr_1spp'])}) dB "
            f"| {_albedo(r)} | {_f(r['silhouette_iou'], '{:.3f}')} | {_f(r['chamfer_l1'], '{:.4f}')} "
            f"({_f(r['accuracy'], '{:.4f}')} / {_f(r['completeness'], '{:.4f}')}) | {prf[0]} | {prf[1]} |"
        )
    lines += [
        "",
        "| scene | fidelity object / image PSNR, IoU | faces | steps | train | export | wall (CPU / cores) | rays/s "
        "| load before → after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            continue
        steps = f"{r['steps']}" + (
            "" if r["stopped_by_budget_at_s"] is None else f" of {r['preset_steps']} (budget)"
        )
        lines.append(
            f"| {r['scene']} | {_f(r['fidelity_object_psnr'])} / {_f(r['fidelity_image_psnr'])} dB, "
            f"{_f(r['fidelity_iou'], '{:.3f}')} | {r['faces']:,} | {steps} | {_f(r['train_s'], '{:.0f}')} s "
            f"| {_f(r['export_s'], '{:.0f}')} s | {_f(r['wall_s'] / 60, '{:.1f}')} min "
            f"({_f(r.get('cpu_s', float('nan')) / meta.get('cores', 1) / 60, '{:.1f}')} min) "
            f"| {_f(r['rays_per_s'] / 1000 if r['rays_per_s'] else None, '{:.1f}')} k "
            f"| {r['loadavg_before']} → {r['loadavg_after']} |"
        )
    lines += [
        "",
        f"`{meta['command']}` — {meta['date']}, {meta['machine']}, commit {meta['commit']}, preset `{meta['preset']}`, "
        f"budget {meta['minutes']} min ({meta.get('clock', 'wall')} clock) per scene; load average {meta['loadavg_before']} before, {meta['loadavg_after']} after.",
    ]
    return "\n".join(lines) + "\n"


def _machine() -> str:
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "CPU",
    )
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}"


def run_set(args: argparse.Namespace) -> None:
    """``--mode set``: every chosen scene through ``t23d reconstruct``; tables to stdout and files."""
    scenes = discover_scenes(args.set_dir, args.scenes)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    runs = args.out / f"set-{stamp}"
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    meta = {
        "command": "python benchmarks/bench_reconstruct.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "commit": commit or "unknown",
        "preset": args.preset,
        "configs": args.config,
        "minutes": args.minutes,
        "texture": args.texture,
        "geometry": args.geometry or "preset default",
        "steps": args.steps,
        "warm_start": args.warm_start,
        "clock": args.clock,
        "cores": os.cpu_count() or 1,
        "loadavg_before": loadavg(),
        "set_dir": str(args.set_dir),
    }
    rows = []
    for name, folder, record in scenes:
        try:
            rows.append(evaluate_scene(name, folder, record, args, runs))
        except Exception as e:  # one failed scene must not lose the others' numbers
            logging.exception("%s failed", name)
            rows.append({"scene": name, "error": f"{type(e).__name__}: {e}"[:200]})
        _write_results(runs, rows, {**meta, "loadavg_after": loadavg()})
    meta["loadavg_after"] = loadavg()
    table = _write_results(runs, rows, meta)
    print(table)
    print(f"results: {runs / 'bench_set.json'}, {runs / 'bench_set.md'}")


def _write_results(runs: Path, rows: list[dict], meta: dict) -> str:
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "bench_set.json").write_text(json.dumps({"meta": meta, "scenes": rows}, indent=1, default=str))
    table = markdown(rows, meta)
    (runs / "bench_set.md").write_text(table)
    return table


# ------------------------------------------------------------------ milestones (issue 4)
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


def run_milestones(args: argparse.Namespace) -> None:
    """``--mode milestones``: in-process training with field PSNR at wall-clock milestones."""
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
    cfg = apply_yaml_files(reconstruct_preset(args.preset, args.geometry), args.config)
    cfg = dataclasses.replace(cfg, input=str(args.data), device="cpu")
    ds = load_dataset(args.data, cfg.data)
    cfg = dataclasses.replace(cfg, background=default_background(cfg, ds.alphas is not None))
    bg = torch.tensor(_DATA_BACKGROUND[cfg.data.background])
    state = build_reconstruct_state(cfg, cfg.background, torch.device("cpu"))
    data = _train_images(ds, bg, torch.device("cpu"), cfg)

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
    while train_s < budget and state.step < cfg.steps:  # the step count of the schedule is the preset's
        t0 = time.perf_counter()
        photometric_step(cfg, state, data)
        train_s += time.perf_counter() - t0
        rays += cfg.rays_per_batch
        if milestones and train_s >= milestones[0] * 60:
            row = {
                "minutes": milestones.pop(0),
                "step": state.step,
                "psnr": quick_psnr(),
                "rays_per_s": rays / train_s,
            }
            rows.append(row)
            print(row, flush=True)
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
    asset = glb_metrics(Path(export["asset_path"]), args.data, scene.sample_surface(100_000, seed=3))
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


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of both modes."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("set", "milestones"), default="set")
    ap.add_argument("--preset", default="default", help="reconstruct preset (fast | default | quality)")
    ap.add_argument("--config", action="append", default=[], help="YAML overrides (repeatable)")
    ap.add_argument(
        "--minutes", type=float, default=None, help="budget per scene (set: 13) / training (milestones: 10)"
    )
    ap.add_argument(
        "--out", type=Path, default=Path("/tmp/t23d-bench/runs"), help="parent folder of the runs"
    )
    ap.add_argument("--threads", type=int, default=2, help="torch threads of this process")
    s = ap.add_argument_group("set mode")
    s.add_argument(
        "--set-dir", type=Path, default=DEFAULT_SET, help="folder of the scene set (make_scenes.py --out)"
    )
    s.add_argument(
        "--scenes", nargs="*", default=None, help="scene names (default: every scene in --set-dir)"
    )
    s.add_argument(
        "--texture", default=None, help="pass --texture MODE to t23d reconstruct (albedo: report albedo PSNR)"
    )
    s.add_argument(
        "--geometry",
        choices=("density", "sdf"),
        default=None,
        help="pass --geometry to t23d reconstruct; milestones mode: the preset's geometry (default: the product's)",
    )
    s.add_argument(
        "--steps", type=int, default=None, help="pass --steps N to t23d reconstruct (schedules scaled)"
    )
    s.add_argument(
        "--warm-start", type=int, default=None, help="pass --warm-start STEPS to t23d reconstruct (SDF)"
    )
    s.add_argument(
        "--export-reserve", type=float, default=120.0, help="seconds of the budget kept for the export"
    )
    s.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="what --minutes counts: wall time, or the run's CPU seconds / cores (a 2-core machine's minutes, "
        "nearly independent of other people's load)",
    )
    m = ap.add_argument_group("milestones mode")
    m.add_argument("--data", type=Path, default=None, help="scene folder (made if missing)")
    m.add_argument("--full-sphere", action="store_true", help="training views all around the object")
    m.add_argument("--milestones", type=float, nargs="*", default=[1, 2, 5, 10], help="minutes")
    m.add_argument("--eval-views", type=int, default=5, help="test views evaluated at each milestone")
    return ap


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the chosen mode."""
    args = build_parser().parse_args(argv)
    if args.minutes is None:
        args.minutes = 13.0 if args.mode == "set" else 10.0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    if args.mode == "set":
        run_set(args)
    else:
        run_milestones(args)


if __name__ == "__main__":
    main()
