"""``t23d refine``: a refine run directory around the loop of :mod:`t23d.optimise.refine`.

A refine run is its own run directory (``t23d_run: "refine"`` in run.json), created beside its stage-1
run by default: ``config.yaml`` (the resolved :class:`RefineConfig`, including the stage-1 run it came
from), ``run.json``, ``checkpoints/`` (the first one right after initialisation, so extraction and
colour distillation never rerun on resume), ``log.txt``, ``previews/`` and ``export/``. The asset is
exported straight from the refined mesh (:func:`t23d.export.export_mesh_asset`): no marching cubes.
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
from torch import Tensor

from t23d.common.errors import ConfigError, T23dError
from t23d.optimise.refine import RefineState, init_refine_state, load_refine_state, render_views, train_refine
from t23d.optimise.refine_config import RefineConfig, validate_refine_config
from t23d.run.lifecycle import (
    create_locked_run,
    open_resumed_run,
    record_new_run,
    record_resumed_run,
    recorded_run,
    timed_export,
    timed_training,
)
from t23d.run.rundir import check_writable, read_run, read_run_config, update_run
from t23d.run.state import StepCallback, resolve_device

logger = logging.getLogger(__name__)


def load_refine_config(run_dir: Path) -> RefineConfig:
    """The resolved config saved in a refine run directory."""
    return read_run_config(run_dir, "refine", RefineConfig)


def refine_config_for(source: Path, base: RefineConfig, prior: str | None = None) -> RefineConfig:
    """``base`` completed from the stage-1 run ``source``: its prompt, field size, background and prior
    (``prior`` replaces the prior's ``pretrained``). For Stable Diffusion the VAE reads the renders at
    the refine resolution; a latent-mode stage 1 (Latent-NeRF) is refined in RGB."""
    from t23d.guidance.config import StableDiffusionGuidanceConfig
    from t23d.optimise.generate import load_run_config

    source = Path(source)
    info = read_run(source, "generate")
    if info.get("status") not in ("completed", "export_failed"):
        logger.warning(
            "stage-1 run %s has status %r; refining its latest checkpoint", source, info.get("status")
        )
    if not (source / "checkpoints" / "latest.json").is_file():
        raise T23dError(f"{source} has no checkpoint to refine; it never saved one")
    cfg1 = load_run_config(source)
    guidance = cfg1.guidance
    if prior is not None:
        guidance = dataclasses.replace(guidance, pretrained=prior)
    if getattr(guidance, "input_space", "rgb") == "latent":
        # a Latent-NeRF stage 1: the refine stage renders the mesh's colours, which the VAE encodes
        logger.info(
            "stage 1 rendered the latent (input_space: latent); the refine stage feeds RGB to the VAE"
        )
        guidance = dataclasses.replace(guidance, input_space="rgb")
    if isinstance(guidance, StableDiffusionGuidanceConfig):
        res = base.camera.resolution
        if res % 8:
            raise ConfigError(
                f"camera.resolution: {res} must be a multiple of 8 for a Stable Diffusion prior"
            )
        guidance = dataclasses.replace(guidance, vae_resolution=res)
    return dataclasses.replace(
        base,
        source=str(source.resolve()),
        prompt=cfg1.prompt,
        negative_prompt=cfg1.negative_prompt,
        bound=cfg1.field.bound,
        guidance=guidance,
        background=cfg1.background,
    )


def run_refine(
    cfg: RefineConfig,
    out_parent: Path | None = None,
    *,
    resume: Path | None = None,
    guidance: Any = None,
    callback: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Run (or resume) a refine job; returns its run directory.

    Args:
        cfg: a config completed by :func:`refine_config_for` (ignored except ``steps`` when resuming).
        out_parent: folder of the new run directory (default: the stage-1 run's parent folder).
        resume: an existing refine run directory to continue from its latest checkpoint.
        guidance: a prebuilt guidance object (tests inject one); by default built from ``cfg.guidance``.
        callback: called after every step with a :class:`~t23d.run.state.StepInfo`.
        should_stop: polled before every step; True saves a checkpoint and raises ``TrainingInterrupted``.

    The run directory is locked (:mod:`t23d.run.lock`) from its creation, or from the start of a resume,
    to the end.
    """
    with contextlib.ExitStack() as held:
        return _run_refine(held, cfg, out_parent, resume, guidance, callback, should_stop)


def _run_refine(
    held: contextlib.ExitStack,
    cfg: RefineConfig,
    out_parent: Path | None,
    resume: Path | None,
    guidance: Any,
    callback: StepCallback | None,
    should_stop: Callable[[], bool] | None,
) -> Path:
    if resume is not None:
        run_dir, info, cfg = open_resumed_run(
            held, resume, "refine", cfg, load_refine_config, validate_refine_config
        )
    else:
        if not cfg.source:
            raise ConfigError("source: a stage-1 run directory is required (t23d refine RUN_DIR)")
        read_run(Path(cfg.source), "generate")
        validate_refine_config(cfg)
        out_parent = Path(out_parent) if out_parent is not None else Path(cfg.source).parent
        check_writable(out_parent)
        info = {}
    device = resolve_device(cfg.device)
    if guidance is None:
        from t23d.guidance import build_guidance

        guidance = build_guidance(cfg.guidance, cfg.prompt, cfg.negative_prompt, device)
    if resume is None:
        state, facts = init_refine_state(cfg, device)
        run_dir = create_locked_run(held, Path(out_parent), f"{cfg.prompt}-refine")  # type: ignore[arg-type]
        record_new_run(
            run_dir,
            cfg,
            "refine",
            source=cfg.source,
            prompt=cfg.prompt,
            prior=guidance.describe(),
            steps=cfg.steps,
            seed=cfg.seed,
            device=str(device),
            implementation=state.color.implementation,
            init=facts,
            torch=torch.__version__,
            timings={},
        )
        state.save(run_dir / "checkpoints", cfg.keep_checkpoints)
    else:
        state = load_refine_state(cfg, run_dir / "checkpoints", device)
        record_resumed_run(run_dir, cfg, state.step)
    timings: dict[str, float] = dict(info.get("timings", {}))
    try:
        with recorded_run(run_dir, state):
            if resume is not None:
                logger.info("resumed from step %d", state.step)
            logger.info(
                "refining '%s' for %d steps on %s: %d faces, %d px renders, %s rasteriser",
                cfg.prompt, cfg.steps, device, state.mesh.num_faces, cfg.camera.resolution, state.rasterizer.backend,
            )  # fmt: skip
            timed_training(
                run_dir,
                state,
                timings,
                lambda: train_refine(cfg, state, guidance, run_dir, callback, should_stop),
            )
            t0 = time.perf_counter()
            write_refine_previews(run_dir, cfg, state)
            timings["preview_s"] = time.perf_counter() - t0
            export_info = None
            if cfg.export_at_end:
                export_info = timed_export(run_dir, timings, lambda: export_refine_run(run_dir, cfg, state))
            update_run(
                run_dir, status="completed", completed_steps=state.step, timings=timings, export=export_info
            )
            return run_dir
    finally:
        if hasattr(guidance, "release"):
            guidance.release()


def load_refine_run(run_dir: Path, device: torch.device | None = None) -> tuple[RefineConfig, RefineState]:
    """Config and latest state of a refine run."""
    cfg = load_refine_config(run_dir)
    return cfg, load_refine_state(cfg, Path(run_dir) / "checkpoints", device or resolve_device(cfg.device))


@torch.no_grad()
def write_refine_live_preview(run_dir: Path, cfg: RefineConfig, state: RefineState, step: int) -> None:
    """``previews/latest.png``: one view of the mesh as it is now (turning 15 degrees every 10 steps)."""
    from t23d.render.cameras import orbit_cameras
    from t23d.render.preview import save_png, to_uint8

    p, c = cfg.preview, cfg.camera
    state.background.eval()
    views = orbit_cameras(24, p.resolution, c.eval_distance, c.eval_fov, c.eval_elevation)
    k = (step // 10) % 24
    save_png(
        run_dir / "previews" / "latest.png", to_uint8(render_views(state, views.cameras[k : k + 1]).rgb[0])
    )


@torch.no_grad()
def write_refine_previews(run_dir: Path, cfg: RefineConfig, state: RefineState) -> None:
    """``previews/grid.png`` (orbit views over the background) and ``previews/turntable.gif``."""
    from t23d.render.cameras import orbit_cameras
    from t23d.render.preview import image_grid, save_gif, save_png

    p, c = cfg.preview, cfg.camera
    state.background.eval()
    views = orbit_cameras(p.num_views, p.resolution, c.eval_distance, c.eval_fov, c.eval_elevation)
    save_png(run_dir / "previews" / "grid.png", image_grid(render_views(state, views.cameras).rgb.cpu()))
    if p.turntable_frames > 0:
        views = orbit_cameras(p.turntable_frames, p.resolution, c.eval_distance, c.eval_fov, c.eval_elevation)
        save_gif(run_dir / "previews" / "turntable.gif", render_views(state, views.cameras).rgb.cpu())


def color_fn_of(state: RefineState, chunk: int = 262_144) -> Callable[[Tensor, Tensor], Tensor]:
    """``(points [N, 3], view dirs [N, 3]) -> sRGB [N, 3]``: the colour field (view-independent)."""

    @torch.no_grad()
    def color_fn(points: Tensor, directions: Tensor) -> Tensor:
        dev = state.mesh.offsets.device
        return torch.cat([state.color(p.to(dev)).float().cpu() for p in points.split(chunk)])

    return color_fn


def render_source_fn_of(state: RefineState, supersample: int = 2):
    """``(c2w [4, 4], intrinsics [4], H, W) -> (rgb [H, W, 3] on black, opacity [H, W])`` of the refined
    mesh with its colour field (unlit), rendered at ``supersample``x and averaged: the fidelity reference."""
    from t23d.render.cameras import Cameras

    s = int(supersample)

    @torch.no_grad()
    def render_source(c2w: Tensor, intrinsics: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        cams = Cameras(c2w[None].float(), intrinsics[None].float() * s, int(width) * s, int(height) * s)
        out = render_views(state, cams, background=False)
        rgb = out.rgb[0].reshape(height, s, width, s, 3).mean((1, 3))
        opacity = out.opacity[0].reshape(height, s, width, s).mean((1, 3))
        return rgb.cpu(), opacity.cpu()

    return render_source


def export_refine_run(
    run_dir: Path, cfg: RefineConfig, state: RefineState, export_cfg: Any = None, out_dir: Path | None = None
) -> dict[str, Any]:
    """Export the refined mesh (decimated to ``export.faces``, unwrapped, baked from the colour field)."""
    from t23d.export import export_mesh_asset
    from t23d.run.rundir import slug

    export_cfg = export_cfg or cfg.export
    state.mesh.eval()
    state.color.eval()
    with torch.no_grad():
        vertices = state.mesh.vertices().detach().cpu().numpy()
    faces = state.mesh.faces.cpu().numpy()
    report = export_mesh_asset(
        vertices, faces, color_fn_of(state), out_dir or run_dir / "export", slug(cfg.prompt), export_cfg,
        render_source_fn=render_source_fn_of(state),
    )  # fmt: skip
    return report.to_dict()
