"""The object's footprint on its support plane: how far the asset's region must reach along the table.

A photo run without masks meshes the object inside its region, a box from the sparse points that stand
above the support plane (:func:`t23d.data.normalise.compute_normalisation`). The points of a base that
spreads out low over the table (a candlestick's flared foot, a lamp's disc, a plinth's moulding) lie
within the plane's tolerance, so they count as table, and the box cuts the base off square.

:func:`grow_over_support` widens the box to what the learnt SDF itself holds just above the cut: on
slices parallel to the plane, the solid that is connected (within the slice) to the object's own section
inside the box. The table is below the cut, so it is not on these slices; another object standing on the
table is not connected to this one there, so it stays out.

Conventions as in :mod:`t23d.extract.fillet`: the field's normalised frame; ``plane`` is
``(nx, ny, nz, d)`` with a unit normal, and a point's height above it is ``n . x - d``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from t23d.extract.fillet import evaluate_sdf, plane_frame
from t23d.extract.grid import DensityFn, _checked_plane, check_aabb

#: Heights above the cut (normalised units) of the slices the footprint is read on.
SLICE_HEIGHTS = (0.01, 0.03)


@dataclass
class FootprintGrowth:
    """What :func:`grow_over_support` found (written to ``export.json`` → ``region``)."""

    box: list[list[float]]
    """The region's box after growing ``[[min], [max]]`` (normalised frame)."""
    grown: bool
    """Whether the box grew: the solid just above the cut reaches beyond it."""
    spacing: float
    """Grid spacing on the slices (normalised units)."""
    slice_heights: list[float]
    """Heights above the plane of the slices read."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


def _slice_solid(
    sdf_fn: DensityFn, plane: np.ndarray, height: float, spacing: float, bound: float
) -> tuple[np.ndarray, np.ndarray]:
    """Grid points ``[A, B, 3]`` of the plane lifted by ``height`` over the cube ``[-bound, bound]^3``, and
    whether each is solid: inside the cube, with the SDF negative there."""
    normal = torch.tensor(plane[:3], dtype=torch.float32)
    u, v = plane_frame(normal)
    half = bound * float(np.sqrt(3.0))  # the cube's shadow on any plane through it fits in this square
    ticks = torch.arange(-half, half + 1e-9, spacing)
    a, b = torch.meshgrid(ticks, ticks, indexing="ij")
    origin = normal * float(plane[3] + height)
    pts = origin + a[..., None] * u + b[..., None] * v  # [A, B, 3]
    in_cube = (pts.abs() <= bound).all(-1)
    solid = torch.zeros(in_cube.shape, dtype=torch.bool)
    if in_cube.any():
        solid[in_cube] = evaluate_sdf(sdf_fn, pts[in_cube]) < 0
    return pts.numpy(), solid.numpy()


def connected_section(
    sdf_fn: DensityFn, plane: np.ndarray, aabb: np.ndarray, height: float, spacing: float, bound: float
) -> tuple[np.ndarray, np.ndarray]:
    """The object's section ``height`` above ``plane``: grid points ``[A, B, 3]`` (:func:`_slice_solid`) and
    whether each is in the solid connected (8-neighbourhood, within the slice) to a solid cell inside
    ``aabb [2, 3]``."""
    from scipy import ndimage

    pts, solid = _slice_solid(sdf_fn, plane, height, spacing, bound)
    if not solid.any():
        return pts, solid
    labels, _ = ndimage.label(solid, structure=np.ones((3, 3), dtype=bool))
    in_box = ((pts >= aabb[0]) & (pts <= aabb[1])).all(-1) & solid  # labels > 0 there
    return pts, np.isin(labels, np.unique(labels[in_box]))


def grow_over_support(
    sdf_fn: DensityFn,
    plane: np.ndarray,
    aabb: np.ndarray,
    lift: float,
    spacing: float = 1.0 / 128,
    bound: float = 1.0,
    heights: tuple[float, ...] = SLICE_HEIGHTS,
) -> FootprintGrowth:
    """The region ``aabb [2, 3]`` widened along the support ``plane`` to the object's learnt footprint.

    For each of ``heights`` above the cut (the plane lifted by ``lift``), the SDF is sampled on a square
    grid of ``spacing`` over the plane inside the field's cube ``[-bound, bound]^3``; the solid cells
    connected (8-neighbourhood, within the slice) to a solid cell inside ``aabb`` are the footprint. The
    box grows to hold them (one cell of margin), clipped to the cube, and never shrinks.
    """
    box = check_aabb(aabb).copy()
    normal_t, offset = _checked_plane(plane, "support plane")
    plane = np.array([*normal_t.tolist(), offset], dtype=np.float64)
    if not (spacing > 0 and bound > 0):
        raise ValueError(f"spacing and bound must be positive; got {spacing}, {bound}")
    lo, hi = box[0].copy(), box[1].copy()
    used = []
    for dh in heights:
        h = float(lift) + float(dh)
        used.append(round(h, 6))
        pts, keep = connected_section(sdf_fn, plane, box, h, spacing, bound)
        if not keep.any():
            continue
        foot = pts[keep]
        lo = np.minimum(lo, foot.min(0) - spacing)
        hi = np.maximum(hi, foot.max(0) + spacing)
    grown_box = np.clip(np.stack([lo, hi]), -bound, bound)
    grown_box = np.stack([np.minimum(grown_box[0], box[0]), np.maximum(grown_box[1], box[1])])
    grown = bool(np.any(grown_box[0] < box[0] - 1e-9) or np.any(grown_box[1] > box[1] + 1e-9))
    return FootprintGrowth(grown_box.tolist(), grown, float(spacing), used)
