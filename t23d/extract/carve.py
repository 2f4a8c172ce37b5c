"""Carve the table-coloured solid that rises from the cut: what the field grew between object and table.

Under changing light a field trained on unmasked photos fills the shadowed space under an object with
solid that takes the table's colours (a skirt hanging from a monkey head to its table: a quarter of the
asset's area, benchmarks/RESULTS.md). Its shape is nothing like a fillet, so the cut and the fillet do
not reach it; its colour gives it away.

:func:`carve_table_coloured` samples the SDF on a grid over the object's region. Each surface cell higher
than :data:`VOTE_BAND` above the cut (solid, with a face neighbour the SDF calls empty; the cut itself
is no surface) is coloured by the field where the surface crosses it and votes table or object by the
nearest colour among the sparse points on the table or on the object. Every solid cell above the cut
within :data:`REACH` of a voting cell goes with the nearest one; the table-coloured solid connected to
the cut, in pieces of at least :data:`MIN_SHARE` of the solid, is carved out of the SDF
(:class:`Carved`). The band, the reach and the size keep a textured object whole: a box on a printed
sheet lost solid 0.26-0.44 deep inside it without the first two (its foot's mixed colours claimed the
inside nearest to them), and small pockets of its faces without the third.

Conventions as in :mod:`t23d.extract.base_cut`: the field's normalised frame, ``plane`` ``(nx, ny, nz,
d)``, colours in ``[0, 1]``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from t23d.extract.base_cut import MIN_POINTS, palette_distance
from t23d.extract.grid import ColorFn, DensityFn, _checked_plane, check_aabb

#: Surface cells this close above the cut do not vote (normalised units): where an object meets the table
#: the learnt surface mixes both colours, and its votes would reach deep into a wide base.
VOTE_BAND = 0.05
#: Solid further than this from every voting surface cell is never carved (normalised units).
REACH = 0.15
#: A table-coloured piece rising from the cut is carved only if it holds at least this share of the solid
#: above the cut: the skirt under a monkey head held 19 % in one piece; what the votes take from a box's
#: printed faces beside a printed sheet came in 1,359 pieces, none over 0.3 %.
MIN_SHARE = 0.02


@dataclass
class CarveReport:
    """What :func:`carve_table_coloured` found (``export.json`` → ``region`` → ``carve``)."""

    spacing: float
    """Grid spacing (normalised units)."""
    surface_cells: int
    """Surface cells that voted (more than ``band`` above the cut)."""
    table_coloured: float
    """Share of them nearer the table's colours."""
    carved: float
    """Share of the solid above the cut carved out."""
    seconds: float
    """Time taken."""
    reason: str = ""
    """Why nothing was looked at, when that is so (too few coloured sparse points)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


class Carved:
    """``sdf_fn`` with the cells of a boolean grid ``carved [X, Y, Z]`` whose corner nodes span ``box``
    made empty: the carve indicator is interpolated trilinearly and the surface follows its 0.5 level."""

    def __init__(self, sdf_fn: DensityFn, carved: np.ndarray, box: np.ndarray, spacing: float):
        self.sdf_fn = sdf_fn
        self.volume = torch.from_numpy(carved.astype(np.float32))[None, None]  # [1, 1, X, Y, Z]
        self.box = torch.tensor(box, dtype=torch.float32)
        self.spacing = float(spacing)

    def indicator(self, points: torch.Tensor) -> torch.Tensor:
        """``[N]`` in ``[0, 1]``: how carved ``points [N, 3]`` are (0 outside the grid)."""
        box = self.box.to(points.device)
        uvw = (points.float() - box[0]) / (box[1] - box[0]) * 2 - 1  # [-1, 1] from corner node to node
        grid = uvw.flip(-1).reshape(1, -1, 1, 1, 3)  # grid_sample reads (z, y, x) for a [X, Y, Z] volume
        c = F.grid_sample(self.volume.to(points.device), grid, align_corners=True, padding_mode="zeros")
        return c.reshape(-1)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        s = self.sdf_fn(points)
        c = self.indicator(points).to(s.device, s.dtype)
        return torch.maximum(s, (c - 0.5) * 2.0 * self.spacing)


def carve_table_coloured(
    sdf_fn: DensityFn,
    color_fn: ColorFn,
    plane: np.ndarray,
    cut_height: float,
    aabb: np.ndarray,
    object_colors: np.ndarray,
    table_colors: np.ndarray,
    resolution: int = 256,
    band: float = VOTE_BAND,
    reach: float = REACH,
    min_share: float = MIN_SHARE,
) -> tuple[DensityFn, CarveReport]:
    """``sdf_fn`` with the table-coloured solid connected to the cut (``cut_height`` above ``plane``)
    carved out, inside ``aabb [2, 3]`` sampled with ``resolution`` cells on its longest side (as the
    export's extraction grid); and what was found. See the module docstring. Fewer than
    :data:`t23d.extract.base_cut.MIN_POINTS` colours on the object or the table: ``sdf_fn`` unchanged."""
    from scipy import ndimage

    from t23d.extract.grid import evaluate_density_grid

    t0 = time.perf_counter()
    box = check_aabb(aabb)
    if min(len(object_colors), len(table_colors)) < MIN_POINTS:
        reason = (
            f"too few coloured sparse points ({len(object_colors)} on the object, {len(table_colors)} on "
            f"the table; {MIN_POINTS} of each needed)"
        )
        return sdf_fn, CarveReport(0.0, 0, 0.0, 0.0, 0.0, reason)
    normal_t, offset = _checked_plane(plane, "support plane")
    n = normal_t.numpy().astype(np.float64)
    inside = evaluate_density_grid(lambda p: -sdf_fn(p), box, resolution, signed=True)  # > 0 inside
    spacing = inside.spacing
    axes = inside.axes()
    height = inside.heights(n, offset)
    above = height > cut_height
    whole = inside.values > 0
    solid = whole & above
    # the learnt surface's own cells (the cut is no surface), above the band where it meets the table
    surface = whole & ~ndimage.binary_erosion(whole, border_value=1) & (height > cut_height + band)
    idx = np.nonzero(surface)
    report = CarveReport(float(spacing.max()), int(len(idx[0])), 0.0, 0.0, 0.0)
    if len(idx[0]):
        grad = np.stack(np.gradient(-inside.values, *spacing), -1)[idx].astype(np.float64)  # SDF's
        unit = grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-9)
        nodes = np.stack([axes[k][idx[k]] for k in range(3)], -1)
        on_surface = nodes + inside.values[idx][:, None] * unit  # sdf = -inside: step back to its zero
        with torch.no_grad():
            rgb = color_fn(
                torch.tensor(on_surface, dtype=torch.float32), torch.tensor(-unit, dtype=torch.float32)
            )
        rgb = rgb.float().cpu().numpy()
        table_surface = palette_distance(rgb, table_colors) < palette_distance(rgb, object_colors)
        label = np.zeros(solid.shape, dtype=bool)
        label[idx] = table_surface
        far, nearest = ndimage.distance_transform_edt(
            ~surface, sampling=spacing, return_distances=True, return_indices=True
        )
        table_solid = solid & label[tuple(nearest)] & (far <= reach)
        del nearest, far
        parts, _ = ndimage.label(table_solid, structure=np.ones((3, 3, 3), dtype=bool))
        bottom = table_solid & (height <= cut_height + 2 * float(spacing.max()))
        total = max(int(solid.sum()), 1)
        sizes = np.bincount(parts.ravel())
        rising = np.unique(parts[bottom])  # labels of table-coloured pieces (> 0: bottom lies in them)
        carved = np.isin(parts, rising[sizes[rising] >= min_share * total])
        report.table_coloured = float(table_surface.mean())
        report.carved = float(carved.sum() / total)
    report.seconds = round(time.perf_counter() - t0, 2)
    if not report.carved:
        return sdf_fn, report
    corners = np.stack([[a[0] for a in axes], [a[-1] for a in axes]])
    return Carved(sdf_fn, carved, corners, float(spacing.max())), report
