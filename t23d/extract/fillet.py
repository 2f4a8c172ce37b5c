"""Estimating the fillet a learnt SDF rounds into the support plane an object stands on.

A photo run's SDF, learnt without masks, blends the object into the table it stands on: the concave
corner where they meet becomes a fillet, which the asset keeps above the cut plane.
:func:`t23d.extract.grid.unblend_support` undoes a quadratic smooth union of radius ``R``; this module
estimates ``R`` from the learnt SDF itself (``data.support_fillet_radius: auto``).

The cue is the foot: the learnt surface's section at the cut height reaching out beyond the wall above
it. For the quadratic smooth union of an object ``f`` with the table ``h``, the zero set near the corner
is ``sqrt(f) + sqrt(h) = sqrt(R)`` (both branches of ``smin``), so beside a vertical wall the section at
height ``h < R`` stands ``(sqrt(R) - sqrt(h))**2`` out from it and ``R = (sqrt(h) + sqrt(growth))**2``.
Each point of the section gives a growth: the largest SDF value straight above it, up to ``reach`` higher
(where the wall is the object's own again, the SDF there is the distance to it). The median over the
section ignores a fillet along only part of the outline; the median of the radii of sections at the cut
height and a little above it ignores a step at one height (a bump of the table up to the cut), which a
fillet, giving the same radius at every height below it, is not.

Conventions: the functions' frame (a photo run's normalised frame, in its length units); ``plane`` is
``(nx, ny, nz, d)`` with a unit normal, and a point's height above it is ``h = n . x - d``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from t23d.common.errors import ConfigError
from t23d.extract.grid import DensityFn, _checked_plane


@dataclass
class FilletEstimate:
    """What :func:`estimate_support_fillet` measured (written to ``export.json`` → ``support_fillet``)."""

    radius: float
    """The estimated smooth-union radius ``R`` (length units); 0 when no fillet was found."""
    heights: list[float]
    """Heights above the plane where the section was measured: the cut height and a little above."""
    median_growths: list[float | None]
    """Per height: the median over its section's points of how far they stand out from the wall above
    them (length units); None where the section had too few points."""
    radii: list[float | None]
    """Per height: the radius of the fillet that stands out that far from a vertical wall."""
    num_points: list[int]
    """Per height: the section's points (zero crossings on the sampling grid)."""
    reason: str
    """Why the radius is what it is, in words (logged)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


def plane_frame(normal: Tensor) -> tuple[Tensor, Tensor]:
    """Two unit vectors ``[3]`` spanning the plane with unit ``normal`` ``[3]`` (with it, right-handed)."""
    helper = torch.tensor([1.0, 0.0, 0.0]) if abs(float(normal[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    a = torch.linalg.cross(normal, helper)
    a = a / a.norm()
    return a, torch.linalg.cross(normal, a)


def evaluate_sdf(sdf_fn: DensityFn, points: Tensor, chunk_size: int = 65536) -> Tensor:
    """``sdf_fn`` at ``points`` ``[..., 3]`` in chunks, float32 on the CPU, shape ``[...]``."""
    flat = points.reshape(-1, 3)
    with torch.no_grad():
        parts = [sdf_fn(flat[i : i + chunk_size]).float().cpu() for i in range(0, len(flat), chunk_size)]
    return (torch.cat(parts) if parts else torch.zeros(0)).reshape(points.shape[:-1])


def section_points(
    sdf_fn: DensityFn, plane: np.ndarray, aabb: np.ndarray, height: float, spacing: float
) -> Tensor:
    """Points ``[K, 3]`` of the zero set's section at ``height`` above ``plane``, inside ``aabb``.

    A square grid of ``spacing`` on the lifted plane covers the box's shadow on it; each grid edge whose
    ends (both inside ``aabb [2, 3]``) differ in sign gives one point, by linear interpolation.
    """
    normal, offset = _checked_plane(plane, "support plane")
    a, b = plane_frame(normal)
    box = torch.as_tensor(np.asarray(aabb, dtype=np.float32))
    corners = torch.stack(torch.meshgrid(*box.T, indexing="ij"), -1).reshape(-1, 3)  # [8, 3]
    ua, ub = corners @ a, corners @ b
    u = torch.arange(float(ua.min()), float(ua.max()) + spacing, spacing)
    v = torch.arange(float(ub.min()), float(ub.max()) + spacing, spacing)
    gu, gv = torch.meshgrid(u, v, indexing="ij")
    grid = gu[..., None] * a + gv[..., None] * b + (offset + height) * normal  # [U, V, 3]
    values = evaluate_sdf(sdf_fn, grid)  # [U, V]
    values[~((grid >= box[0]) & (grid <= box[1])).all(-1)] = float("nan")
    found = []
    for s0, s1, p0, p1 in (
        (values[:-1], values[1:], grid[:-1], grid[1:]),
        (values[:, :-1], values[:, 1:], grid[:, :-1], grid[:, 1:]),
    ):
        crossing = (s0 < 0) & (s1 >= 0) | (s0 >= 0) & (s1 < 0)  # NaN (outside the box) never crosses
        t = (s0[crossing] / (s0[crossing] - s1[crossing]))[:, None]
        found.append(p0[crossing] + t * (p1[crossing] - p0[crossing]))
    return torch.cat(found)


def foot_growth(sdf_fn: DensityFn, points: Tensor, normal: Tensor, rise: float, step: float) -> Tensor:
    """``[K]``: the largest SDF value straight above each of ``points`` ``[K, 3]``, over heights ``step``
    to ``rise`` above it: how far the point stands out from the surface above it (0 on a vertical wall,
    the fillet's reach beside one, negative under an overhang)."""
    lifts = torch.arange(step, rise + 0.5 * step, step)  # [L]
    above = points[:, None, :] + lifts[None, :, None] * normal  # [K, L, 3]
    return evaluate_sdf(sdf_fn, above).amax(dim=1)


def radius_from_growth(growth: float, height: float) -> float:
    """The smooth-union radius whose fillet stands ``growth`` out from a vertical wall at ``height``:
    ``(sqrt(height) + sqrt(growth))**2`` (the zero set ``sqrt(f) + sqrt(h) = sqrt(R)``)."""
    return (math.sqrt(height) + math.sqrt(max(growth, 0.0))) ** 2


def median_growth_at(
    sdf_fn: DensityFn, plane: np.ndarray, aabb: np.ndarray, height: float, spacing: float, reach: float
) -> tuple[float | None, int]:
    """The median :func:`foot_growth` of the section at ``height`` (None without points), and its size."""
    normal, _ = _checked_plane(plane, "support plane")
    points = section_points(sdf_fn, plane, aabb, height, spacing)
    if len(points) == 0:
        return None, 0
    return float(foot_growth(sdf_fn, points, normal, reach, 2.0 * spacing).median()), len(points)


def estimate_support_fillet(
    sdf_fn: DensityFn,
    plane: np.ndarray,
    aabb: np.ndarray,
    height: float,
    *,
    band: float = 0.03,
    spacing: float = 0.005,
    reach: float = 0.2,
    min_growth: float = 0.01,
    min_points: int = 16,
) -> FilletEstimate:
    """Estimate the radius of the fillet that ``sdf_fn`` rounds into ``plane`` from its foot at ``height``
    and up to ``band`` above it.

    ``sdf_fn``: points ``[N, 3]`` -> signed distance ``[N]``. ``plane``: ``[4]`` support plane, unit
    normal. ``aabb``: ``[2, 3]`` region the object stands in. ``height``: the lowest section, above the
    plane (a photo run's cut height: the asset starts there).

    Each section (every 0.01 from ``height`` to ``height + band``) gives a radius from its median growth
    (:func:`radius_from_growth`); a fillet gives the same radius at every height below it, while a bump
    of the table or a step at one height does not, so the estimate is the median over the heights. A
    single height is fragile: on a monkey head whose table rises in bumps up to the cut, the foot read
    0.33 at 0.05, 0.15 at 0.06 and 0.10 at 0.07. ``min_growth``: where the lowest section (the asset's
    foot) stands out less than this, there is no fillet, radius 0: the learnt surface's noise (a
    sharp-cornered box measured 0.005; a fillet of radius 0.1 stands out 0.0086 at height 0.05).
    ``min_points``: a section with fewer points does not count.

    ``spacing``: the sampling grid's step on the plane. ``reach``: how far above a section the wall is
    looked for. The SDF above a foot point is the distance to the wall only from ``R + growth`` up, so
    larger fillets read short (from height 0.05 with reach 0.2: exact to R = 0.2, 0.3 reads about 0.27);
    a longer reach lets a wall that leans in a little add to the growth (a box's median growth went from
    0.005 at reach 0.2 to 0.009 at 0.45). Every point of a section counts, a bump of the table beside
    the object too. The model is a vertical wall: a contact that curves away beneath the object (a
    sphere on its pole) reads short, one that flares out (a cone on its base) reads long.
    """
    if not (math.isfinite(height) and height > 0):
        raise ConfigError(f"the fillet estimate's height must be a number > 0; got {height!r}")
    if not (spacing > 0 and reach > 0 and band >= 0):
        raise ConfigError(
            "the fillet estimate needs spacing > 0, reach > 0 and band >= 0; "
            f"got {spacing!r}, {reach!r}, {band!r}"
        )
    heights = [height + 0.01 * i for i in range(int(round(band / 0.01)) + 1)]
    measured = [median_growth_at(sdf_fn, plane, aabb, h, spacing, reach) for h in heights]
    growths = [g if n >= min_points else None for g, n in measured]
    radii = [None if g is None else radius_from_growth(g, h) for g, h in zip(growths, heights)]
    record = dict(heights=heights, median_growths=growths, radii=radii, num_points=[n for _, n in measured])
    if growths[0] is None:
        reason = f"fewer than {min_points} section points at height {height:.3g}"
        return FilletEstimate(radius=0.0, reason=reason, **record)
    where = f"the foot stands out {_listed(growths)} at heights {heights[0]:.3g}-{heights[-1]:.3g}"
    if growths[0] < min_growth:
        reason = f"no fillet: {where} (under {min_growth:.3g} at the lowest)"
        return FilletEstimate(radius=0.0, reason=reason, **record)
    radius = float(np.median([r for r in radii if r is not None]))
    return FilletEstimate(radius=radius, reason=f"{where}: radii {_listed(radii)}", **record)


def _listed(values: list[float | None]) -> str:
    """``0.32, 0.19, -`` for a log line."""
    return ", ".join("-" if v is None else f"{v:.3g}" for v in values)
