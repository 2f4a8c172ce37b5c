"""Cameras: pinhole intrinsics and camera-to-world poses, random SDS cameras and orbits.

Conventions: world +Z up. ``c2w`` is a 4x4 camera-to-world matrix in the **OpenGL** convention
(the camera looks down its -Z axis, +Y up, +X right). Intrinsics ``[fx, fy, cx, cy]`` are in pixels
with pixel centres at ``+0.5``. Spherical camera positions: ``azimuth`` in degrees around +Z with
azimuth 0 on the **-Y** axis looking at the object's front (so the front faces -Y in the world and
+Z in glTF, as glTF expects) and azimuth 90 on +X; ``elevation`` in degrees above the XY plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
class RandomCameraConfig:
    """Random cameras around the origin for score distillation (DreamFusion's sampling)."""

    resolution: int = 64
    """Rendered image width and height in pixels."""
    batch_size: int = 1
    """Views per optimisation step."""
    azimuth_range: tuple[float, float] = (-180.0, 180.0)
    """Azimuth range in degrees (0 = front, on -Y)."""
    elevation_range: tuple[float, float] = (-10.0, 45.0)
    """Elevation range in degrees above the XY plane."""
    distance_range: tuple[float, float] = (1.5, 2.0)
    """Camera distance from the origin in world units."""
    fov_range: tuple[float, float] = (40.0, 70.0)
    """Vertical field of view range in degrees."""
    jitter: float = 0.0
    """Std-dev of random offsets (world units) of the look-at target, for robustness."""
    eval_distance: float = 1.75
    """Distance used for previews and evaluation views."""
    eval_fov: float = 55.0
    """Field of view (degrees) of previews and evaluation views."""
    eval_elevation: float = 15.0
    """Elevation (degrees) of previews and evaluation views."""


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


def sample_random_views(cfg: RandomCameraConfig, generator: torch.Generator) -> SampledViews:
    """Draw ``cfg.batch_size`` random cameras (all randomness from ``generator``, on CPU)."""
    n = cfg.batch_size
    azimuth = _uniform(*cfg.azimuth_range, n, generator)
    azimuth = (azimuth + 180.0) % 360.0 - 180.0
    # uniform on the sphere between the elevation bounds (not uniform in angle), as DreamFusion
    s0, s1 = (math.sin(math.radians(e)) for e in cfg.elevation_range)
    elevation = torch.rad2deg(torch.asin(_uniform(s0, s1, n, generator)))
    distance = _uniform(*cfg.distance_range, n, generator)
    fov = _uniform(*cfg.fov_range, n, generator)
    target = torch.randn(n, 3, generator=generator) * cfg.jitter
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
