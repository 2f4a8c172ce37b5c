"""``t23d generate``: validate inputs, load the prior, create the run directory, train, preview, export.

Everything that can fail on bad input (prompt, prior, output folder, resume folder) is checked
before the run directory is created, so a failed start leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from t23d.optimise.config import GenerateConfig, validate_generate_config
from t23d.optimise.reference import (
    ReferenceView,
    describe_reference,
    load_reference_prompt,
    read_reference_prompt,
    run_name,
    write_reference_inputs,
)
from t23d.optimise.sds import build_state, train_sds
from t23d.prompt.view import validate_prompt
from t23d.run.lifecycle import (
    create_locked_run,
    open_resumed_run,
    record_new_run,
    record_resumed_run,
    recorded_run,
    timed_export,
    timed_training,
)
from t23d.run.rundir import check_writable, read_run_config, update_run
from t23d.run.state import (
    StepCallback,
    TrainingState,
    resolve_device,
)

logger = logging.getLogger(__name__)


def load_run_config(run_dir: Path) -> GenerateConfig:
    """The resolved config saved in a generate run directory."""
    return read_run_config(run_dir, "generate", GenerateConfig)


def load_generate_state(
    run_dir: Path, device: torch.device | None = None
) -> tuple[GenerateConfig, TrainingState]:
    """Config and trained state of a generate run (latest checkpoint)."""
    cfg = load_run_config(run_dir)
    device = device or resolve_device(cfg.device)
    state = build_state(cfg, device)
    state.load(run_dir / "checkpoints")
    return cfg, state


def run_generate(
    cfg: GenerateConfig,
    out_parent: Path = Path("outputs"),
    *,
    resume: Path | None = None,
    guidance: Any = None,
    callback: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Run (or resume) a generate job; returns the run directory.

    Args:
        cfg: the resolved configuration (ignored except ``steps`` when resuming: the saved config is used).
        out_parent: folder in which a new run directory is created.
        resume: an existing run directory to continue from its latest checkpoint.
        guidance: a prebuilt guidance object (tests inject one); by default built from ``cfg.guidance``.
        callback: called after every step with a :class:`StepInfo`.
        should_stop: polled before every step; True saves a checkpoint and raises ``TrainingInterrupted``.
    """
    image_prompt = None
    with contextlib.ExitStack() as held:
        if resume is not None:
            run_dir, info, cfg = open_resumed_run(
                held, resume, "generate", cfg, load_run_config, validate_generate_config
            )
            if cfg.reference is not None:
                # the run's own copy of the input: the original is not needed
                image_prompt = read_reference_prompt(run_dir)
        else:
            if cfg.reference is None:
                cfg = dataclasses.replace(cfg, prompt=validate_prompt(cfg.prompt))
            validate_generate_config(cfg)
            if cfg.reference is not None:
                image_prompt = load_reference_prompt(cfg.reference)  # validated before anything is created
            check_writable(Path(out_parent))
            info = {}
        device = resolve_device(cfg.device)
        reference = None
        if image_prompt is not None:
            reference = ReferenceView(cfg.reference, image_prompt, cfg.camera, device)  # type: ignore[arg-type]
        if guidance is None:
            from t23d.guidance import build_guidance, build_image_guidance

            if reference is not None:
                guidance = build_image_guidance(cfg.guidance, reference.condition(), device)
            else:
                guidance = build_guidance(cfg.guidance, cfg.prompt, cfg.negative_prompt, device)
        held.callback(getattr(guidance, "release", lambda: None))
        state = build_state(cfg, device)
        if resume is None:
            run_dir = create_locked_run(held, Path(out_parent), run_name(cfg.prompt, cfg.reference))
            if reference is not None:
                write_reference_inputs(run_dir, cfg.reference, image_prompt)  # type: ignore[arg-type]
            record_new_run(
                run_dir,
                cfg,
                "generate",
                prompt=cfg.prompt,
                negative_prompt=cfg.negative_prompt,
                image=None if reference is None else describe_reference(cfg.reference, reference),  # type: ignore[arg-type]
                prior=guidance.describe(),
                steps=cfg.steps,
                seed=cfg.seed,
                device=str(device),
                implementation=state.field.implementation,
                torch=torch.__version__,
                timings={},
            )
        else:
            state.load(run_dir / "checkpoints")
            record_resumed_run(run_dir, cfg, state.step)
        timings: dict[str, float] = dict(info.get("timings", {}))
        with recorded_run(run_dir, state):
            if resume is not None:
                logger.info("resumed from step %d", state.step)
            logger.info(
                "training '%s' for %d steps on %s (%s hash grid)",
                run_name(cfg.prompt, cfg.reference),
                cfg.steps,
                device,
                state.field.implementation,
            )
            timed_training(
                run_dir,
                state,
                timings,
                lambda: train_sds(
                    cfg,
                    state,
                    guidance,
                    run_dir,
                    callback,
                    should_stop,
                    preview_fn=lambda step: write_live_preview(run_dir, cfg, state, step),
                    reference=reference,
                ),  # fmt: skip
            )
            t0 = time.perf_counter()
            write_previews(run_dir, cfg, state)
            if reference is not None:
                reference.preview(state, cfg.render, run_dir / "previews" / "reference.png")
                update_run(run_dir, reference_metrics=reference.metrics(state, cfg.render))
            timings["preview_s"] = time.perf_counter() - t0
            export_info = None
            if cfg.export_at_end:
                export_info = timed_export(run_dir, timings, lambda: export_generate_run(run_dir, cfg, state))
            update_run(
                run_dir, status="completed", completed_steps=state.step, timings=timings, export=export_info
            )
            return run_dir


def write_live_preview(run_dir: Path, cfg: GenerateConfig, state: TrainingState, step: int) -> None:
    """``previews/latest.png``: one view of the field as it is now (the view turns 15 degrees every 10 steps)."""
    from t23d.render.cameras import orbit_cameras
    from t23d.render.preview import save_png, to_uint8
    from t23d.render.volume import render_images

    p, c = cfg.preview, cfg.camera
    state.field.eval()
    dev = next(state.field.parameters()).device
    views = orbit_cameras(24, p.resolution, c.eval_distance, c.eval_fov, c.eval_elevation)
    k = (step // 10) % 24
    out = render_images(
        state.field, state.background, views.cameras[k : k + 1].to(dev), cfg.render, state.occupancy
    )
    save_png(run_dir / "previews" / "latest.png", to_uint8(out["rgb"][0]))


def write_previews(run_dir: Path, cfg: GenerateConfig, state: TrainingState) -> None:
    """``previews/grid.png`` (orbit views) and ``previews/turntable.gif``."""
    from t23d.render.cameras import orbit_cameras
    from t23d.render.preview import image_grid, save_gif, save_png
    from t23d.render.volume import render_images

    p, c = cfg.preview, cfg.camera
    state.field.eval()
    state.background.eval()
    dev = next(state.field.parameters()).device
    views = orbit_cameras(p.num_views, p.resolution, c.eval_distance, c.eval_fov, c.eval_elevation)
    out = render_images(state.field, state.background, views.cameras.to(dev), cfg.render, state.occupancy)
    save_png(run_dir / "previews" / "grid.png", image_grid(out["rgb"]))
    if p.turntable_frames > 0:
        views = orbit_cameras(p.turntable_frames, p.resolution, c.eval_distance, c.eval_fov, c.eval_elevation)
        out = render_images(state.field, state.background, views.cameras.to(dev), cfg.render, state.occupancy)
        save_gif(run_dir / "previews" / "turntable.gif", out["rgb"])


def export_generate_run(
    run_dir: Path,
    cfg: GenerateConfig,
    state: TrainingState,
    export_cfg: Any = None,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Export the asset of a trained generate run; returns a JSON-able summary."""
    from t23d.export import export_asset
    from t23d.render.field_fns import (
        bake_color_fn_of,
        density_fn_of,
        normal_fn_of,
        render_depth_fn_of,
        render_field_fn_of,
        sdf_fn_of,
    )
    from t23d.render.volume import measured_occupancy, step_size
    from t23d.run.rundir import slug

    export_cfg = export_cfg or cfg.export
    state.field.eval()
    occupancy = measured_occupancy(state.field, state.occupancy)
    report = export_asset(
        density_fn_of(state.field),
        bake_color_fn_of(state.field, state.field.aabb(), export_cfg.resolution),
        state.field.aabb(),
        out_dir or run_dir / "export",
        slug(run_name(cfg.prompt, cfg.reference)),
        export_cfg,
        render_field_fn=render_field_fn_of(
            state.field, cfg.render, occupancy, supersample=export_cfg.fidelity_supersample
        ),
        render_step=step_size(state.field, cfg.render),
        sdf_fn=sdf_fn_of(state.field),
        render_depth_fn=render_depth_fn_of(state.field, cfg.render, occupancy),
        normal_fn=normal_fn_of(
            state.field,
            eps=float((state.field.aabb()[1] - state.field.aabb()[0]).max()) / export_cfg.resolution,
        ),
    )
    return report.to_dict() if hasattr(report, "to_dict") else dataclasses.asdict(report)
