"""nerfstudio's nerfacto on CPU, on the same scene and wall-clock milestones as ``bench_reconstruct.py``.

Run inside the separate nerfstudio venv (``benchmarks/nerfstudio_venv/setup.sh``), never the product env::

    /tmp/ns-venv/bin/python benchmarks/nerfstudio_venv/run_nerfacto.py --minutes 10 --milestones 1 2 5 10

Data: the Blender-format object scene written by ``bench_reconstruct.make_scene`` (100 train + 20 test
views, 256x256 RGBA). nerfstudio's Blender dataparser wants ``transforms_val.json`` too, which that scene
lacks, so ``--data`` should be a sibling folder of symlinks (``transforms_val.json`` -> the test json);
``--make-ns-folder`` creates it from ``--source`` without touching the original folder.

Method: ``ns-train nerfacto --machine.device-type cpu blender-data`` defaults (white background,
4096 rays/batch, ParallelDataManager with one worker process, camera optimiser on), trained in-process
with nerfstudio's own Trainer (same callbacks and ``train_iteration`` as ``Trainer.train``, no viewer).
Only training iterations count on the clock (like ``bench_reconstruct.py``: a milestone is taken at the
first iteration where the accumulated training time reaches it). At each milestone the model's weights and
proposal-sampler state are saved to ``<run>/milestones/`` (clock paused; ``copy.deepcopy`` fails on this
model). After the timed window the script re-executes itself at niceness 19 (``--eval-nice``) with
``--eval-only <run>``: every snapshot renders the held-out views (``transforms_test.json``) and nerfstudio's
own per-image PSNR / SSIM are averaged. Rendering 20 views costs minutes per milestone on 2 cores with
nerfstudio's pure-torch hash grid, so it never overlaps the timed window and, niced, barely slows
whatever runs after it. Results: ``<run>/train_result.json`` then ``<run>/result.json``.

Workarounds: LPIPS is stubbed (torchmetrics' LPIPS downloads AlexNet weights; no network here), by
replacing the class in ``torchmetrics.image.lpip`` that nerfacto imports at model build; nerfstudio itself is not edited. ``eval_num_rays_per_chunk``
is lowered from 32768 to 4096 for rendering the eval views (same images, faster on CPU).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path


def make_ns_folder(source: Path, dest: Path) -> None:
    """Symlink a Blender scene into ``dest``, adding ``transforms_val.json`` as a copy of the test split."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("train", "test", "transforms_train.json", "transforms_test.json"):
        link = dest / name
        if not link.exists():
            link.symlink_to(source.resolve() / name)
    val = dest / "transforms_val.json"
    if not val.exists():
        val.symlink_to(source.resolve() / "transforms_test.json")


class MemLoadSampler(threading.Thread):
    """Samples the RSS of this process tree (ParallelDataManager worker included) and the load average."""

    def __init__(self, period: float = 0.5):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.period = period
        self.peak_rss = 0
        self.load1: list[float] = []
        self.active = False  # only record load while the training clock runs
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
                for child in self.proc.children(recursive=True):
                    try:
                        rss += child.memory_info().rss
                    except Exception:
                        pass
                self.peak_rss = max(self.peak_rss, rss)
            except Exception:
                pass
            if self.active:
                self.load1.append(os.getloadavg()[0])
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()


def stub_lpips() -> None:
    import torch
    import torchmetrics.image.lpip as lpip_module
    from torch import nn

    class NoLPIPS(nn.Module):
        """Stand-in for torchmetrics' LPIPS (which would download AlexNet weights): returns NaN."""

        def __init__(self, *args, **kwargs):
            super().__init__()

        def forward(self, a, b):  # noqa: ARG002
            return torch.tensor(float("nan"))

    # nerfacto's populate_modules does `from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity`
    lpip_module.LearnedPerceptualImagePatchSimilarity = NoLPIPS


def build_config(args):
    from nerfstudio.configs.method_configs import method_configs
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    config = copy.deepcopy(method_configs["nerfacto"])
    config.pipeline.datamanager.dataparser = BlenderDataParserConfig(data=args.data, alpha_color="white")
    config.data = args.data
    config.pipeline.datamanager.data = args.data
    config.machine.device_type = "cpu"
    config.vis = "tensorboard"  # no viewer server; nothing is logged by our loop anyway
    config.output_dir = args.out
    config.experiment_name = "object256"
    config.max_num_iterations = args.max_steps
    config.set_timestamp()
    return config


_SAMPLER_STATE = ("_anneal", "_step", "_steps_since_update")


def snapshot(model) -> dict:
    """The model's weights and the proposal sampler's non-parameter state (copy.deepcopy fails on nerfacto)."""
    sampler = model.proposal_sampler
    return {
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "sampler": {name: getattr(sampler, name) for name in _SAMPLER_STATE},
        "step": getattr(model, "step", None),
    }


def restore(model, snap: dict) -> None:
    model.load_state_dict(snap["state_dict"])
    for name, value in snap["sampler"].items():
        setattr(model.proposal_sampler, name, value)
    if snap["step"] is not None:
        model.step = snap["step"]


def evaluate(pipeline, model, max_views: int) -> dict:
    """nerfstudio's get_average_image_metrics, on a given model copy, over the first max_views views."""
    import torch

    dataloader = pipeline.datamanager.fixed_indices_eval_dataloader
    model.eval()
    rows = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for i, (camera, batch) in enumerate(dataloader):
            if i >= max_views:
                break
            outputs = model.get_outputs_for_camera(camera=camera)
            metrics, _ = model.get_image_metrics_and_images(outputs, batch)
            rows.append(metrics)
    seconds = time.perf_counter() - t0
    return {
        "psnr": statistics.fmean(r["psnr"] for r in rows),
        "ssim": statistics.fmean(r["ssim"] for r in rows),
        "views": len(rows),
        "eval_s": seconds,
    }


def tree_cpu_s(proc) -> float:
    """user+system CPU seconds of this process and its live children (the data worker)."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:
            pass
    return total


def system_busy_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def train_phase(args) -> Path:
    import numpy as np
    import psutil
    import torch
    from nerfstudio.engine.callbacks import TrainingCallbackLocation

    # wait before setup, so nothing (memory, data worker) is held while waiting
    wait = None
    if args.wait_for is not None:
        t_wait = time.time()
        while not args.wait_for.exists() and time.time() - t_wait < args.wait_timeout:
            time.sleep(20)
        wait = {
            "file": str(args.wait_for),
            "found": args.wait_for.exists(),
            "waited_s": round(time.time() - t_wait),
        }
        print(f"wait: {wait}", flush=True)

    config = build_config(args)
    seed = config.machine.seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    sampler = MemLoadSampler()
    sampler.start()
    t_setup = time.perf_counter()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    setup_s = time.perf_counter() - t_setup
    pipeline = trainer.pipeline
    run_dir = config.get_base_dir()
    snap_dir = run_dir / "milestones"
    snap_dir.mkdir(parents=True, exist_ok=True)
    rays_per_batch = pipeline.datamanager.get_train_rays_per_batch()
    print(
        f"setup {setup_s:.1f} s; rays/batch {rays_per_batch}; torch threads {torch.get_num_threads()}",
        flush=True,
    )

    load_before = os.getloadavg()
    print(f"load average before training: {load_before}", flush=True)

    milestones = sorted(m for m in args.milestones if m <= args.minutes)
    budget = args.minutes * 60
    rows = []
    step_times = []
    train_s, step = 0.0, 0
    me = psutil.Process()

    def save_milestone(minutes) -> None:
        path = snap_dir / f"step{step:06d}.pt"
        torch.save(snapshot(pipeline.model), path)
        rows.append(
            {
                "minutes": minutes,
                "step": step,
                "train_s": round(train_s, 1),
                "rays_per_s": round(step * rays_per_batch / train_s),
                "snapshot": str(path),
            }
        )
        print(f"milestone {rows[-1]}", flush=True)

    own0, sys0 = tree_cpu_s(me), system_busy_s()
    sampler.active = True
    wall0 = time.perf_counter()
    while train_s < budget and step < args.max_steps:
        t0 = time.perf_counter()
        pipeline.train()
        for callback in trainer.callbacks:
            callback.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        loss, _, _ = trainer.train_iteration(step)
        for callback in trainer.callbacks:
            callback.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
        dt = time.perf_counter() - t0
        train_s += dt
        step_times.append(dt)
        step += 1
        if step % 5 == 0 or step <= 3:
            print(
                f"step {step} loss {float(loss.detach()):.4f} dt {dt:.2f} s train {train_s:.1f} s", flush=True
            )
        if milestones and train_s >= milestones[0] * 60:
            sampler.active = False
            save_milestone(milestones.pop(0))
            sampler.active = True
    wall_s = time.perf_counter() - wall0
    sampler.active = False
    own1, sys1 = tree_cpu_s(me), system_busy_s()
    load_during = list(sampler.load1)
    if not rows or rows[-1]["step"] != step:
        save_milestone(round(train_s / 60, 2))
    sampler.stop()

    steady = step_times[2:] or step_times
    result = {
        "method": "nerfstudio 1.1.5 nerfacto (defaults, blender-data, white bg, cpu)",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "data": str(args.data),
        "run_dir": str(run_dir),
        "wait": wait,
        "steps": step,
        "train_s": round(train_s, 1),
        "timed_window_wall_s": round(wall_s, 1),
        "setup_s": round(setup_s, 1),
        "rays_per_batch": rays_per_batch,
        "rays_per_s_overall": round(step * rays_per_batch / train_s),
        "rays_per_s_steps3plus_median": round(rays_per_batch / statistics.median(steady)),
        "step_s_median_steps3plus": round(statistics.median(steady), 3),
        "step_times_s": [round(t, 3) for t in step_times],
        "peak_rss_gib_process_tree": round(sampler.peak_rss / 2**30, 2),
        "loadavg_before_training": [round(x, 2) for x in load_before],
        "loadavg1_during_training": {
            "min": round(min(load_during), 2) if load_during else None,
            "mean": round(statistics.fmean(load_during), 2) if load_during else None,
            "max": round(max(load_during), 2) if load_during else None,
        },
        # CPU seconds over the timed window (2 cores => at most 2 * window): ours vs everything else
        "cpu_s_this_run": round(own1 - own0, 1),
        "cpu_s_other_processes": round((sys1 - sys0) - (own1 - own0), 1),
        "cpu_capacity_s": round(wall_s * (os.cpu_count() or 1), 1),
        "lpips": "stubbed (not measured)",
        "milestones": rows,
    }
    (run_dir / "train_result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "step_times_s"}, indent=2), flush=True)
    # stop the ParallelDataManager worker(s) this run started (they block on a full queue otherwise)
    for proc in getattr(pipeline.datamanager, "data_procs", []):
        proc.terminate()
        proc.join(timeout=10)
    return run_dir


def eval_phase(args) -> None:
    import torch

    result = json.loads((args.eval_only / "train_result.json").read_text())
    args.data = Path(result["data"])
    args.out = Path("/tmp/t23d-bench/ns_eval_scratch")
    config = build_config(args)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup(test_mode="test")  # eval dataset = transforms_test.json (the 20 held-out views)
    pipeline = trainer.pipeline
    model = pipeline.model
    model.config.eval_num_rays_per_chunk = args.eval_chunk
    print(f"eval: nice {os.nice(0)}, threads {torch.get_num_threads()}, chunk {args.eval_chunk}", flush=True)
    for row in result["milestones"]:
        restore(model, torch.load(row["snapshot"], weights_only=False))
        row.update(evaluate(pipeline, model, args.eval_views))
        print(row, flush=True)
    for proc in getattr(pipeline.datamanager, "data_procs", []):
        proc.terminate()
        proc.join(timeout=10)
    (args.eval_only / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "step_times_s"}, indent=2))
    print("| minutes | step | train s | PSNR | SSIM | rays/s (cumulative) |")
    print("|---|---|---|---|---|---|")
    for r in result["milestones"]:
        print(
            f"| {r['minutes']} | {r['step']} | {r['train_s']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['rays_per_s']} |"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/t23d-bench/object256_ns"))
    ap.add_argument("--source", type=Path, default=Path("/tmp/t23d-bench/object256"))
    ap.add_argument("--make-ns-folder", action="store_true", help="create --data as symlinks to --source")
    ap.add_argument("--out", type=Path, default=Path("/tmp/t23d-bench/ns_runs"))
    ap.add_argument("--minutes", type=float, default=10.0, help="training wall-clock budget")
    ap.add_argument("--milestones", type=float, nargs="*", default=[1, 2, 5, 10], help="minutes")
    ap.add_argument("--max-steps", type=int, default=30000, help="iteration cap (nerfacto default 30000)")
    ap.add_argument("--eval-views", type=int, default=20, help="held-out views rendered per milestone")
    ap.add_argument("--eval-chunk", type=int, default=4096, help="eval_num_rays_per_chunk for rendering")
    ap.add_argument("--eval-nice", type=int, default=19, help="niceness of the evaluation phase")
    ap.add_argument("--no-eval", action="store_true", help="train and save milestone snapshots only")
    ap.add_argument("--eval-only", type=Path, default=None, help="evaluate the snapshots of this run dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--wait-for", type=Path, default=None, help="poll for this file before training")
    ap.add_argument("--wait-timeout", type=float, default=2400.0, help="seconds to wait for --wait-for")
    ap.add_argument("--json", type=Path, default=None, help="also write the final results here")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # inherited by the spawned data worker
    import torch

    torch.set_num_threads(args.threads)
    if args.make_ns_folder:
        make_ns_folder(args.source, args.data)
    stub_lpips()

    if args.eval_only is not None:
        eval_phase(args)
        return
    run_dir = train_phase(args)
    if args.no_eval:
        return
    # Evaluate in a fresh, niced process (every thread it starts inherits the niceness), so the long
    # CPU rendering of the held-out views barely disturbs whatever runs after the timed window.
    sys.stdout.flush()
    sys.stderr.flush()
    os.nice(args.eval_nice)
    argv = [
        sys.executable,
        "-W",
        "ignore::UserWarning",
        os.path.abspath(__file__),
        "--eval-only",
        str(run_dir),
        "--eval-views",
        str(args.eval_views),
        "--eval-chunk",
        str(args.eval_chunk),
        "--threads",
        str(args.threads),
    ]
    if args.json is not None:
        argv += ["--json", str(args.json)]
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    main()
