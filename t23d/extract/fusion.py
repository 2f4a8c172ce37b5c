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

Two implementations of that rule (``backend``): open3d's ``UniformTSDFVolume`` (C++, multi-threaded,
~10x faster; used when open3d imports) and a numpy one (no extra dependency). open3d integrates
z-depth maps and skips pixels without depth, so background pixels are given a depth behind the whole
box: every lattice point in front of it then receives ``+trunc``, the carving rule above. open3d's
signed distance is along the optical axis, numpy's along the ray; the two agree within the projective
error both share (``tests/extract/test_fusion.py``).
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
    backend: str = "auto",
) -> FusedTSDF:
    """Fuse the depth maps ``depth_fn`` renders at ``cameras`` into a TSDF over ``aabb``.

    ``resolution`` cells along the longest axis (as the density grid of extraction); the truncation is
    ``truncation_voxels`` voxels. See the module docstring for the update rule and the backends
    ("auto": open3d when it imports, else numpy; "open3d"; "numpy").
    """
    if not cameras:
        raise ConfigError("tsdf fusion needs at least one camera")
    if truncation_voxels <= 0 or not 0.0 < min_opacity < 1.0:
        raise ConfigError(
            f"tsdf: truncation_voxels must be > 0 and min_opacity in (0, 1); got {truncation_voxels}, {min_opacity}"
        )
    box = check_aabb(aabb)
    if resolve_tsdf_backend(backend) == "open3d":
        return _fuse_open3d(depth_fn, cameras, box, resolution, truncation_voxels, min_opacity)
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


def resolve_tsdf_backend(backend: str) -> str:
    """Map "auto" to "open3d" or "numpy"; check that an explicit "open3d" imports."""
    from t23d.render.mesh import resolve_open3d_option

    return resolve_open3d_option("tsdf_backend", backend, "numpy", "fusing depth with numpy")


#: OpenGL camera axes (+Y up, looking down -Z) to OpenCV's (+Y down, looking down +Z).
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def _fuse_open3d(
    depth_fn: DepthFn,
    cameras: Sequence[Camera],
    box: np.ndarray,
    resolution: int,
    truncation_voxels: float,
    min_opacity: float,
) -> FusedTSDF:
    """:func:`fuse_tsdf` with open3d's ``UniformTSDFVolume``: a cube of ``resolution + 1`` voxels per side
    whose voxel centres are the lattice points of extraction's grid (``box[0] + i * spacing``), so
    extraction reads the fused values where they were computed rather than interpolated between them."""
    import open3d as o3d

    voxel = float((box[1] - box[0]).max()) / resolution
    trunc = float(truncation_voxels * voxel)
    side = resolution + 1
    volume = o3d.pipelines.integration.UniformTSDFVolume(
        length=side * voxel,
        resolution=side,
        sdf_trunc=trunc,
        color_type=o3d.pipelines.integration.TSDFVolumeColorType.NoColor,
        origin=(box[0] - 0.5 * voxel).reshape(3, 1).astype(np.float64),
    )
    corners = np.array([[box[i, 0], box[j, 1], box[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    for c2w, intr, height, width in cameras:
        depth, opacity = depth_fn(c2w, intr, height, width)
        c2w = np.asarray(c2w, dtype=np.float64)
        fx, fy, cx, cy = (float(v) for v in np.asarray(intr).reshape(-1)[:4])
        # ray distance -> z-depth; background pixels: a depth behind every point of the box
        u = (np.arange(width) + 0.5 - cx) / fx
        v = (np.arange(height) + 0.5 - cy) / fy
        z = np.asarray(depth, dtype=np.float64) / np.sqrt(1.0 + u[None, :] ** 2 + v[:, None] ** 2)
        behind = float(np.linalg.norm(corners - c2w[:3, 3], axis=1).max()) + 2.0 * trunc
        z = np.where(np.asarray(opacity) >= min_opacity, z, behind).astype(np.float32)
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.zeros((height, width, 3), np.uint8)),
            o3d.geometry.Image(np.ascontiguousarray(z)),
            depth_scale=1.0,
            depth_trunc=2.0 * behind,
            convert_rgb_to_intensity=False,
        )
        # open3d puts pixel centres at integer coordinates, t23d at +0.5
        intrinsic = o3d.camera.PinholeCameraIntrinsic(int(width), int(height), fx, fy, cx - 0.5, cy - 0.5)
        volume.integrate(rgbd, intrinsic, np.linalg.inv(c2w @ _GL_TO_CV))
    tsdf = np.asarray(volume.extract_volume_tsdf(), dtype=np.float32)  # [res^3, (tsdf / trunc, weight)]
    shape = (side,) * 3
    weights = tsdf[:, 1].reshape(shape)
    values = np.where(weights > 0, tsdf[:, 0].reshape(shape) * trunc, trunc).astype(np.float32)
    log.info(
        "fused %d depth maps into a %d^3 TSDF with open3d (%.0f%% of voxels observed)",
        len(cameras),
        side,
        100 * float((weights > 0).mean()),
    )
    return FusedTSDF(values, weights, box[0].copy(), np.full(3, voxel), trunc)
