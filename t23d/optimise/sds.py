"""The score-distillation loop (DreamFusion, Poole et al. 2022) and the ``generate`` run around it.

Per step: draw random cameras (groups of fixed relative azimuths for a multi-view prior) and a shading
mode, volume-render the field, ask the frozen prior for the SDS gradient of the rendered images, add
the regularisers, and take an Adam step. All randomness
comes from one CPU ``torch.Generator`` that is checkpointed, so a resumed run continues bit-exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from t23d.common.errors import T23dError
from t23d.field.background import Background
from t23d.field.nerf import NeRFField
from t23d.field.sdf import apply_sharpness_floor, sdf_regulariser_losses
from t23d.optimise.config import GenerateConfig
from t23d.optimise.reference import ReferenceView
from t23d.optimise.regularisers import opacity_entropy
from t23d.render.cameras import sample_random_views
from t23d.render.rays import camera_rays
from t23d.render.shading import sample_shading
from t23d.render.volume import make_occupancy_grid, render_rays, update_occupancy
from t23d.run.state import (
    StepCallback,
    StepInfo,
    TrainingState,
    check_finite,
    make_optimizer,
    run_training_loop,
)

logger = logging.getLogger(__name__)


LATENT_CHANNELS = 4
"""Channels of the latent head in latent mode (Stable Diffusion's and MVDream's VAE latent)."""


def renders_latents(cfg: GenerateConfig) -> bool:
    """Whether the run is in latent mode (``guidance.input_space: latent``, Latent-NeRF)."""
    return getattr(cfg.guidance, "input_space", "rgb") == "latent"


def build_state(cfg: GenerateConfig, device: torch.device) -> TrainingState:
    """Fresh field, background, optimiser, occupancy grid and RNG from ``cfg.seed``.

    In latent mode the field gets a latent colour head beside its RGB head.
    """
    generator = torch.Generator().manual_seed(cfg.seed)
    init_gen = torch.Generator().manual_seed(cfg.seed + 1)
    latent_channels = LATENT_CHANNELS if renders_latents(cfg) else 0
    field_ = NeRFField(cfg.field, device=device, generator=init_gen, latent_channels=latent_channels)
    background = Background(cfg.background, generator=init_gen, device=device, aabb=field_.aabb()).to(device)
    o = cfg.optim
    optimizer = make_optimizer(field_, background, o.lr_grid, o.lr_mlp, o.lr_background, o.betas, o.eps)
    occupancy = make_occupancy_grid(field_, cfg.render, device)
    return TrainingState(field_, background, optimizer, occupancy, generator)


def sds_step(
    cfg: GenerateConfig, state: TrainingState, guidance: Any, reference: ReferenceView | None = None
) -> StepInfo:
    """One optimisation step; returns losses and per-phase timings.

    ``reference`` (image -> 3D runs) adds the losses at the input photo's camera.
    """
    step, gen = state.step, state.generator
    device = next(state.field.parameters()).device
    timings: dict[str, float] = {}
    apply_sharpness_floor(state.field, cfg.sdf_training, step)
    t0 = time.perf_counter()
    if step % cfg.render.occupancy.update_every == 0:
        update_occupancy(state.occupancy, state.field, step, gen)
    timings["occupancy"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # a multi-view prior (MVDream) gets groups of guidance.num_views views at fixed relative azimuths
    views = sample_random_views(cfg.camera, gen, num_views=guidance.num_views)
    cameras = views.cameras.to(device)
    latent = renders_latents(cfg)  # Latent-NeRF: render the prior's latent, no shading (albedo) there
    shading = None if latent else sample_shading(cfg.shading, step, cameras.c2w[:, :3, 3], gen)
    w_orient = cfg.regularisers.orientation.at(step)
    rays = camera_rays(cameras)
    out = render_rays(
        state.field,
        state.background,
        rays,
        cfg.render,
        state.occupancy,
        shading=shading,
        compute_normals=w_orient > 0,
        generator=gen,
        latent_rgb_fn=guidance.latent_to_rgb if latent else None,
    )
    b, res = len(cameras), cfg.camera.resolution
    if latent:  # the latent over the background's latent (the background stays an RGB model)
        z = out.latent + (1.0 - out.opacity[:, None]) * guidance.rgb_to_latent(out.background)  # [R, C]
        images = z.reshape(b, res, res, -1)
    else:
        images = out.rgb.reshape(b, res, res, 3)
    timings["render"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    score = guidance.compute_latents if latent else guidance.compute
    g = score(images, views.azimuth_deg, views.elevation_deg, step, gen, c2w=cameras.c2w)
    timings["guidance"] = time.perf_counter() - t0

    losses = {"sds": g.loss}
    w_latent_rgb = cfg.regularisers.latent_rgb.at(step)
    if latent and w_latent_rgb > 0:
        losses["latent_rgb"] = w_latent_rgb * out.latent_rgb_loss
    if w_orient > 0 and out.orientation_loss is not None:
        losses["orientation"] = w_orient * out.orientation_loss
    w_sparsity = cfg.regularisers.sparsity.at(step)
    if w_sparsity > 0:
        losses["sparsity"] = w_sparsity * out.opacity.mean()
    w_opaque = cfg.regularisers.opaque.at(step)
    if w_opaque > 0:
        losses["opaque"] = w_opaque * opacity_entropy(out.opacity)
    losses.update(sdf_regulariser_losses(state.field, out.points, cfg.sdf_training, step, gen))
    if reference is not None:
        t0 = time.perf_counter()
        losses.update(reference.losses(state, cfg.render, step))
        timings["reference"] = time.perf_counter() - t0
    check_finite(losses)
    total = sum(losses.values())

    t0 = time.perf_counter()
    state.optimizer.zero_grad(set_to_none=True)
    total.backward()  # type: ignore[union-attr]
    timings["backward"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    state.optimizer_step()  # checks gradients and parameters are finite
    timings["optimiser"] = time.perf_counter() - t0
    state.step += 1
    values = {k: float(v.detach()) for k, v in losses.items()}
    values["total"] = float(total.detach())  # type: ignore[union-attr]
    values["grad_norm"] = float(g.grad_norm)
    values["shading"] = {"albedo": 0.0, "lambertian": 1.0, "textureless": 2.0}[
        shading.mode if shading else "albedo"
    ]
    return StepInfo(step, cfg.steps, values, timings, out.num_samples_evaluated)


def train_sds(
    cfg: GenerateConfig,
    state: TrainingState,
    guidance: Any,
    run_dir: Path,
    callback: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    preview_fn: Callable[[int], None] | None = None,
    reference: ReferenceView | None = None,
) -> None:
    """Train to ``cfg.steps`` with checkpoints, Ctrl-C and NaN handling (see ``run_training_loop``);
    ``preview_fn(step)`` runs every ``cfg.preview.live_every_s`` seconds; ``reference`` for image runs."""
    run_training_loop(
        state,
        lambda: sds_step(cfg, state, guidance, reference),
        cfg.steps,
        run_dir,
        cfg.checkpoint_every,
        cfg.keep_checkpoints,
        callback,
        should_stop,
        preview_fn=preview_fn,
        preview_every_s=cfg.preview.live_every_s,
    )


def field_and_background(state: TrainingState) -> tuple[NeRFField, Background]:
    """The trained modules, in eval mode."""
    state.field.eval()
    state.background.eval()
    return state.field, state.background


_ = T23dError
