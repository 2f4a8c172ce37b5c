"""How low the asset's base may reach towards its support plane: the cut lowered where colour says object.

A photo run without masks cuts its asset a fixed margin above the table (``data.support_plane_margin``),
because the learnt table is not flat and the learnt surface blends into it. An object whose base stands
straight on the table (a candlestick's foot with a vertical rim) loses that whole band; an object that
rests on a rounded part (a head on its chin) would gain a pedestal if the band were kept, since there the
learnt surface below the cut is the blend with the table. Their shapes below the cut look alike to the
SDF; their colours do not: the foot's band is porcelain, the blend under the chin has the table's colours.

:func:`lower_cut_by_colour` walks down from the cut in slices parallel to the plane. On each, the edge of
the learnt solid connected to the object's part inside its region is coloured by the field (the photos'
colours), and each edge colour votes object or table by whether the nearest colour among the sparse
points on the object or among those on the table is closer. The cut comes down to the lowest slice of an
unbroken run of slices whose object share is at least ``vote``, never below ``floor``.

Conventions as in :mod:`t23d.extract.footprint`: the field's normalised frame, ``plane`` ``(nx, ny, nz,
d)`` with a unit normal, heights ``n . x - d``; colours in ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from t23d.extract.footprint import connected_section
from t23d.extract.grid import ColorFn, DensityFn, _checked_plane, check_aabb

#: Height between the slices read, normalised units.
SLICE_STEP = 0.005
#: Share of a slice's edge colours that must be nearer the object's colours than the table's.
OBJECT_VOTE = 0.6
#: Fewer coloured sparse points than this on the object or on the table: the cut is left where it is.
MIN_POINTS = 20


@dataclass
class BaseCut:
    """Where the asset's base is cut (written to ``export.json`` → ``region`` → ``cut``)."""

    height: float
    """The cut's height above the support plane used (normalised units)."""
    margin: float
    """The height it started from (``data.support_plane_margin``, or twice the plane's point noise)."""
    lowered: bool
    """Whether colour brought it down."""
    reason: str
    """Why it is where it is, in words."""
    slices: list[dict[str, float]] = field(default_factory=list)
    """Each slice read: ``height``, ``object_share`` of its edge colours, ``edge_cells``."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


def palette_distance(colors: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Distance ``[N]`` from each of ``colors [N, 3]`` to its nearest colour in ``palette [P, 3]``."""
    from scipy.spatial import cKDTree

    return cKDTree(palette).query(colors)[0]


def object_share(colors: np.ndarray, object_colors: np.ndarray, table_colors: np.ndarray) -> float:
    """Share of ``colors [N, 3]`` whose nearest colour among ``object_colors`` is closer than their nearest
    among ``table_colors`` (both ``[P, 3]``); 0 for no colours."""
    if len(colors) == 0:
        return 0.0
    return float(np.mean(palette_distance(colors, object_colors) < palette_distance(colors, table_colors)))


def edge_colors(
    sdf_fn: DensityFn,
    color_fn: ColorFn,
    plane: np.ndarray,
    aabb: np.ndarray,
    height: float,
    spacing: float,
    bound: float,
) -> np.ndarray:
    """Field colours ``[E, 3]`` on the edge of the object's section at ``height`` above ``plane``: the solid
    connected to its part inside ``aabb`` (:func:`t23d.extract.footprint.connected_section`), its cells with
    an empty 4-neighbour, seen from outside (looking towards the section's centre, along the plane)."""
    from scipy import ndimage

    pts, keep = connected_section(sdf_fn, plane, aabb, height, spacing, bound)
    edge = keep & ~ndimage.binary_erosion(keep)
    p = pts[edge]
    if len(p) == 0:
        return np.zeros((0, 3))
    n = np.asarray(plane[:3], dtype=np.float64)
    inward = p.mean(0) - p
    inward -= (inward @ n)[:, None] * n
    inward /= np.maximum(np.linalg.norm(inward, axis=1, keepdims=True), 1e-9)
    with torch.no_grad():
        rgb = color_fn(torch.tensor(p, dtype=torch.float32), torch.tensor(inward, dtype=torch.float32))
    return rgb.float().cpu().numpy()


def lower_cut_by_colour(
    sdf_fn: DensityFn,
    color_fn: ColorFn,
    plane: np.ndarray,
    aabb: np.ndarray,
    margin: float,
    floor: float,
    object_colors: np.ndarray,
    table_colors: np.ndarray,
    step: float = SLICE_STEP,
    vote: float = OBJECT_VOTE,
    spacing: float = 1.0 / 128,
    bound: float = 1.0,
) -> BaseCut:
    """The cut height over ``plane`` for the object inside ``aabb [2, 3]``: from ``margin`` down in slices
    ``step`` apart, to the lowest slice at or above ``floor`` of the unbroken run whose edge colours
    (:func:`edge_colors`) are an ``object_share`` of at least ``vote``; ``margin`` when the first already
    is not. ``object_colors``, ``table_colors``: ``[P, 3]`` colours of sparse points on the object and on
    the table (fewer than :data:`MIN_POINTS` of either: the cut stays at ``margin``)."""
    check_aabb(aabb)
    normal, offset = _checked_plane(plane, "support plane")
    plane = np.array([*normal.tolist(), offset], dtype=np.float64)
    margin, floor = float(margin), float(floor)
    if len(object_colors) < MIN_POINTS or len(table_colors) < MIN_POINTS:
        return BaseCut(
            margin,
            margin,
            False,
            f"too few coloured sparse points to tell object from table ({len(object_colors)} on the object, "
            f"{len(table_colors)} on the table; {MIN_POINTS} of each needed): the cut stays at the margin",
        )
    height, slices = margin, []
    k = 1
    while margin - k * step >= floor - 1e-9:
        h = margin - k * step
        colors = edge_colors(sdf_fn, color_fn, plane, aabb, h, spacing, bound)
        share = object_share(colors, object_colors, table_colors)
        slices.append({"height": round(h, 6), "object_share": round(share, 4), "edge_cells": len(colors)})
        if share < vote:
            break
        height = h
        k += 1
    lowered = height < margin - 1e-9
    if lowered:
        reason = (
            f"the learnt surface below the margin has the object's colours down to {height:.3g} "
            f"(object share >= {vote} on every slice)"
        )
        if height - step < floor - 1e-9:
            reason += f", as low as it may go ({floor:.3g})"
    else:
        reason = "the learnt surface just below the margin has the table's colours (or none): the cut stays"
    return BaseCut(height, margin, lowered, reason, slices)
