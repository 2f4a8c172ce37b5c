"""Photometric training of the hash-grid field on posed photos (instant-ngp style).

Per step: random pixels of random training images -> rays (through the learnt pose corrections, when
refined) -> volume rendering (through the appearance model: environment lighting, per-photo codes) ->
MSE against the photo, plus the geometry regularisers the run chose (SDF eikonal/curvature, distortion,
SfM points, free space in front of them). Photos with alpha are trained over random background colours
so that the field must be transparent where the object is not. All randomness comes from the
checkpointed generator.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from t23d.field.appearance import Appearance, AppearanceConfig, AppearanceRender
from t23d.field.background import Background, BackgroundConfig
from t23d.field.nerf import NeRFField
from t23d.field.sdf import apply_sharpness_floor, sdf_regulariser_losses
from t23d.reconstruct.config import ReconstructConfig
from t23d.reconstruct.fewview import apply_visible_levels, sparse_point_loss
from t23d.reconstruct.free_space import free_space_loss
from t23d.reconstruct.ray_sampling import ErrorMap
from t23d.render.cameras import Cameras
from t23d.render.pose_refine import PoseCorrections
from t23d.render.rays import Rays, camera_rays
from t23d.render.volume import make_occupancy_grid, render_rays, step_size, update_occupancy
from t23d.run.state import (
    StepCallback,
    StepInfo,
    TrainingState,
    check_finite,
    make_optimizer,
    run_training_loop,
)


@dataclass
class TrainImages:
    """Training pixels on the device: images, premultiplied colours, alphas and cameras."""

    cameras: Cameras
    """All cameras of the dataset (indices match ``images``)."""
    premultiplied: Tensor
    """[N, H, W, 3] colour times alpha (equal to the photo when there is no alpha)."""
    alphas: Tensor | None
    """[N, H, W] alpha, or None."""
    train_indices: Tensor
    """[T] long indices of training images."""
    points: Tensor | None = None
    """[P, 3] SfM points inside the field's box (normalised frame, on the device), or None."""
    free_space: Tensor | None = None
    """[S, 2, 4] segments from the training cameras to the sparse points they saw, inside the field's box,
    with their cone radii (:func:`t23d.reconstruct.free_space.free_space_segments`), when the run uses the
    free-space loss."""
    unseen: tuple[Tensor, Tensor] | None = None
    """Space no warm-start view observed, near its surface: points [U, 3] and the warm start's signed
    distance there [U] (:func:`t23d.reconstruct.warm_start.load_unseen`), or None."""


def appearance_config(cfg: ReconstructConfig) -> AppearanceConfig:
    """``cfg.appearance`` as the model is built from it: ``local_codes: auto`` is resolved from the capture
    when a run starts (:func:`t23d.reconstruct.capture.resolve_for_capture`); left unresolved, it is none."""
    if cfg.appearance.local_codes == "auto":
        return dataclasses.replace(cfg.appearance, local_codes=0)
    return cfg.appearance


def uses_appearance(cfg: ReconstructConfig) -> bool:
    """Whether the run has an appearance model (a shading model or per-photo codes)."""
    app = appearance_config(cfg)
    return app.shading != "none" or app.per_image != "none" or app.local_codes != 0


def build_reconstruct_state(
    cfg: ReconstructConfig,
    background: BackgroundConfig,
    device: torch.device,
    num_images: int = 0,
    train_indices: list[int] | None = None,
    image_size: tuple[int, int] | None = None,
) -> TrainingState:
    """Fresh state from ``cfg.seed``. ``num_images`` (all photos, train and test) sizes the per-photo
    appearance codes and pose corrections; ``train_indices`` are the photos whose codes are learnt;
    ``image_size`` (height, width) sizes the error map of ``ray_sampling.mode: error`` (training only:
    without it, as for an export, there is none)."""
    generator = torch.Generator().manual_seed(cfg.seed)
    init_gen = torch.Generator().manual_seed(cfg.seed + 1)
    field_ = NeRFField(cfg.field, device=device, generator=init_gen)
    bg = Background(background, generator=init_gen, device=device, aabb=field_.aabb()).to(device)
    o = cfg.optim
    optimizer = make_optimizer(field_, bg, o.lr_grid, o.lr_mlp, o.lr_background, o.betas, o.eps)
    occupancy = make_occupancy_grid(field_, cfg.render, device)
    extras: dict[str, torch.nn.Module] = {}
    if uses_appearance(cfg):
        extras["appearance"] = Appearance(
            appearance_config(cfg), max(num_images, 1), train_indices, cfg.field.geo_feat_dim, init_gen
        ).to(device)
        optimizer.add_param_group(
            {"params": list(extras["appearance"].parameters()), "lr": o.lr_mlp, "name": "appearance"}
        )
    if cfg.pose_refinement.enabled:
        extras["poses"] = PoseCorrections(max(num_images, 1)).to(device)
        optimizer.add_param_group(
            {"params": list(extras["poses"].parameters()), "lr": cfg.pose_refinement.lr, "name": "poses"}
        )
    if cfg.ray_sampling.mode == "error" and image_size is not None:
        photos = len(train_indices) if train_indices is not None else max(num_images, 1)
        extras["rays"] = ErrorMap(cfg.ray_sampling, photos, *image_size).to(device)
    return TrainingState(field_, bg, optimizer, occupancy, generator, extras=extras)


def photo_appearance(
    state: TrainingState,
    image_ids: Tensor | None = None,
    output: Literal["radiance", "albedo"] = "radiance",
    photo_background: bool = False,
) -> AppearanceRender | None:
    """The run's appearance for a render: per-photo codes of ``image_ids`` [R] (None: the neutral code,
    for held-out views and the asset), ``radiance`` or ``albedo``; ``photo_background``: the background
    is part of the photos (unmasked photos), so their exposure applies to it. None when the run has no
    appearance model."""
    model = state.extras.get("appearance")
    if model is None:
        return None
    return AppearanceRender(model, image_ids, output, photo_background)  # type: ignore[arg-type]


def training_cameras(state: TrainingState, cameras: Cameras) -> Cameras:
    """``cameras`` with the learnt pose corrections applied (differentiable), when poses are refined."""
    poses = state.extras.get("poses")
    if poses is None:
        return cameras
    return Cameras(poses(cameras.c2w), cameras.intrinsics, cameras.width, cameras.height)


def learning_rate_factor(cfg: ReconstructConfig, step: int) -> float:
    """Multiplier of the base learning rates at ``step``: 1, then exponential decay to 0.1 at the end."""
    if step < cfg.lr_decay_start or cfg.steps <= cfg.lr_decay_start:
        return 1.0
    return 0.1 ** ((step - cfg.lr_decay_start) / (cfg.steps - cfg.lr_decay_start))


def photometric_step(cfg: ReconstructConfig, state: TrainingState, data: TrainImages) -> StepInfo:
    """One optimisation step on ``cfg.rays_per_batch`` random training pixels."""
    step, gen = state.step, state.generator
    device = data.premultiplied.device
    timings: dict[str, float] = {}
    apply_sharpness_floor(state.field, cfg.sdf_training, step)
    apply_visible_levels(state.field, cfg, step)
    t0 = time.perf_counter()
    if step % cfg.render.occupancy.update_every == 0:
        update_occupancy(state.occupancy, state.field, step, gen)
    timings["occupancy"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    n = cfg.rays_per_batch
    error_map = state.extras.get("rays")
    if isinstance(error_map, ErrorMap):
        pick, row, col = error_map.sample(n, gen)
    else:
        pick = torch.randint(len(data.train_indices), (n,), generator=gen)
        row = torch.randint(data.cameras.height, (n,), generator=gen)
        col = torch.randint(data.cameras.width, (n,), generator=gen)
    img = data.train_indices[pick]
    pixels = torch.stack([img, row, col], -1).to(device)
    cams = training_cameras(state, data.cameras)
    if step < cfg.pose_refinement.start_step:
        cams = Cameras(cams.c2w.detach(), cams.intrinsics, cams.width, cams.height)
    rays = camera_rays(cams, pixels)
    # one random background colour per ray (RandomBackground); other backgrounds ignore the ids
    rays = Rays(rays.origins, rays.directions, torch.arange(n, device=device))
    w_dist = cfg.distortion.at(step)
    out = render_rays(
        state.field,
        state.background,
        rays,
        cfg.render,
        state.occupancy,
        appearance=photo_appearance(state, pixels[:, 0], photo_background=data.alphas is None),
        compute_distortion=w_dist > 0,
        generator=gen,
    )
    target = data.premultiplied[pixels[:, 0], pixels[:, 1], pixels[:, 2]]  # [R, 3]
    if data.alphas is not None:
        a = data.alphas[pixels[:, 0], pixels[:, 1], pixels[:, 2]][:, None]
        target = target + (1 - a) * out.background.detach()  # type: ignore[union-attr]
    timings["render"] = time.perf_counter() - t0
    losses = {"rgb": torch.nn.functional.mse_loss(out.rgb, target)}
    if isinstance(error_map, ErrorMap):
        error_map.update(pick, row, col, (out.rgb.detach() - target).square().mean(-1))
    if out.distortion is not None:
        losses["distortion"] = w_dist * out.distortion
    t0 = time.perf_counter()
    losses.update(sdf_regulariser_losses(state.field, out.points, cfg.sdf_training, step, gen))
    surface = math.log(2.0) / step_size(state.field, cfg.render)  # one step 50 % opaque
    w_points = cfg.sparse_points.at(step)
    if w_points > 0 and data.points is not None:
        losses["sfm_points"] = w_points * sparse_point_loss(
            state.field,
            data.points,
            cfg.sparse_points_per_step,
            gen,
            surface,
            max_distance=cfg.sparse_points_max_distance.at(step),
        )
    if data.free_space is not None and cfg.free_space.weight > 0:
        losses["free_space"] = cfg.free_space.weight * free_space_loss(
            state.field, data.free_space, cfg.free_space.samples_per_step, gen, surface
        )
    w_unseen = cfg.warm_start.unseen_weight
    if w_unseen > 0 and data.unseen is not None and state.field.is_sdf:
        from t23d.reconstruct.warm_start import unseen_space_loss

        losses["unseen"] = w_unseen * unseen_space_loss(
            state.field, data.unseen, cfg.warm_start.unseen_points, gen
        )
    timings["regularisers"] = time.perf_counter() - t0
    check_finite(losses)
    total = sum(losses.values())

    t0 = time.perf_counter()
    state.optimizer.zero_grad(set_to_none=True)
    total.backward()  # type: ignore[union-attr]
    timings["backward"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    factor = learning_rate_factor(cfg, step)
    base = {
        "grid": cfg.optim.lr_grid,
        "mlp": cfg.optim.lr_mlp,
        "background": cfg.optim.lr_background,
        "background_grid": cfg.optim.lr_grid,
        "sharpness": cfg.optim.lr_mlp,
        "appearance": cfg.optim.lr_mlp,
        "poses": cfg.pose_refinement.lr,
    }
    for group in state.optimizer.param_groups:
        group["lr"] = base[group["name"]] * factor
    state.optimizer_step()  # checks gradients and parameters are finite
    timings["optimiser"] = time.perf_counter() - t0
    state.step += 1
    mse = float(losses["rgb"].detach())
    values = {k: float(v.detach()) for k, v in losses.items() if k != "rgb"}
    values.update({"total": mse, "psnr": -10.0 * torch.log10(torch.tensor(max(mse, 1e-10))).item()})
    if state.field.is_sdf:
        values["inv_s"] = float(state.field.inv_s.detach())
    return StepInfo(state.step, cfg.steps, values, timings, out.num_samples_evaluated)


def train_photometric(
    cfg: ReconstructConfig,
    state: TrainingState,
    data: TrainImages,
    run_dir: Path,
    callback: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress_dir: Path | None = None,
    phase: str = "training",
    end_phase: str = "finishing",
) -> None:
    """Train to ``cfg.steps`` with checkpoints, Ctrl-C and NaN handling (see ``run_training_loop``;
    ``progress_dir``, ``phase`` and ``end_phase`` name where and as what ``progress.json`` reports)."""
    run_training_loop(
        state,
        lambda: photometric_step(cfg, state, data),
        cfg.steps,
        run_dir,
        cfg.checkpoint_every,
        cfg.keep_checkpoints,
        callback,
        should_stop,
        progress_dir=progress_dir,
        phase=phase,
        end_phase=end_phase,
    )
