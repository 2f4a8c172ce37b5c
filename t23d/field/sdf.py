"""Regularisers of signed-distance geometry, from finite differences of the SDF.

Gradients and second derivatives come from central differences over the six axis neighbours at
distance ``eps`` (Neuralangelo's numerical gradients): no double backward through the hash grid is
needed, so the tcnn, C++ and PyTorch encodings all support it, and a step ``eps`` larger than the
finest grid cell smooths the surface at that scale (Neuralangelo anneals it from coarse to fine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from t23d.common.schedule import Constant, Linear, Schedule

if TYPE_CHECKING:
    from t23d.field.nerf import NeRFField

_AXES = torch.tensor(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float32
)  # [6, 3]


@dataclass
class SDFDerivatives:
    """Finite-difference derivatives of an SDF at ``N`` points."""

    value: Tensor
    """[N] the SDF at the points."""
    gradient: Tensor
    """[N, 3] central-difference gradient."""
    laplacian: Tensor
    """[N] central-difference Laplacian (the sum of the three second derivatives)."""


def sdf_derivatives(sdf_fn, points: Tensor, eps: float) -> SDFDerivatives:
    """Value, gradient and Laplacian of ``sdf_fn`` (points [N, 3] -> [N]) at ``points`` [N, 3] by
    central differences with step ``eps`` (world units); 7 evaluations per point, differentiable."""
    n = len(points)
    axes = _AXES.to(points)
    pts = torch.cat([points, (points[:, None, :] + eps * axes[None]).reshape(-1, 3)])  # [N + 6N, 3]
    values = sdf_fn(pts)
    s0 = values[:n]  # [N]
    nb = values[n:].reshape(n, 3, 2)  # [N, axis, (+, -)]
    gradient = (nb[..., 0] - nb[..., 1]) / (2.0 * eps)  # [N, 3]
    laplacian = (nb.sum(-1) - 2.0 * s0[:, None]).sum(-1) / (eps * eps)  # [N]
    return SDFDerivatives(s0, gradient, laplacian)


def eikonal_loss(gradient: Tensor) -> Tensor:
    """Mean of ``(|grad s| - 1)^2`` over points (gradient [N, 3]): a signed distance has unit gradient."""
    return ((gradient.norm(dim=-1) - 1.0) ** 2).mean()


def curvature_loss(laplacian: Tensor) -> Tensor:
    """Mean absolute Laplacian (mean curvature, x2, of a true distance field): penalises bumps, so plain
    surfaces that the photos do not pin stay smooth (Neuralangelo)."""
    return laplacian.abs().mean()


@dataclass
class SDFTrainingConfig:
    """How SDF fields are trained, beside the main loss (used by every training loop): geometry losses
    (each weight a schedule over steps) and a rising floor on the learnt sharpness."""

    eikonal: Schedule = field(default_factory=lambda: Constant(0.1))
    """Weight of :func:`eikonal_loss` (NeuS uses 0.1)."""
    curvature: Schedule = field(default_factory=lambda: Constant(1e-4))
    """Weight of :func:`curvature_loss`; keeps surfaces that photos or the prior leave unconstrained
    smooth (plain-coloured regions, the unseen underside)."""
    eps: Schedule = field(default_factory=lambda: Linear(0.02, 0.004, 0, 2000))
    """Finite-difference step (world units): coarse first (smooth, large-scale shape), then fine."""
    num_surface_points: int = 2048
    """Points per step drawn from the render's samples that carry colour (near the surface)."""
    num_uniform_points: int = 512
    """Points per step drawn uniformly in the field's box (keeps the SDF a distance everywhere)."""
    sharpness_floor: Schedule = field(default_factory=lambda: Linear(50.0, 400.0, 0, 1500))
    """Lower bound on the learnt sharpness ``inv_s`` (1/length) at each step. A soft surface early lets
    the shape move; a rising floor makes it opaque and thin on schedule, which also bounds the samples
    per ray (the occupancy shell and early ray termination scale with ``1 / inv_s``) - on CPU the
    difference between minutes and an hour."""


def sdf_training_for(
    steps: int, floor: tuple[float, float] = (50.0, 400.0), anneal_curvature: bool = False
) -> SDFTrainingConfig:
    """The SDF schedules scaled to a run of ``steps``: the sharpness floor rises from ``floor[0]`` to
    ``floor[1]`` over the first half, the finite-difference step shrinks from 0.02 to 0.004 over the
    first two thirds. ``anneal_curvature``: the curvature weight falls linearly to 0 between a tenth and a
    third of the run (as Neuralangelo anneals it), so the smoothing that shapes the surface early does not
    round the creases and edges the photos show at the end (photo runs, benchmarks/RESULTS.md: annealing
    at all gave `.glb` +0.3 to +4.5 dB and lower Chamfer-L1 on all eight scenes measured; ending at 7/12
    rather than 5/6 a further +1.0 and +1.25 dB on the box+sphere and statue, -0.24 dB on the glossy duck;
    ending at 1/3 rather than 7/12 a further +0.80, +0.34 and +0.33 dB on the same three)."""
    base = SDFTrainingConfig()
    curvature = (
        Linear(base.curvature.at(0), 0.0, max(1, steps // 10), max(2, steps // 3))
        if anneal_curvature
        else base.curvature
    )
    return SDFTrainingConfig(
        curvature=curvature,
        eps=Linear(0.02, 0.004, 0, max(1, (2 * steps) // 3)),
        sharpness_floor=Linear(floor[0], floor[1], 0, max(1, steps // 2)),
    )


def rescale_sdf_training(cfg: SDFTrainingConfig, old_steps: int, new_steps: int) -> SDFTrainingConfig:
    """``cfg`` with the step ranges of its ramps scaled by ``new_steps / old_steps`` (a preset's schedules
    follow a ``--steps`` override)."""
    import dataclasses

    from t23d.common.schedule import Cosine

    if old_steps <= 0 or new_steps <= 0 or old_steps == new_steps:
        return cfg
    k = new_steps / old_steps

    def scaled(sch: Schedule) -> Schedule:
        if isinstance(sch, (Linear, Cosine)):
            return dataclasses.replace(
                sch, start_step=int(round(sch.start_step * k)), end_step=max(1, int(round(sch.end_step * k)))
            )
        return sch

    return dataclasses.replace(
        cfg,
        eikonal=scaled(cfg.eikonal),
        curvature=scaled(cfg.curvature),
        eps=scaled(cfg.eps),
        sharpness_floor=scaled(cfg.sharpness_floor),
    )


def apply_sharpness_floor(field_: NeRFField, cfg: SDFTrainingConfig, step: int) -> None:
    """Raise the field's learnt log-sharpness to ``cfg.sharpness_floor`` at ``step`` (in place, no
    gradient; a no-op for density fields). Part of the checkpointed parameters, so resumes are exact."""
    if not getattr(field_, "is_sdf", False):
        return
    floor = cfg.sharpness_floor.at(step)
    if floor > 0:
        with torch.no_grad():
            field_.log_inv_s.clamp_(min=math.log(floor))


def sdf_regulariser_losses(
    field_: NeRFField,
    surface_points: Tensor | None,
    cfg: SDFTrainingConfig,
    step: int,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """Weighted eikonal and curvature losses at ``step`` on a subset of ``surface_points`` [M, 3]
    (detached render samples) plus uniform points in the field's box; ``{}`` for density fields or
    zero weights. Randomness from ``generator`` (CPU), so checkpointed runs resume bit-exactly."""
    w_eik, w_curv = cfg.eikonal.at(step), cfg.curvature.at(step)
    if not getattr(field_, "is_sdf", False) or (w_eik <= 0 and w_curv <= 0):
        return {}
    device = field_.log_inv_s.device
    parts = []
    if surface_points is not None and len(surface_points) and cfg.num_surface_points > 0:
        pick = torch.randint(len(surface_points), (cfg.num_surface_points,), generator=generator)
        parts.append(surface_points[pick.to(surface_points.device)].detach().to(device))
    if cfg.num_uniform_points > 0:
        b = field_.cfg.bound
        u = (torch.rand(cfg.num_uniform_points, 3, generator=generator) * 2.0 - 1.0) * b
        parts.append(u.to(device))
    if not parts:
        return {}
    pts = torch.cat(parts)
    # the learnt SDF alone: a ground plane (field.ground_plane) is exact, and its crease with the object
    # would otherwise be smoothed into a fillet
    d = sdf_derivatives(lambda p: field_.sdf(p, ground=False), pts, cfg.eps.at(step))
    losses: dict[str, Tensor] = {}
    if w_eik > 0:
        losses["eikonal"] = w_eik * eikonal_loss(d.gradient)
    if w_curv > 0:
        n_surf = len(pts) - (cfg.num_uniform_points if cfg.num_uniform_points > 0 else 0)
        lap = d.laplacian[:n_surf] if n_surf > 0 else d.laplacian
        if n_surf > 0 and field_.ground is not None:
            # render samples on the ground plane are far from the learnt surface: flattening the learnt
            # SDF's level sets there would pull the object's underside down towards the table
            g = field_.ground.to(pts)
            lap = lap[d.value[:n_surf].detach() <= pts[:n_surf] @ g[:3] - g[3]]
        if len(lap):
            losses["curvature"] = w_curv * curvature_loss(lap)
    return losses
