"""Cameras: pinhole intrinsics and camera-to-world poses, random SDS cameras and orbits.

Conventions: world +Z up. ``c2w`` is a 4x4 camera-to-world matrix in the **OpenGL** convention
(the camera looks down its -Z axis, +Y up, +X right). Intrinsics ``[fx, fy, cx, cy]`` are in pixels
with pixel centres at ``+0.5``. Spherical camera positions: ``azimuth`` in degrees around +Z with
azimuth 0 on the **-Y** axis looking at the object's front (so the front faces -Y in the world and
+Z in glTF, as glTF expects) and azimuth 90 on +X; ``elevation`` in degrees above the XY plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Union

import torch
from torch import Tensor


@dataclass
class Cameras:
    """A batch of pinhole cameras of one image size."""

    c2w: Tensor
    """[B, 4, 4] camera-to-world, OpenGL convention."""
    intrinsics: Tensor
    """[B, 4] fx, fy, cx, cy in pixels."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def to(self, device: torch.device | str) -> Cameras:
        """Copy to ``device``."""
        return Cameras(self.c2w.to(device), self.intrinsics.to(device), self.width, self.height)

    def __getitem__(self, idx) -> Cameras:
        c2w, intr = self.c2w[idx], self.intrinsics[idx]
        if c2w.dim() == 2:
            c2w, intr = c2w[None], intr[None]
        return Cameras(c2w, intr, self.width, self.height)


def look_at(position: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """OpenGL camera-to-world matrices [B, 4, 4] for cameras at ``position`` [B, 3] looking at ``target`` [B, 3]."""
    if up is None:
        up = torch.tensor([0.0, 0.0, 1.0], dtype=position.dtype, device=position.device).expand_as(position)
    forward = torch.nn.functional.normalize(target - position, dim=-1)  # [B, 3]
    right = torch.cross(forward, up, dim=-1)
    # looking straight up/down: pick another up vector
    degenerate = right.norm(dim=-1) < 1e-6
    if degenerate.any():
        alt = torch.tensor([0.0, 1.0, 0.0], dtype=position.dtype, device=position.device).expand_as(position)
        right = torch.where(degenerate[:, None], torch.cross(forward, alt, dim=-1), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    true_up = torch.cross(right, forward, dim=-1)
    c2w = torch.zeros(position.shape[0], 4, 4, dtype=position.dtype, device=position.device)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = true_up
    c2w[:, :3, 2] = -forward
    c2w[:, :3, 3] = position
    c2w[:, 3, 3] = 1.0
    return c2w


def spherical_to_position(azimuth_deg: Tensor, elevation_deg: Tensor, distance: Tensor) -> Tensor:
    """World positions [B, 3] of cameras at the given azimuth/elevation (degrees) and distance."""
    az, el = torch.deg2rad(azimuth_deg), torch.deg2rad(elevation_deg)
    return torch.stack(
        [
            distance * torch.cos(el) * torch.sin(az),
            -distance * torch.cos(el) * torch.cos(az),
            distance * torch.sin(el),
        ],
        dim=-1,
    )


def focal_from_fov(fov_deg: Tensor, size: int) -> Tensor:
    """Focal length in pixels for a field of view (degrees) across ``size`` pixels."""
    return 0.5 * size / torch.tan(torch.deg2rad(fov_deg) / 2)


@dataclass
class SphereFitDistance:
    """Camera distance that frames a sphere around the origin, whatever the field of view.

    A sphere of ``radius`` fills a view of vertical field of view ``fov`` exactly (touches the top and
    bottom edges of the square image) at the distance ``radius / sin(fov / 2)``; each camera stands at
    that distance times a factor drawn uniformly from ``scale_range``. Scene objects live in the unit
    sphere (the field's box is [-1, 1]^3), so the defaults keep an object that fills it in frame at
    every sampled field of view, as threestudio's relative camera radius does.
    """

    radius: float = 1.0
    """Radius (world units) of the sphere around the origin that must stay in view."""
    scale_range: tuple[float, float] = (1.0, 1.25)
    """Factor range applied to the fitting distance; 1.0 = the sphere touches the frame's edges."""


@dataclass
class WorldDistance:
    """Camera distance in world units, drawn independently of the field of view."""

    distance_range: tuple[float, float] = (3.0, 3.5)
    """Camera distance range from the origin in world units."""


CameraDistance = Union[SphereFitDistance, WorldDistance]
"""How random SDS cameras choose their distance; :func:`sample_random_views` dispatches on the type."""


@dataclass
class RandomCameraConfig:
    """Random cameras around the origin for score distillation (DreamFusion's sampling)."""

    resolution: int = 64
    """Rendered image width and height in pixels."""
    batch_size: int = 1
    """Views per optimisation step; a multi-view prior (MVDream) gets ``batch_size`` groups of its
    ``num_views`` views instead (see :func:`sample_random_views`)."""
    azimuth_range: tuple[float, float] = (-180.0, 180.0)
    """Azimuth range in degrees (0 = front, on -Y)."""
    elevation_range: tuple[float, float] = (-10.0, 45.0)
    """Elevation range in degrees above the XY plane."""
    distance: CameraDistance = field(default_factory=SphereFitDistance)
    """Camera distance: relative to the field of view (``SphereFitDistance``, frames the unit sphere)
    or in world units (``WorldDistance``)."""
    fov_range: tuple[float, float] = (40.0, 70.0)
    """Vertical field of view range in degrees."""
    jitter: float = 0.0
    """Std-dev of random offsets (world units) of the look-at target, for robustness."""
    eval_distance: float = 2.5
    """Distance (world units) of previews and evaluation views; the unit sphere fits ``eval_fov`` from
    ``1 / sin(eval_fov / 2)`` (2.17 at 55 degrees)."""
    eval_fov: float = 55.0
    """Field of view (degrees) of previews and evaluation views."""
    eval_elevation: float = 15.0
    """Elevation (degrees) of previews and evaluation views."""


def fit_sphere_distance(radius: float | Tensor, fov_deg: Tensor) -> Tensor:
    """Distance at which a sphere of ``radius`` exactly fills a vertical field of view ``fov_deg`` (degrees)."""
    return radius / torch.sin(torch.deg2rad(fov_deg) / 2)


@dataclass
class SampledViews:
    """Random cameras with the angles that produced them (azimuth feeds view-dependent prompts)."""

    cameras: Cameras
    azimuth_deg: Tensor
    """[B] degrees in [-180, 180)."""
    elevation_deg: Tensor
    """[B] degrees."""


def _uniform(lo: float, hi: float, n: int, generator: torch.Generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def _distance(cfg: CameraDistance, fov_deg: Tensor, generator: torch.Generator) -> Tensor:
    """``[N]`` camera distances for fields of view ``fov_deg [N]``."""
    if isinstance(cfg, SphereFitDistance):
        return fit_sphere_distance(cfg.radius, fov_deg) * _uniform(*cfg.scale_range, len(fov_deg), generator)
    if isinstance(cfg, WorldDistance):
        return _uniform(*cfg.distance_range, len(fov_deg), generator)
    raise TypeError(f"unknown camera distance config {type(cfg).__name__}; expected one of {CameraDistance}")


def sample_random_views(
    cfg: RandomCameraConfig, generator: torch.Generator, num_views: int = 1
) -> SampledViews:
    """Draw random cameras (all randomness from ``generator``, on CPU).

    With ``num_views == 1``: ``cfg.batch_size`` independent cameras. With ``num_views = V > 1`` (a
    multi-view prior such as MVDream): ``cfg.batch_size`` groups of V cameras, each group sharing one
    elevation, distance, field of view and target, its azimuths ``offset + k * 360 / V`` (k = 0..V-1)
    from one random ``offset`` (MVDream's fixed relative azimuths); groups are contiguous in the batch
    (``[group0 view0, group0 view1, ...]``), so ``B = batch_size * V``.
    """
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    n = cfg.batch_size
    azimuth = _uniform(*cfg.azimuth_range, n, generator)  # [n]
    # uniform on the sphere between the elevation bounds (not uniform in angle), as DreamFusion
    s0, s1 = (math.sin(math.radians(e)) for e in cfg.elevation_range)
    elevation = torch.rad2deg(torch.asin(_uniform(s0, s1, n, generator)))
    fov = _uniform(*cfg.fov_range, n, generator)
    distance = _distance(cfg.distance, fov, generator)
    target = torch.randn(n, 3, generator=generator) * cfg.jitter
    if num_views > 1:
        steps = torch.arange(num_views, dtype=azimuth.dtype) * (360.0 / num_views)  # [V]
        azimuth = (azimuth[:, None] + steps[None]).reshape(-1)  # [n * V]
        elevation, fov, distance = (v.repeat_interleave(num_views) for v in (elevation, fov, distance))
        target = target.repeat_interleave(num_views, dim=0)
    azimuth = (azimuth + 180.0) % 360.0 - 180.0
    position = spherical_to_position(azimuth, elevation, distance)
    c2w = look_at(position, target)
    focal = focal_from_fov(fov, cfg.resolution)
    c = torch.full_like(focal, cfg.resolution / 2)
    intrinsics = torch.stack([focal, focal, c, c], dim=-1)
    return SampledViews(Cameras(c2w, intrinsics, cfg.resolution, cfg.resolution), azimuth, elevation)


def orbit_cameras(
    num_views: int,
    resolution: int,
    distance: float,
    fov_deg: float,
    elevation_deg: float = 15.0,
    start_azimuth_deg: float = 0.0,
) -> SampledViews:
    """``num_views`` cameras evenly spaced in azimuth on a circle, looking at the origin."""
    azimuth = start_azimuth_deg + torch.arange(num_views, dtype=torch.float32) * (360.0 / num_views)
    azimuth = (azimuth + 180.0) % 360.0 - 180.0
    elevation = torch.full((num_views,), float(elevation_deg))
    position = spherical_to_position(azimuth, elevation, torch.full((num_views,), float(distance)))
    c2w = look_at(position, torch.zeros_like(position))
    focal = focal_from_fov(torch.full((num_views,), float(fov_deg)), resolution)
    c = torch.full_like(focal, resolution / 2)
    return SampledViews(
        Cameras(c2w, torch.stack([focal, focal, c, c], -1), resolution, resolution), azimuth, elevation
    )
