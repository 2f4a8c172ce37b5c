"""Chunked density-grid evaluation and the automatic surface threshold.

Conventions: world frame right-handed, +Z up, in the field's length units. Densities are volume
densities sigma >= 0 in 1/length, so the opacity of a step of length ``d`` through constant
density is ``1 - exp(-sigma * d)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from t23d.common.errors import ConfigError, T23dError

DensityFn = Callable[[Tensor], Tensor]
"""points [N, 3] float32 world coordinates -> volume density sigma [N] >= 0 (1/length)."""
ColorFn = Callable[[Tensor, Tensor], Tensor]
"""``(points [N, 3], view directions [N, 3]) -> rgb [N, 3]``: a field's colour as a camera sees it."""


@dataclass
class DensityGrid:
    """Densities sampled on a regular lattice of (near-)cubic voxels spanning an axis-aligned box."""

    values: np.ndarray
    """[Nx, Ny, Nz] float32 densities; ``values[i, j, k]`` is at ``origin + (i, j, k) * spacing``."""
    origin: np.ndarray
    """[3] float64 world position of sample ``[0, 0, 0]`` (the aabb minimum)."""
    spacing: np.ndarray
    """[3] float64 distance between neighbouring samples along x, y, z (world units)."""

    @property
    def voxel_size(self) -> float:
        """The mean voxel edge length (world units); the automatic threshold is ``ln 2 / voxel_size``."""
        return float(np.mean(self.spacing))

    def axes(self) -> list[np.ndarray]:
        """The samples' coordinates along x, y and z: ``[Nx]``, ``[Ny]``, ``[Nz]`` float64."""
        return [self.origin[k] + self.spacing[k] * np.arange(self.values.shape[k]) for k in range(3)]

    def heights(self, normal: np.ndarray, offset: float) -> np.ndarray:
        """``[Nx, Ny, Nz]`` float64: each sample's height ``normal . x - offset`` above a plane."""
        x, y, z = self.axes()
        return (
            (x * normal[0])[:, None, None]
            + (y * normal[1])[None, :, None]
            + (z * normal[2])[None, None, :]
            - offset
        )


def check_aabb(aabb: Tensor | np.ndarray) -> np.ndarray:
    """Return ``aabb`` as a float64 [2, 3] array (row 0 = min, row 1 = max) or raise ConfigError."""
    arr = np.asarray(aabb.detach().cpu() if isinstance(aabb, Tensor) else aabb, dtype=np.float64)
    if arr.shape != (2, 3) or not np.all(np.isfinite(arr)) or not np.all(arr[1] > arr[0]):
        raise ConfigError(
            f"aabb must be a finite [2, 3] array [[xmin, ymin, zmin], [xmax, ymax, zmax]] with max > min; "
            f"got {arr.tolist()}"
        )
    return arr


def grid_shape(aabb: np.ndarray, resolution: int) -> tuple[int, int, int]:
    """Samples per axis so that the longest axis has ``resolution`` cells and voxels are near-cubic."""
    extent = aabb[1] - aabb[0]  # [3]
    voxel = extent.max() / resolution
    cells = np.maximum(np.round(extent / voxel).astype(int), 1)
    return tuple(int(c) + 1 for c in cells)  # type: ignore[return-value]


def evaluate_density(density_fn: DensityFn, points: Tensor, chunk_size: int) -> np.ndarray:
    """``density_fn`` at ``points`` [N, 3] float32, in chunks of at most ``chunk_size`` under
    ``torch.no_grad()``; returns [N] float32 as returned (no clamping). Raises T23dError naming the
    counts when ``density_fn`` does not return one value per point."""
    out = np.empty(len(points), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, len(points), chunk_size):
            n = min(chunk_size, len(points) - s)
            sigma = torch.as_tensor(density_fn(points[s : s + n])).detach().reshape(-1).float().cpu()
            if sigma.numel() != n:
                raise T23dError(
                    f"density_fn returned {sigma.numel()} values for {n} points; "
                    "it must map points [N, 3] to densities [N]"
                )
            out[s : s + n] = sigma.numpy()
    return out


def evaluate_density_grid(
    density_fn: DensityFn,
    aabb: Tensor | np.ndarray,
    resolution: int,
    chunk_size: int = 262_144,
    *,
    signed: bool = False,
) -> DensityGrid:
    """Evaluate ``density_fn`` on a lattice over ``aabb`` with ``resolution`` cells on the longest axis.

    Points are sent in chunks of at most ``chunk_size`` under ``torch.no_grad()``, one z-slab at a time,
    so peak memory is bounded by the chunk (plus the float32 output grid). Non-finite densities are
    treated as 0 and negative ones are clamped to 0. With ``signed`` the function is a signed level
    (e.g. a negated SDF, positive inside) and is kept as is; NaN then counts as far outside.
    """
    if resolution < 2:
        raise ConfigError(f"resolution must be >= 2 grid cells per axis; got {resolution}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1; got {chunk_size}")
    box = check_aabb(aabb)
    nx, ny, nz = grid_shape(box, resolution)
    axes = [np.linspace(box[0, a], box[1, a], n) for a, n in enumerate((nx, ny, nz))]
    spacing = (box[1] - box[0]) / (np.array([nx, ny, nz]) - 1)
    values = np.empty((nx, ny, nz), dtype=np.float32)
    # One x-slab (ny * nz points) at a time, sent in chunks of <= chunk_size points.
    xs = torch.tensor(axes[0], dtype=torch.float32)
    yy, zz = torch.meshgrid(
        torch.tensor(axes[1], dtype=torch.float32), torch.tensor(axes[2], dtype=torch.float32), indexing="ij"
    )
    per_slab = ny * nz
    pts = torch.empty(per_slab, 3)  # [ny*nz, 3], reused: only the x column changes between slabs
    pts[:, 1] = yy.reshape(-1)
    pts[:, 2] = zz.reshape(-1)
    for i in range(nx):
        pts[:, 0] = xs[i]
        values[i] = evaluate_density(density_fn, pts, chunk_size).reshape(ny, nz)
    big = np.finfo(np.float32).max
    if signed:
        np.nan_to_num(values, copy=False, nan=-big, posinf=big, neginf=-big)
    else:
        np.nan_to_num(values, copy=False, nan=0.0, posinf=big, neginf=0.0)
        np.maximum(values, 0.0, out=values)
    return DensityGrid(values=values, origin=box[0].copy(), spacing=spacing)


def auto_threshold(step: float) -> float:
    """The density at which one step of length ``step`` reaches 50 % opacity: ``sigma* = ln 2 / step``.

    ``1 - exp(-sigma* * step) = 0.5``. ``step`` is the renderer's sample spacing when the caller knows
    it (a field's densities mean what they mean at the step it was trained with, and the surface then
    does not move with the extraction resolution), else the grid's voxel size. No data-dependent
    refinement is applied: a field whose density never reaches the level gets a clear error with a
    suggested override instead of a silently guessed level.
    """
    return math.log(2.0) / step


def suggest_threshold(values: np.ndarray) -> float | None:
    """A threshold that does cross the sampled densities (half the maximum), or None if all are equal."""
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        return None
    return lo + 0.5 * (hi - lo)


def _checked_plane(plane: np.ndarray, what: str) -> tuple[Tensor, float]:
    """``plane`` ``(nx, ny, nz, d)`` as (float32 unit normal [3], offset d); ConfigError naming ``what``
    unless it is 4 finite numbers with a unit normal."""
    p = np.asarray(plane, dtype=np.float64).reshape(-1)
    if p.shape != (4,) or not np.all(np.isfinite(p)) or abs(float(np.linalg.norm(p[:3])) - 1.0) > 1e-6:
        raise ConfigError(
            f"{what} must be 4 finite numbers (nx, ny, nz, d) with a unit normal; got {p.tolist()}"
        )
    return torch.tensor(p[:3], dtype=torch.float32), float(p[3])


def extend_to_support(sdf_fn: DensityFn, cut: np.ndarray, support_offset: float) -> DensityFn:
    """``sdf_fn`` above the ``cut`` plane, and below it its section on the cut continued straight down
    to the support plane ``n . x = support_offset`` (same normal ``n`` as the cut), empty below that.

    A photo run cuts its asset a little above the table it stands on, to leave the learnt table out;
    this puts the asset's base back on the table: the object's outline where the cut meets it, extruded
    along the normal (a prism), closed by a flat cap on the support plane. Above the cut nothing changes.
    """
    normal, offset = _checked_plane(cut, "cut plane")
    drop = offset - float(support_offset)
    if not (math.isfinite(drop) and drop >= 0):
        raise ConfigError(f"the support plane must lie below the cut plane; got a drop of {drop}")

    def extended(points: Tensor) -> Tensor:
        n = normal.to(points.device, points.dtype)
        h = points @ n - offset  # [N] height above the cut
        below = h < 0
        on_cut = torch.where(below[:, None], points - h[:, None] * n, points)
        s = sdf_fn(on_cut)
        return torch.maximum(s, -(h + drop).to(s.device, s.dtype))

    return extended


def lifted_to_plane(color_fn: ColorFn, plane: np.ndarray, lift: float) -> ColorFn:
    """``color_fn`` that looks up points lying less than ``lift`` above ``plane`` (or below it) at their
    projection ``lift`` above it, along the plane's normal; other points as they are.

    The base :func:`extend_to_support` adds below the cut holds no colour of its own in the field (which
    has the table and the blend into it there): coloured from the section just above the cut, the prism's
    wall continues the base's colours straight down, as its shape does. ``plane``: ``(nx, ny, nz, d)``,
    unit normal, the function's frame."""
    normal, offset = _checked_plane(plane, "cut plane")

    def lifted(points: Tensor, directions: Tensor) -> Tensor:
        n = normal.to(points.device, points.dtype)
        rise = (offset + float(lift) - points @ n).clamp(min=0.0)  # [N] how far below the lookup height
        return color_fn(points + rise[:, None] * n, directions)

    return lifted


def unblend_support(sdf_fn: DensityFn, plane: np.ndarray, radius: float) -> DensityFn:
    """``sdf_fn`` with a smooth blend into the support ``plane`` undone: ``sdf + max(radius - h, 0)**2 /
    (4 radius)`` where ``h = n . x - d`` is the height above the plane (``h`` clamped at 0 below it).

    A learnt SDF rounds the concave corner where an object stands on its table into a fillet, which the
    asset keeps above the cut. If the learnt surface is the smooth union of object and table,
    ``smin(o, h) = min(o, h) - max(radius - |o - h|, 0)**2 / (4 radius)`` (the quadratic smooth minimum),
    then the object's own surface ``o = 0`` is where ``sdf = -max(radius - h, 0)**2 / (4 radius)``: the
    zero level set of the returned function. Above ``h = radius`` nothing changes; the table itself
    (``sdf ~ h``) no longer crosses zero anywhere. ``plane``: ``[4]`` ``(nx, ny, nz, d)``, unit normal,
    the functions' frame; ``radius`` > 0 in the same units.
    """
    normal, offset = _checked_plane(plane, "support plane")
    if not (math.isfinite(radius) and radius > 0):
        raise ConfigError(f"support fillet radius must be a finite number > 0; got {radius!r}")

    def unblended(points: Tensor) -> Tensor:
        s = sdf_fn(points)
        h = (points @ normal.to(points.device) - offset).to(s.device, s.dtype)
        gap = (radius - h.clamp(min=0.0)).clamp(min=0.0)
        return s + gap * gap / (4.0 * radius)

    return unblended


def cut_below_plane(
    density_fn: DensityFn, sdf_fn: DensityFn | None, plane: np.ndarray
) -> tuple[DensityFn, DensityFn | None]:
    """``density_fn`` and ``sdf_fn`` with everything on the far side of ``plane`` removed.

    ``plane``: ``[4]`` ``(nx, ny, nz, d)`` with a unit normal, in the functions' frame: the side
    ``n . x > d`` is kept (what stands on a table or floor), the other side is empty (density 0). The
    SDF becomes the CSG intersection ``max(sdf, d - n . x)``, so a surface cut by the plane is closed
    by a flat cap on it (the object's underside, which no photo saw).
    """
    normal, offset = _checked_plane(plane, "cut plane")

    def height(points: Tensor) -> Tensor:
        return points @ normal.to(points.device) - offset  # [N]

    def cut_density(points: Tensor) -> Tensor:
        sigma = density_fn(points)
        return torch.where(height(points).to(sigma.device) > 0, sigma, torch.zeros_like(sigma))

    if sdf_fn is None:
        return cut_density, None
    inner_sdf = sdf_fn

    def cut_sdf(points: Tensor) -> Tensor:
        s = inner_sdf(points)
        return torch.maximum(s, -height(points).to(s.device, s.dtype))

    return cut_density, cut_sdf
