"""How far the object reaches beyond its region's box: the learnt solid connected to it, in 3D.

A photo run without masks meshes the object inside its region, a box from the sparse points that stand
above the support plane (:func:`t23d.data.normalise.compute_normalisation`). Parts with few or no
features have few or no points: a plain candle on a candlestick, a monkey head's thin ears. From 100
photos enough points land on them; from 20 (measured: 521 points against 4,450) the box ends below the
candle's top, and the asset is cut off there although the field learnt the candle whole.

:func:`grow_to_reach` widens the box to the learnt solid that is connected to the object's own solid
inside it: the SDF is sampled on a grid over the field's cube, the solid cells (SDF under half a cell,
so a part one cell thin stays connected) that lie ``clearance`` or more above the cut are labelled by
6-connectivity, and the component with the most cells inside the box is the object. Where it reaches
more than a cell beyond the box, the box grows to hold it (one cell of margin); it never shrinks. Near
the table, the footprint's own growth (:mod:`t23d.extract.footprint`) decides; the clearance keeps what
the field leaves lying on the table from joining the object and pulling the box along the floor.
Another object, or a floater, is not connected to this one: it stays out.

Conventions as in :mod:`t23d.extract.footprint`: the field's normalised frame; the cut is a plane
``(nx, ny, nz, d)`` with a unit normal, and a point's height above it is ``n . x - d``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from t23d.extract.grid import DensityFn, _checked_plane, check_aabb, evaluate_density_grid

#: Height above the cut (normalised units) from which solid counts towards the object's reach.
CLEARANCE = 0.05


@dataclass
class ReachGrowth:
    """What :func:`grow_to_reach` found (written to ``export.json`` → ``region`` → ``reach``)."""

    box: list[list[float]]
    """The region's box after growing ``[[min], [max]]`` (normalised frame)."""
    grown: bool
    """Whether the box grew: the object's solid reaches beyond it."""
    spacing: float
    """Grid spacing (normalised units)."""
    clearance: float
    """Height above the cut from which the solid counted."""
    cells: int
    """Solid cells of the object's component (0: no solid inside the box)."""
    cells_outside: int
    """Of those, the cells more than one cell outside the box before it grew (0: the box stays)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


def object_component(solid: np.ndarray, in_box: np.ndarray) -> np.ndarray:
    """Of the ``solid`` cells (bool grid), the 6-connected component with the most cells where ``in_box``
    (bool grid of the same shape); all False when no solid cell is in the box."""
    from scipy import ndimage

    labels, count = ndimage.label(solid)
    if count == 0:
        return np.zeros_like(solid)
    inside = np.bincount(labels[in_box & solid], minlength=count + 1)
    inside[0] = 0
    if inside.max() == 0:
        return np.zeros_like(solid)
    return labels == int(inside.argmax())


def grow_to_reach(
    sdf_fn: DensityFn,
    aabb: np.ndarray,
    cut: np.ndarray | None,
    spacing: float = 1.0 / 64,
    bound: float = 1.0,
    clearance: float = CLEARANCE,
) -> ReachGrowth:
    """The region ``aabb [2, 3]`` widened to the object's learnt solid (see the module docstring).

    The SDF is sampled at the centres of a grid of ``spacing`` over ``[-bound, bound]^3``; with a ``cut``
    plane only cells ``clearance`` or more above it count. The box grows to hold the object's component
    (one cell of margin), clipped to the cube.
    """
    box = check_aabb(aabb).copy()
    if not (spacing > 0 and bound > 0):
        raise ValueError(f"spacing and bound must be positive; got {spacing}, {bound}")
    samples = round(2 * bound / spacing)  # one per cell, at its centre: samples - 1 lattice cells apart
    centres = np.array([[-bound + spacing / 2] * 3, [bound - spacing / 2] * 3])
    inside = evaluate_density_grid(lambda p: -sdf_fn(p), centres, samples - 1, signed=True)  # > 0 inside
    solid = inside.values > -0.5 * spacing
    if cut is not None:
        normal_t, offset = _checked_plane(cut, "cut plane")
        solid &= inside.heights(normal_t.numpy().astype(np.float64), offset) >= clearance
    axes = inside.axes()

    def within(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """The samples inside the box ``[lo, hi]`` (a grid of bools, by broadcasting)."""
        x, y, z = ((a >= lo[k]) & (a <= hi[k]) for k, a in enumerate(axes))
        return x[:, None, None] & y[None, :, None] & z[None, None, :]

    component = object_component(solid, within(box[0], box[1]))
    count = int(component.sum())
    # a cell's worth beyond the box is the half-cell dilation of a surface that touches its face: not reach
    outside = int((component & ~within(box[0] - spacing, box[1] + spacing)).sum())
    if outside == 0:
        return ReachGrowth(box.tolist(), False, float(spacing), float(clearance), count, 0)
    idx = np.nonzero(component)
    held = np.stack([axes[k][idx[k]] for k in range(3)], -1)
    lo = np.minimum(box[0], held.min(0) - spacing)
    hi = np.maximum(box[1], held.max(0) + spacing)
    grown_box = np.clip(np.stack([lo, hi]), -bound, bound)
    grown_box = np.stack([np.minimum(grown_box[0], box[0]), np.maximum(grown_box[1], box[1])])
    grown = bool(np.any(grown_box[0] < box[0] - 1e-9) or np.any(grown_box[1] > box[1] + 1e-9))
    return ReachGrowth(grown_box.tolist(), grown, float(spacing), float(clearance), count, outside)
