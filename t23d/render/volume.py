"""Volume rendering of a :class:`~t23d.field.nerf.NeRFField` with empty-space skipping.

Density fields composite ``1 - exp(-sigma dt)`` per sample; signed-distance fields use NeuS's discrete
opacity from the SDF at each sample's section ends (:func:`sdf_optical_depths`), unbiased at
silhouettes, so the mesh extracted at ``s = 0`` has the field's rendered outline.

Samples are taken at a fixed step ``dt = 2 * sqrt(3) * bound / num_samples`` along each ray inside the
field's box (stratified with a random offset per ray during training). Only samples in occupied
cells of the :class:`~t23d.render.occupancy.OccupancyGrid` are evaluated; colours (and normals)
are evaluated only where the sample's weight is above ``weight_threshold``. Compositing follows
Max (1995) / NeRF: ``w_i = T_i (1 - exp(-sigma_i dt))``, ``T_i = exp(-sum_{j<i} sigma_j dt)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from t23d.common.geometry import intersect_aabb
from t23d.field.appearance import AppearanceRender
from t23d.field.background import Background
from t23d.field.nerf import NeRFField
from t23d.render.cameras import Cameras
from t23d.render.occupancy import OccupancyGrid, OccupancyGridConfig
from t23d.render.rays import Rays, camera_rays
from t23d.render.shading import Shading, shade


@dataclass
class RenderConfig:
    """Ray sampling and compositing."""

    num_samples: int = 256
    """Samples across the box's diagonal; sets the step size ``2 sqrt(3) bound / num_samples``."""
    stratified: bool = True
    """Randomly offset samples per ray during training (deterministic midpoints at evaluation)."""
    weight_threshold: float = 1e-4
    """Skip colour/normal evaluation of samples whose compositing weight is below this."""
    early_stop_transmittance: float = 1e-4
    """Drop samples once a ray's transmittance falls below this (found by a gradient-free density pass
    first); 0 evaluates every occupied sample with gradients."""
    normal_eps: float = 0.01
    """Finite-difference step (world units) for normals."""
    occupancy: OccupancyGridConfig = field(default_factory=OccupancyGridConfig)
    """Empty-space skipping."""
    chunk_rays: int = 16384
    """Rays per chunk when rendering whole images without gradients."""


@dataclass
class RenderOutput:
    """Per-ray results."""

    rgb: Tensor
    """[R, 3] colour composited over the background."""
    opacity: Tensor
    """[R] accumulated opacity."""
    depth: Tensor
    """[R] expected distance along the ray (0 where empty)."""
    normals: Tensor | None = None
    """[R, 3] composited world normals (only when computed)."""
    orientation_loss: Tensor | None = None
    """Scalar: mean over rays of ``sum_i w_i max(0, n_i . d)^2`` (DreamFusion), when normals were computed."""
    num_samples_evaluated: int = 0
    """Field evaluations this render made (for throughput reporting)."""
    background: Tensor | None = None
    """[R, 3] background colour behind each ray (photometric losses composite targets onto it)."""
    distortion: Tensor | None = None
    """Scalar: mean over rays of mip-NeRF 360's distortion loss (when requested)."""
    points: Tensor | None = None
    """[K, 3] detached positions of the samples that carried colour (weight above the threshold): where
    the rendered surface is, for geometry regularisers."""
    latent: Tensor | None = None
    """[R, C] the field's latent colour composited without background (premultiplied by the opacity),
    when rendered with ``latent_rgb_fn`` (Latent-NeRF)."""
    latent_rgb_loss: Tensor | None = None
    """Scalar, with ``latent_rgb_fn``: ``sum_i w_i |rgb_i - latent_rgb_fn(latent_i)|^2`` averaged over rays,
    the RGB head's distance to the colour of the latent head at the same samples. Its gradient reaches
    the RGB head only (features and the latent are detached)."""


def step_size(field_: NeRFField, cfg: RenderConfig) -> float:
    """Distance between samples along a ray."""
    return 2.0 * math.sqrt(3.0) * field_.cfg.bound / cfg.num_samples


def make_occupancy_grid(field_: NeRFField, cfg: RenderConfig, device: torch.device | str) -> OccupancyGrid:
    """An occupancy grid matching the field's box and the renderer's step size."""
    return OccupancyGrid(cfg.occupancy, field_.aabb(), step_size(field_, cfg), device)


def update_occupancy(grid: OccupancyGrid, field_: NeRFField, step: int, generator: torch.Generator) -> None:
    """Refresh ``grid`` from ``field_`` at optimisation ``step`` (the field's occupancy measure). An SDF
    field's band test replaces the cells' old verdicts, a density keeps instant-ngp's moving maximum."""
    grid.update(
        field_.occupancy_fn(grid.cell_size), step, generator, replace=getattr(field_, "is_sdf", False)
    )


def measured_occupancy(field_: NeRFField, grid: OccupancyGrid | None) -> OccupancyGrid | None:
    """The grid to render a finished field with: for SDF fields a new grid whose every cell is measured
    on the field as it is now (training refreshes a part of the cells at a time, and a cell the surface
    entered since its last measurement would be a hole in the asset's renders); ``grid`` itself for
    density fields (whose moving maximum only errs towards occupied) or when there is none."""
    if grid is None or not getattr(field_, "is_sdf", False) or not grid.cfg.enabled:
        return grid
    fresh = OccupancyGrid(grid.cfg, grid.aabb, grid.step_size, grid.aabb.device)
    update_occupancy(fresh, field_, 0, torch.Generator().manual_seed(0))  # the first update: every cell
    return fresh


def render_rays(
    field_: NeRFField,
    background: Background,
    rays: Rays,
    cfg: RenderConfig,
    occupancy: OccupancyGrid | None = None,
    *,
    shading: Shading | None = None,
    appearance: AppearanceRender | None = None,
    compute_normals: bool = False,
    compute_distortion: bool = False,
    generator: torch.Generator | None = None,
    latent_rgb_fn: Callable[[Tensor], Tensor] | None = None,
) -> RenderOutput:
    """Volume-render ``rays``; differentiable w.r.t. field and background parameters.

    ``generator`` drives stratified offsets (training); without it samples sit at step midpoints.
    ``shading`` (DreamFusion's random lights, SDS) other than albedo needs normals, which are then
    computed too. ``appearance`` (photos: learnt environment lighting, per-photo codes; see
    :mod:`t23d.field.appearance`) turns the field's colour into what a photo shows, or asks for the
    unlit albedo. ``compute_distortion`` adds mip-NeRF 360's distortion loss (:func:`distortion_loss`).
    ``latent_rgb_fn`` (``[K, C] -> [K, 3]``, for a field with a latent head) also renders the latent head
    into ``latent`` and measures ``latent_rgb_loss``; the RGB head then sees detached features, so only
    the latent render trains the geometry.
    """
    if shading is not None and appearance is not None:
        raise ValueError("render_rays: pass shading (SDS) or appearance (photos), not both")
    device = rays.origins.device
    num_rays = rays.origins.shape[0]
    dt = step_size(field_, cfg)
    aabb = field_.aabb().to(device)
    # sample distances are constants: with learnt camera poses the samples move rigidly with the ray
    near, far, hit = intersect_aabb(rays.origins.detach(), rays.directions.detach(), aabb)
    near = torch.where(hit, near, torch.zeros_like(near))
    far = torch.where(hit, far, torch.zeros_like(far))
    max_steps = int(math.ceil(float((far - near).max()) / dt)) if bool(hit.any()) else 0
    max_steps = max(1, min(max_steps, cfg.num_samples + 1))
    if cfg.stratified and generator is not None:
        offset = torch.rand(num_rays, 1, generator=generator).to(device)
    else:
        offset = torch.full((num_rays, 1), 0.5, device=device)
    ray_of_sample, t_flat = _candidate_samples(near, far, offset, dt, max_steps, rays, occupancy)
    sample_points = rays.origins[ray_of_sample] + t_flat[:, None] * rays.directions[ray_of_sample]  # [M, 3]
    if occupancy is not None and occupancy.cfg.enabled:
        occ = occupancy.query(sample_points)
        ray_of_sample, t_flat, sample_points = ray_of_sample[occ], t_flat[occ], sample_points[occ]
    is_sdf = getattr(field_, "is_sdf", False)
    if cfg.early_stop_transmittance > 0 and len(ray_of_sample):
        # first pass without gradients: drop samples hidden behind opaque ones (most of an object's
        # interior), then evaluate the rest with gradients; compositing is unchanged up to the threshold
        with torch.no_grad():
            if is_sdf:
                tau0 = sdf_optical_depths(field_.sdf(sample_points), t_flat, ray_of_sample, dt, field_.inv_s)
            else:
                tau0 = field_.density(sample_points) * dt  # type: ignore[operator]
            visible = _packed_transmittance(tau0, ray_of_sample, num_rays) > cfg.early_stop_transmittance
            if is_sdf:  # keep each visible run's next sample too: it closes the last visible interval
                visible = visible | _previous_adjacent(visible, ray_of_sample, t_flat, dt)
        ray_of_sample, t_flat, sample_points = ray_of_sample[visible], t_flat[visible], sample_points[visible]
    if is_sdf:
        sdf, feats = field_.sdf(sample_points, return_features=True)  # [M], [M, G]
        tau = sdf_optical_depths(sdf, t_flat, ray_of_sample, dt, field_.inv_s)
    else:
        sigma, feats = field_.density(sample_points, return_features=True)  # [M], [M, G]
        tau = sigma * dt
    weights = _packed_weights(tau, ray_of_sample, num_rays)  # [M]

    keep = weights.detach() > cfg.weight_threshold  # [M]
    w_k = weights[keep]
    ray_k = ray_of_sample[keep]
    pts_k = sample_points[keep]
    dirs_k = rays.directions[ray_k]
    feats_k = feats[keep]
    latent_k = None
    if latent_rgb_fn is not None:
        latent_k = field_.latent(feats_k, dirs_k)  # [K, C]
        feats_k = feats_k.detach()  # the RGB head only reads the geometry in latent mode
    albedo = field_.color(feats_k, dirs_k)  # [K, 3]

    need_normals = compute_normals or (shading is not None and shading.mode != "albedo")
    need_normals = need_normals or (appearance is not None and appearance.needs_normals)
    normals_k = None
    if need_normals:  # [K, 3]; empty when no sample is kept (a chunk of rays that all miss the object)
        normals_k = field_.normals(pts_k, cfg.normal_eps) if len(pts_k) else pts_k.new_zeros(0, 3)
    if appearance is not None:
        color_k = appearance.color(albedo, feats[keep], normals_k, dirs_k, ray_k)
    elif shading is not None and shading.mode != "albedo":
        light = (
            shading.light_positions[rays.image_ids[ray_k]] if shading.light_positions is not None else None
        )
        color_k = shade(albedo, normals_k, pts_k, light, shading.mode, shading.ambient)
    else:
        color_k = albedo

    opacity = torch.zeros(num_rays, device=device).index_add(0, ray_of_sample, weights)
    rgb_fg = torch.zeros(num_rays, 3, device=device).index_add(0, ray_k, w_k[:, None] * color_k)
    t_k = t_flat[keep]
    depth = torch.zeros(num_rays, device=device).index_add(0, ray_k, w_k * t_k)
    bg = background(rays.directions, rays.image_ids, generator, origins=rays.origins)
    if appearance is not None:
        bg = appearance.background(bg)
    rgb = rgb_fg + (1.0 - opacity[:, None]) * bg
    out = RenderOutput(
        rgb=rgb,
        opacity=opacity,
        depth=depth,
        num_samples_evaluated=int(len(ray_of_sample)),
        background=bg,
        points=pts_k.detach(),
    )
    if compute_distortion:
        out.distortion = distortion_loss(weights, t_flat, dt, ray_of_sample, num_rays)
    if latent_k is not None:
        out.latent = torch.zeros(num_rays, latent_k.shape[1], device=device).index_add(
            0, ray_k, w_k[:, None] * latent_k
        )
        target = latent_rgb_fn(latent_k.detach()).detach()  # type: ignore[misc]
        err = ((albedo - target) ** 2).sum(-1)  # [K]
        out.latent_rgb_loss = (
            torch.zeros(num_rays, device=device).index_add(0, ray_k, w_k.detach() * err).mean()
        )
    if normals_k is not None:
        out.normals = torch.zeros(num_rays, 3, device=device).index_add(0, ray_k, w_k[:, None] * normals_k)
        facing = (normals_k * dirs_k).sum(-1).clamp(min=0.0) ** 2
        orient = torch.zeros(num_rays, device=device).index_add(0, ray_k, w_k.detach() * facing)
        out.orientation_loss = orient.mean()
    return out


def _candidate_samples(
    near: Tensor,
    far: Tensor,
    offset: Tensor,
    dt: float,
    max_steps: int,
    rays: Rays,
    occupancy: OccupancyGrid | None,
) -> tuple[Tensor, Tensor]:
    """Sample positions ``t_i = near + (i + offset) dt`` with ``t_i < far``, sorted by ray then ``t``.

    With an occupancy grid, steps are first grouped in blocks no longer than a coarse cell, and only
    blocks whose start lies in the coarse dilated grid are expanded: this skips empty space without
    materialising every step of every ray, and never drops a step in an occupied fine cell.
    Returns ``ray index [M]`` and ``t [M]``.
    """
    device = near.device
    block = 1
    if occupancy is not None and occupancy.cfg.enabled and occupancy.cfg.coarse_factor > 1:
        block = max(1, int(occupancy.coarse_cell_size / dt))
    if block == 1:
        t = near[:, None] + (torch.arange(max_steps, device=device)[None] + offset) * dt  # [R, S]
        ray, step = (t < far[:, None]).nonzero(as_tuple=True)
        return ray, t[ray, step]
    num_blocks = -(-max_steps // block)
    t_block = near[:, None] + (torch.arange(num_blocks, device=device)[None] * block + offset) * dt  # [R, B]
    ray, blk = (t_block < far[:, None]).nonzero(as_tuple=True)
    starts = rays.origins[ray] + t_block[ray, blk][:, None] * rays.directions[ray]
    hit = occupancy.query_coarse(starts)  # type: ignore[union-attr]
    ray, blk = ray[hit], blk[hit]
    step = (blk[:, None] * block + torch.arange(block, device=device)[None]).reshape(-1)  # [M * block]
    ray = ray.repeat_interleave(block)
    t = near[ray] + (step + offset[ray, 0]) * dt
    inside = (t < far[ray]) & (step < max_steps)
    return ray[inside], t[inside]


def _packed_transmittance(tau: Tensor, ray: Tensor, num_rays: int) -> Tensor:
    """Transmittance ``T_i = exp(-sum of tau over earlier samples of the same ray)`` of packed samples
    sorted by ray, from one cumulative sum over all samples (float64, so subtracting each ray's start
    loses no precision). Returns float64 [M]."""
    tau64 = tau.double()
    cs = torch.cumsum(tau64, 0)  # inclusive, global
    counts = torch.bincount(ray, minlength=num_rays)  # [R]
    first = torch.cumsum(counts, 0) - counts  # index of each ray's first sample
    before = (cs - tau64)[first.clamp(max=len(tau) - 1)]  # global sum before each ray's first sample
    return torch.exp(-(cs - tau64 - before[ray]))


def _adjacent_to_previous(ray: Tensor, t: Tensor, dt: float) -> Tensor:
    """[M] bool: packed sample ``i`` directly follows sample ``i - 1`` on the same ray (one step apart)."""
    adj = torch.zeros_like(ray, dtype=torch.bool)
    if len(ray) > 1:
        adj[1:] = (ray[1:] == ray[:-1]) & ((t[1:] - t[:-1] - dt).abs() < 0.5 * dt)
    return adj


def _previous_adjacent(mask: Tensor, ray: Tensor, t: Tensor, dt: float) -> Tensor:
    """[M] bool: the sample directly before ``i`` on its ray (one step earlier) is in ``mask``."""
    out = torch.zeros_like(mask)
    if len(mask) > 1:
        out[1:] = mask[:-1] & _adjacent_to_previous(ray, t, dt)[1:]
    return out


def sdf_optical_depths(sdf: Tensor, t: Tensor, ray: Tensor, dt: float, inv_s: Tensor | float) -> Tensor:
    """Per-sample optical depths ``tau_i = -log(1 - alpha_i)`` of an SDF rendered as NeuS does.

    Sample ``i`` stands for the section ``[t_i - dt/2, t_i + dt/2]`` of its ray; with ``s^-`` and ``s^+``
    the SDF at the section's ends, NeuS's discrete opacity is
    ``alpha_i = max((Phi(s^-) - Phi(s^+)) / Phi(s^-), 0)``, ``Phi(s) = sigmoid(inv_s * s)``. It is exact
    for a planar surface whatever ``inv_s`` and ``dt``, and unbiased for rays that only graze a surface
    (a ray touching the zero level reaches opacity 1/2), where a density ``sigma(s)`` is not. The ends
    are interpolated from the neighbouring samples of the same ray (midpoints), or extrapolated from
    the one neighbour a run's first/last sample has; an isolated sample gets no opacity.
    ``sdf``/``t`` [M] packed by ray then ``t``; returns [M] (differentiable w.r.t. ``sdf``, ``inv_s``).
    """
    if sdf.numel() == 0:
        return sdf
    has_prev = _adjacent_to_previous(ray, t, dt)  # [M]
    has_next = torch.zeros_like(has_prev)
    has_next[:-1] = has_prev[1:]
    prev = torch.cat([sdf[:1], sdf[:-1]])  # s_{i-1} (garbage where not has_prev)
    nxt = torch.cat([sdf[1:], sdf[-1:]])  # s_{i+1}
    half_back = torch.where(has_prev, 0.5 * (sdf - prev), 0.5 * (nxt - sdf))  # s_i - s^-
    half_fwd = torch.where(has_next, 0.5 * (nxt - sdf), 0.5 * (sdf - prev))  # s^+ - s_i
    s_minus, s_plus = sdf - half_back, sdf + half_fwd
    phi_minus = torch.sigmoid(s_minus * inv_s)
    phi_plus = torch.sigmoid(s_plus * inv_s)
    alpha = ((phi_minus - phi_plus) / (phi_minus + 1e-6)).clamp(0.0, 1.0 - 1e-6)
    alpha = torch.where(has_prev | has_next, alpha, torch.zeros_like(alpha))
    return -torch.log1p(-alpha)


def distortion_loss(weights: Tensor, t: Tensor, dt: float, ray: Tensor, num_rays: int) -> Tensor:
    """mip-NeRF 360's distortion loss of packed samples (sorted by ray, then ``t``), mean over rays:
    ``sum_ij w_i w_j |t_i - t_j| + dt / 3 sum_i w_i^2`` per ray, which is small when each ray's weight is
    concentrated in one short interval (a surface) and large for fog and floaters.

    The double sum is computed in O(samples) with prefix sums: for samples sorted by ``t``,
    ``sum_ij = 2 sum_i w_i (t_i W_i - S_i)`` with ``W_i``, ``S_i`` the sums of ``w`` and ``w t`` over the
    ray's earlier samples. ``weights`` [M], ``t`` [M] (world units), ``ray`` [M] long."""
    if weights.numel() == 0:
        return weights.sum()
    w, tt = weights.double(), t.double()
    counts = torch.bincount(ray, minlength=num_rays)
    first = (torch.cumsum(counts, 0) - counts)[ray]  # [M] index of each sample's ray start
    cw, cwt = torch.cumsum(w, 0), torch.cumsum(w * tt, 0)
    base_w = (cw - w)[first]
    base_wt = (cwt - w * tt)[first]
    before_w = cw - w - base_w  # [M] sum of w over earlier samples of the same ray
    before_wt = cwt - w * tt - base_wt
    inter = 2.0 * w * (tt * before_w - before_wt)
    intra = w * w * (dt / 3.0)
    per_ray = torch.zeros(num_rays, dtype=torch.float64, device=w.device).index_add(0, ray, inter + intra)
    return per_ray.mean().to(weights.dtype)


def _packed_weights(tau: Tensor, ray: Tensor, num_rays: int) -> Tensor:
    """Compositing weights ``w_i = T_i (1 - exp(-tau_i))`` of packed samples sorted by ray."""
    if tau.numel() == 0:
        return tau
    trans = _packed_transmittance(tau, ray, num_rays)
    return (trans * (1.0 - torch.exp(-tau.double()))).to(tau.dtype)


@torch.no_grad()
def render_images(
    field_: NeRFField,
    background: Background,
    cameras: Cameras,
    cfg: RenderConfig,
    occupancy: OccupancyGrid | None = None,
    shading: Shading | None = None,
    appearance: AppearanceRender | None = None,
) -> dict[str, Tensor]:
    """Render whole images without gradients.

    Returns ``rgb`` [B, H, W, 3] (composited over the background), ``opacity`` [B, H, W], ``depth``
    [B, H, W] and ``background`` [B, H, W, 3] (the background colour behind each pixel), so that
    ``rgb - (1 - opacity) * background`` is the field's own premultiplied colour.

    ``appearance`` must use the neutral code (``image_ids`` None): rays here are not tied to photos.
    """
    b, h, w = len(cameras), cameras.height, cameras.width
    out = render_pixels(field_, background, cameras, cfg, None, occupancy, shading, appearance)
    return {
        "rgb": out["rgb"].reshape(b, h, w, 3),
        "opacity": out["opacity"].reshape(b, h, w),
        "depth": out["depth"].reshape(b, h, w),
        "background": out["background"].reshape(b, h, w, 3),
    }


@torch.no_grad()
def render_pixels(
    field_: NeRFField,
    background: Background,
    cameras: Cameras,
    cfg: RenderConfig,
    pixels: Tensor | None = None,
    occupancy: OccupancyGrid | None = None,
    shading: Shading | None = None,
    appearance: AppearanceRender | None = None,
) -> dict[str, Tensor]:
    """Render the rays through ``pixels`` ([R, 3] long ``(camera, row, column)``; None: every pixel,
    camera-major then row-major) in chunks of ``cfg.chunk_rays``, without gradients: flat ``rgb`` [R, 3],
    ``opacity`` [R], ``depth`` [R] and ``background`` [R, 3], as :func:`render_images` describes them."""
    if appearance is not None and appearance.image_ids is not None:
        raise ValueError("render_images: appearance must use the neutral code (image_ids=None)")
    was_training = background.training
    background.eval()
    rays = camera_rays(cameras, pixels)
    outs: dict[str, list[Tensor]] = {"rgb": [], "opacity": [], "depth": [], "background": []}
    for start in range(0, rays.origins.shape[0], cfg.chunk_rays):
        sl = slice(start, start + cfg.chunk_rays)
        chunk = Rays(rays.origins[sl], rays.directions[sl], rays.image_ids[sl])
        o = render_rays(field_, background, chunk, cfg, occupancy, shading=shading, appearance=appearance)
        outs["rgb"].append(o.rgb)
        outs["opacity"].append(o.opacity)
        outs["depth"].append(o.depth)
        outs["background"].append(o.background)
    background.train(was_training)
    return {k: torch.cat(v) for k, v in outs.items()}
