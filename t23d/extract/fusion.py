"""Depth fusion: a truncated signed distance (TSDF) fused from depth maps rendered by the field.

An alternative to the density level set for density fields (``ExportConfig.extraction = "tsdf"``),
as nerfstudio's ``ns-export tsdf``: the surface is where the field's *renders* terminate, so a foggy
or noisy interior never becomes geometry, and space any view sees through (its pixel is background)
is carved away. The fused grid is read through a trilinear ``sdf_fn``, so the rest of extraction
(cavity filling, floater removal, hidden faces, decimation, orientation) is the SDF path of
:func:`t23d.extract.mesh.extract_mesh`.

For each view and each lattice point ``x`` at distance ``r`` from the camera, projecting to a pixel
with rendered opacity ``a`` and expected termination distance ``d``:

- ``a >= min_opacity``: the observation ``clamp(d - r, -trunc, trunc)`` is averaged in, unless
  ``d - r < -trunc`` (far behind the surface: occluded, no information);
- ``a < min_opacity``: the pixel sees background, so ``x`` is empty space: ``+trunc`` is averaged in.

Points no view observes stay at ``+trunc`` (outside). Conventions: world frame +Z up; cameras are
``(c2w [4, 4] OpenGL, intrinsics [fx, fy, cx, cy], H, W)`` with pixel centres at +0.5; positive
distances are outside.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from t23d.common.errors import ConfigError
from t23d.extract.grid import check_aabb, grid_shape

log = logging.getLogger(__name__)

Camera = tuple[np.ndarray, np.ndarray, int, int]
"""(c2w [4, 4] OpenGL camera-to-world, intrinsics [fx, fy, cx, cy], H, W)."""

DepthFn = Callable[[np.ndarray, np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]
"""(c2w, intrinsics, H, W) -> (termination distance along each pixel's ray [H, W], opacity [H, W])."""


@dataclass
class FusedTSDF:
    """A fused truncated signed distance on a lattice over a box."""

    values: np.ndarray
    """[Nx, Ny, Nz] float32 signed distance (world units, positive outside), in [-trunc, trunc]."""
    weights: np.ndarray
    """[Nx, Ny, Nz] float32 number of observations per lattice point."""
    origin: np.ndarray
    """[3] world position of ``values[0, 0, 0]``."""
    spacing: np.ndarray
    """[3] lattice spacing along x, y, z."""
    truncation: float
    """The truncation distance (world units)."""

    def sdf_fn(self) -> Callable[[Tensor], Tensor]:
        """``points [N, 3] -> signed distance [N]`` by trilinear interpolation (``+trunc`` off the lattice)."""
        from scipy.ndimage import map_coordinates

        def sdf(points: Tensor) -> Tensor:
            p = points.detach().cpu().double().numpy()
            idx = ((p - self.origin) / self.spacing).T  # [3, N] lattice coordinates
            out = map_coordinates(self.values, idx, order=1, mode="constant", cval=self.truncation)
            return torch.from_numpy(out.astype(np.float32))

        return sdf


def sphere_cameras(aabb: np.ndarray, num_views: int, size: int, fov_deg: float = 40.0) -> list[Camera]:
    """``num_views`` cameras on a Fibonacci sphere around the box, looking at its centre and seeing all of it."""
    from t23d.render.mesh import look_at

    box = check_aabb(aabb)
    centre = box.mean(axis=0)
    radius = 0.5 * float(np.linalg.norm(box[1] - box[0]))
    dist = 1.05 * radius / np.sin(np.radians(fov_deg) / 2.0)
    focal = 0.5 * size / np.tan(np.radians(fov_deg) / 2.0)
    intr = np.array([focal, focal, size / 2.0, size / 2.0])
    golden = np.pi * (3.0 - np.sqrt(5.0))
    cams: list[Camera] = []
    for k in range(num_views):
        z = 1.0 - 2.0 * (k + 0.5) / num_views
        r = np.sqrt(max(0.0, 1.0 - z * z))
        eye = centre + dist * np.array([r * np.cos(golden * k), r * np.sin(golden * k), z])
        up = (0.0, 0.0, 1.0) if abs(z) < 0.99 else (0.0, 1.0, 0.0)
        cams.append((look_at(eye, centre, up), intr.copy(), int(size), int(size)))
    return cams


def fuse_tsdf(
    depth_fn: DepthFn,
    cameras: Sequence[Camera],
    aabb: Tensor | np.ndarray,
    resolution: int,
    truncation_voxels: float = 4.0,
    min_opacity: float = 0.5,
) -> FusedTSDF:
    """Fuse the depth maps ``depth_fn`` renders at ``cameras`` into a TSDF over ``aabb``.

    ``resolution`` cells along the longest axis (as the density grid of extraction); the truncation is
    ``truncation_voxels`` voxels. See the module docstring for the update rule.
    """
    if not cameras:
        raise ConfigError("tsdf fusion needs at least one camera")
    if truncation_voxels <= 0 or not 0.0 < min_opacity < 1.0:
        raise ConfigError(
            f"tsdf: truncation_voxels must be > 0 and min_opacity in (0, 1); got {truncation_voxels}, {min_opacity}"
        )
    box = check_aabb(aabb)
    nx, ny, nz = grid_shape(box, resolution)
    spacing = (box[1] - box[0]) / (np.array([nx, ny, nz]) - 1)
    trunc = float(truncation_voxels * spacing.mean())
    values = np.full((nx, ny, nz), trunc, dtype=np.float32)
    weights = np.zeros((nx, ny, nz), dtype=np.float32)
    xs = box[0, 0] + spacing[0] * np.arange(nx)
    yy, zz = np.meshgrid(
        box[0, 1] + spacing[1] * np.arange(ny), box[0, 2] + spacing[2] * np.arange(nz), indexing="ij"
    )
    slab = np.stack([np.zeros_like(yy), yy, zz], -1).reshape(-1, 3)  # [ny*nz, 3]
    for c2w, intr, height, width in cameras:
        depth, opacity = depth_fn(c2w, intr, height, width)
        depth = np.asarray(depth, dtype=np.float64)
        opacity = np.asarray(opacity, dtype=np.float64)
        c2w = np.asarray(c2w, dtype=np.float64)
        fx, fy, cx, cy = (float(v) for v in np.asarray(intr).reshape(-1)[:4])
        rot, origin = c2w[:3, :3], c2w[:3, 3]
        for i, x in enumerate(xs):
            slab[:, 0] = x
            rel = slab - origin  # [P, 3]
            cam = rel @ rot  # camera frame (OpenGL: looks down -Z, +Y up)
            front = -cam[:, 2]
            ok = front > 1e-6
            u = np.full(len(slab), -1.0)
            v = np.full(len(slab), -1.0)
            u[ok] = fx * cam[ok, 0] / front[ok] + cx
            v[ok] = -fy * cam[ok, 1] / front[ok] + cy
            col, row = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
            ok &= (col >= 0) & (col < width) & (row >= 0) & (row < height)
            if not ok.any():
                continue
            a = opacity[row[ok], col[ok]]
            sd = depth[row[ok], col[ok]] - np.linalg.norm(rel[ok], axis=1)
            seen_surface = a >= min_opacity
            obs = np.where(seen_surface, np.clip(sd, -trunc, trunc), trunc)
            use = ~seen_surface | (sd > -trunc)
            flat = np.flatnonzero(ok)[use]
            vals, wts = values[i].reshape(-1), weights[i].reshape(-1)
            vals[flat] = (vals[flat] * wts[flat] + obs[use]) / (wts[flat] + 1.0)
            wts[flat] += 1.0
    observed = float((weights > 0).mean())
    log.info(
        "fused %d depth maps into a %dx%dx%d TSDF (%.0f%% of points observed)",
        len(cameras),
        nx,
        ny,
        nz,
        100 * observed,
    )
    return FusedTSDF(values, weights, box[0].copy(), spacing, trunc)
