"""The asset over the support plane a photo run found: where it is cut, the region it is meshed in, the
fillet undone and the base below the cut.

A capture without masks shows the table the object stands on; :func:`t23d.data.normalise.find_support_plane`
finds it in the sparse points and the run records it in ``scene.json``. At export these helpers turn the
``data.support_*`` settings into what :func:`t23d.export.export_asset` meshes: a cut plane, a region box,
and an SDF with its blend into the table undone or its base extended (:mod:`t23d.extract.footprint`,
:mod:`t23d.extract.fillet`, :mod:`t23d.extract.grid`). Normalised frame throughout; planes are
``(nx, ny, nz, d)`` with a unit normal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


def support_plane_of(scene: dict[str, Any]) -> np.ndarray | None:
    """``[4]`` ``(nx, ny, nz, d)`` (normalised frame) of the scene's support plane; None when it has none
    (or is a run written before support planes were looked for)."""
    plane = scene.get("support_plane")
    if not plane:
        return None
    return np.array([*plane["normal"], float(plane["offset"])], dtype=np.float64)


def cut_plane_of(scene: dict[str, Any], margin: float) -> np.ndarray | None:
    """``[4]`` ``(nx, ny, nz, d)`` (normalised frame) above which the asset is kept: the scene's support
    plane raised by ``margin`` (normalised units), or by twice its points' noise when that is more; None
    when the scene has no support plane."""
    support = support_plane_of(scene)
    if support is None:
        return None
    support[3] += max(float(margin), 2.0 * float(scene["support_plane"]["rms"]))
    return support


def based_on_support(
    sdf_fn: Callable | None, scene: dict[str, Any], cut: np.ndarray | None, base: str
) -> tuple[Callable | None, np.ndarray | None]:
    """The SDF and the cut plane the asset is meshed with: with ``base`` ``extend`` (and an SDF and a
    cut), the object's section on the cut continued down to the support plane, which becomes the cut
    (:func:`t23d.extract.grid.extend_to_support`); otherwise both unchanged (the asset ends at the cut)."""
    support = support_plane_of(scene)
    if base != "extend" or sdf_fn is None or cut is None or support is None:
        return sdf_fn, cut
    from t23d.extract.grid import extend_to_support

    logger.info("the asset's base is its section at the cut, extended down to the support plane")
    return extend_to_support(sdf_fn, cut, float(support[3])), support


def base_of(setting: str, cut_record: dict[str, Any] | None) -> tuple[str, str]:
    """The base ``data.support_base`` (``setting``) asks for, ``cut`` or ``extend``, and why: ``auto`` extends
    the base when the colour cut (its ``cut_record``, :func:`lowered_cut`) came down from the margin."""
    if setting != "auto":
        return setting, "as configured"
    if cut_record and cut_record.get("lowered"):
        return "extend", "the base's edge has the object's colours below the margin: it stands on the table"
    return "cut", "the cut stayed at the margin (or was not read by colour): nothing shows a base below it"


def _unblended(sdf_fn: Callable | None, scene: dict[str, Any], radius: float) -> Callable | None:
    """``sdf_fn`` with its blend into the scene's support plane undone (``data.support_fillet_radius``;
    :func:`t23d.extract.grid.unblend_support`), or unchanged: no SDF, no plane, or radius 0."""
    support = support_plane_of(scene)
    if sdf_fn is None or support is None or radius <= 0:
        return sdf_fn
    from t23d.extract.grid import unblend_support

    logger.info("undoing a fillet of radius %.3g (normalised units) at the support plane", radius)
    return unblend_support(sdf_fn, support, radius)


def region_over_support(
    sdf_fn: Callable | None,
    scene: dict[str, Any],
    aabb: torch.Tensor,
    cut: np.ndarray | None,
    grow: bool,
) -> tuple[torch.Tensor, dict[str, Any] | None]:
    """The region the asset is meshed in: ``aabb`` grown along the support plane to the object's learnt
    footprint just above the ``cut`` (:func:`t23d.extract.footprint.grow_over_support`) when ``grow``
    and the run has an SDF and a cut; else ``aabb``. Returns it and the record for ``export.json``."""
    support = support_plane_of(scene)
    if not grow or sdf_fn is None or support is None or cut is None:
        return aabb, None
    from t23d.extract.footprint import grow_over_support

    growth = grow_over_support(sdf_fn, support, aabb.numpy(), float(cut[3] - support[3]))
    if growth.grown:
        logger.info(
            "the object's base reaches beyond its region along the support plane: region %s -> %s",
            np.round(aabb.numpy(), 3).tolist(),
            np.round(np.asarray(growth.box), 3).tolist(),
        )
    return torch.tensor(growth.box, dtype=torch.float32), growth.to_dict()


def region_reach(
    sdf_fn: Callable | None, aabb: torch.Tensor, cut: np.ndarray | None, enabled: bool
) -> tuple[torch.Tensor, dict[str, Any] | None]:
    """The region ``aabb`` grown to the object's learnt solid above the ``cut`` wherever it reaches beyond
    the box (:func:`t23d.extract.reach.grow_to_reach`: parts the sparse points missed) when ``enabled``
    and the run has an SDF and a cut; else ``aabb``. Returns it and the record for ``export.json``."""
    if not enabled or sdf_fn is None or cut is None:
        return aabb, None
    from t23d.extract.reach import grow_to_reach

    reach = grow_to_reach(sdf_fn, aabb.numpy(), cut)
    if reach.grown:
        logger.info(
            "the object's learnt solid reaches beyond its region (%d of %d cells outside): region %s -> %s",
            reach.cells_outside,
            reach.cells,
            np.round(aabb.numpy(), 3).tolist(),
            np.round(np.asarray(reach.box), 3).tolist(),
        )
    return torch.tensor(reach.box, dtype=torch.float32), reach.to_dict()


def support_fillet_radius(
    sdf_fn: Callable | None,
    scene: dict[str, Any],
    setting: float | str,
    cut: np.ndarray | None,
    aabb: torch.Tensor | None = None,
) -> tuple[float, dict[str, Any] | None]:
    """The radius ``data.support_fillet_radius`` (``setting``) asks for, and the record of its estimate:
    a number is used as given (no record); ``auto`` is estimated from ``sdf_fn``'s foot at the ``cut``
    height inside the region ``aabb`` (default: the scene's box;
    :func:`t23d.extract.fillet.estimate_support_fillet`) and logged, or 0 without an SDF, a
    support plane or a cut."""
    if setting != "auto":
        return float(setting), None
    support = support_plane_of(scene)
    if sdf_fn is None or support is None or cut is None:
        logger.info("support_fillet_radius auto: no SDF or no support plane here, nothing to undo")
        return 0.0, None
    from t23d.extract.fillet import estimate_support_fillet

    box = np.asarray(scene["aabb"]) if aabb is None else aabb.numpy()
    estimate = estimate_support_fillet(sdf_fn, support, box, float(cut[3] - support[3]))
    logger.info("support fillet radius (auto): %.3g (normalised units); %s", estimate.radius, estimate.reason)
    return estimate.radius, estimate.to_dict()


def asset_region(
    aabb: torch.Tensor, cut: np.ndarray | None, carved: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``points [N, 3] -> bool [N]``: inside the box ``aabb [2, 3]`` the asset is meshed in, above the
    ``cut`` plane ``(nx, ny, nz, d)`` (None: no cut) and not carved out (``carved``: an indicator in
    ``[0, 1]``, carved above 0.5; None: nothing carved), normalised frame."""
    plane = None if cut is None else torch.tensor(cut, dtype=torch.float32)

    def inside(points: torch.Tensor) -> torch.Tensor:
        box = aabb.to(points.device)
        keep = ((points >= box[0]) & (points <= box[1])).all(-1)
        if plane is not None:
            keep &= points @ plane[:3].to(points.device) > plane[3]
        if carved is not None:
            keep &= carved(points).to(keep.device) < 0.5
        return keep

    return inside


def sparse_point_colors(
    model_dir: Path | None, scene: dict[str, Any], scale: float = 1.0
) -> SparseColors | None:
    """The sparse points of the COLMAP model a run saved (``model_dir``; None: none) in the normalised
    frame, with their colours: ``scale`` is the factor ``data.scale`` applied to the model's units before
    normalising (``run.json`` → ``scale`` → ``factor``). None without a model or points."""
    from t23d.data.colmap import model_extension, read_reconstruction, reconstruction_points

    if model_dir is None or model_extension(model_dir) is None:
        return None
    xyz, rgb = reconstruction_points(read_reconstruction(model_dir))
    if len(xyz) == 0:
        return None
    world_from_normalised = np.asarray(scene["world_from_normalised"], dtype=np.float64)
    normalised = (xyz * float(scale) - world_from_normalised[:3, 3]) / world_from_normalised[0, 0]
    return SparseColors(normalised, rgb.astype(np.float64) / 255.0)


@dataclass
class SparseColors:
    """Sparse points ``[P, 3]`` (normalised frame) and their colours ``[P, 3]`` in ``[0, 1]``."""

    points: np.ndarray
    colors: np.ndarray

    def object_and_table(
        self, plane: np.ndarray, box: np.ndarray, above: float, on: float, reach: float = 0.3
    ) -> tuple[np.ndarray, np.ndarray]:
        """Colours of the points on the object (inside ``box [2, 3]``, higher than ``above`` over
        ``plane``) and on the table (within ``on`` of ``plane``, inside ``box`` widened by ``reach``)."""
        h = self.points @ plane[:3] - plane[3]
        inside = ((self.points >= box[0]) & (self.points <= box[1])).all(-1)
        near = ((self.points >= box[0] - reach) & (self.points <= box[1] + reach)).all(-1)
        return self.colors[inside & (h > above)], self.colors[near & (np.abs(h) < on)]


@dataclass
class _CutFrame:
    """The support plane, the cut's height over it, the region's box and the lowest cut allowed (twice the
    plane's point noise), as the colour steps read them."""

    support: np.ndarray
    height: float
    box: np.ndarray
    floor: float

    def palettes(self, sparse: SparseColors) -> tuple[np.ndarray, np.ndarray]:
        """Colours of the sparse points on the object (in the box, 0.01 over the cut) and on the table."""
        return sparse.object_and_table(
            self.support, self.box, above=self.height + 0.01, on=max(self.floor, 0.01)
        )


def _over_cut(scene: dict[str, Any], aabb: torch.Tensor, cut: np.ndarray) -> _CutFrame:
    """:class:`_CutFrame` of a scene with a support plane, its region ``aabb`` and ``cut`` plane."""
    support = support_plane_of(scene)
    assert support is not None  # a cut is made only over a support plane
    return _CutFrame(
        support,
        float(cut[3] - support[3]),
        aabb.numpy().astype(np.float64),
        2.0 * float(scene["support_plane"]["rms"]),
    )


def lowered_cut(
    sdf_fn: Callable,
    color_fn: Callable,
    scene: dict[str, Any],
    aabb: torch.Tensor,
    cut: np.ndarray,
    sparse: SparseColors | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``cut`` brought down towards the support plane as far as the learnt surface below it has the
    object's colours rather than the table's (:func:`t23d.extract.base_cut.lower_cut_by_colour`), no lower
    than twice the plane's point noise; and its record. ``color_fn``: the field's radiance at surface
    points; ``sparse``: the run's coloured sparse points (None: the cut stays)."""
    from t23d.extract.base_cut import BaseCut, lower_cut_by_colour

    at = _over_cut(scene, aabb, cut)
    if sparse is None:
        found = BaseCut(
            at.height, at.height, False, "the run kept no coloured sparse points: the cut stays at the margin"
        )
    else:
        objects, table = at.palettes(sparse)
        found = lower_cut_by_colour(sdf_fn, color_fn, at.support, at.box, at.height, at.floor, objects, table)
    logger.info("the asset's cut: %.3g above the support plane; %s", found.height, found.reason)
    lowered = at.support.copy()
    lowered[3] += found.height
    return lowered, found.to_dict()


def carved_above_cut(
    sdf_fn: Callable,
    color_fn: Callable,
    scene: dict[str, Any],
    aabb: torch.Tensor,
    cut: np.ndarray,
    sparse: SparseColors | None,
) -> tuple[Callable, dict[str, Any], Callable | None]:
    """``sdf_fn`` with the table-coloured solid that rises from the ``cut`` carved out
    (:func:`t23d.extract.carve.carve_table_coloured`), the record of what was carved, and the carve's
    indicator (None when nothing was carved). Without coloured points: ``sdf_fn`` as it is."""
    from t23d.extract.carve import Carved, carve_table_coloured

    if sparse is None:
        return sdf_fn, {"carved": 0.0, "reason": "the run kept no coloured sparse points"}, None
    at = _over_cut(scene, aabb, cut)
    objects, table = at.palettes(sparse)
    carved, report = carve_table_coloured(sdf_fn, color_fn, at.support, at.height, at.box, objects, table)
    logger.info(
        "table-coloured solid rising from the cut: %.1f %% of the surface cells table-coloured, %.1f %% of "
        "the solid carved (%.1f s)%s",
        100 * report.table_coloured,
        100 * report.carved,
        report.seconds,
        f"; {report.reason}" if report.reason else "",
    )
    return carved, report.to_dict(), carved.indicator if isinstance(carved, Carved) else None


@dataclass
class AssetOverSupport:
    """What the asset of a run over a support plane is meshed from (:func:`over_support`)."""

    aabb: torch.Tensor
    """The region's box ``[2, 3]`` (grown along the plane to the object's footprint, and to its reach)."""
    cut: np.ndarray | None
    """The plane the asset is cut at ``(nx, ny, nz, d)``: the part above is the object; None: no plane."""
    sdf_fn: Callable | None
    """The SDF to mesh (its fillet undone, its base extended, as configured)."""
    mesh_cut: np.ndarray | None
    """The plane the mesh is cut at (the support plane itself for an extended base)."""
    region: dict[str, Any] | None
    """For ``export.json`` → ``region``: the grown box and the cut's record."""
    fillet: dict[str, Any] | None
    """For ``export.json`` → ``support_fillet``: the fillet radius estimated (``auto``)."""
    carved: Callable[[torch.Tensor], torch.Tensor] | None = None
    """``points [N, 3] -> [N]`` in ``[0, 1]``: how far each point lies in the solid carved out (None:
    nothing carved); the field's render for the fidelity check leaves it out as the asset does."""

    def region_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``points [N, 3] -> bool [N]``: where the asset was meshed (:func:`asset_region`)."""
        return asset_region(self.aabb, self.cut, self.carved)

    @property
    def extended(self) -> bool:
        """Whether the base was extended below the cut (the mesh is cut lower than the object)."""
        return (
            self.cut is not None and self.mesh_cut is not None and not np.array_equal(self.cut, self.mesh_cut)
        )

    def bake_color_fn(self, color_fn: Callable, lift: float) -> Callable:
        """The colour to bake the asset with: ``color_fn`` as it is, or for an extended base looked up
        ``lift`` above the cut wherever the asset lies lower (:func:`t23d.extract.grid.lifted_to_plane`):
        the field holds the table there, not the base."""
        if not self.extended:
            return color_fn
        from t23d.extract.grid import lifted_to_plane

        return lifted_to_plane(color_fn, self.cut, lift)  # type: ignore[arg-type]


def over_support(
    sdf_fn: Callable | None,
    scene: dict[str, Any],
    aabb: torch.Tensor,
    data_cfg: Any,
    color_fn: Callable | None = None,
    sparse: Callable[[], SparseColors | None] | None = None,
) -> AssetOverSupport:
    """Turn the ``data.support_*`` settings (``data_cfg``: :class:`t23d.data.config.DataConfig`) into what
    the asset of a run with ``scene`` is meshed from: the cut (``support_plane_margin``, lowered by colour
    with ``support_cut: colour``), the region grown over the plane from it (``support_footprint``) and to
    the object's solid above it (``region_reach``), the table-coloured solid over the cut carved out
    (``support_carve``), the fillet undone
    (``support_fillet_radius``) and the base (``support_base``). The colour steps need the field's colour
    ``color_fn`` and the run's coloured sparse points (``sparse``, called once). Without a support plane:
    ``aabb`` and ``sdf_fn`` unchanged, no cut."""
    cut = cut_plane_of(scene, data_cfg.support_plane_margin)
    grown, region = region_over_support(sdf_fn, scene, aabb, cut, data_cfg.support_footprint)
    carved = None
    by_colour = data_cfg.support_cut == "colour" or data_cfg.support_carve
    colour_steps = cut is not None and sdf_fn is not None and color_fn is not None and sparse is not None
    points = sparse() if colour_steps and by_colour and sparse is not None else None
    if colour_steps and data_cfg.support_cut == "colour":
        cut, record = lowered_cut(sdf_fn, color_fn, scene, grown, cut, points)
        if record["lowered"]:  # the footprint is read again just above the lower cut
            grown, region = region_over_support(sdf_fn, scene, aabb, cut, data_cfg.support_footprint)
        region = {**(region or {}), "cut": record}
    grown, reach = region_reach(sdf_fn, grown, cut, data_cfg.region_reach)
    if reach is not None:
        region = {**(region or {}), "box": reach["box"], "reach": reach}
    if colour_steps and data_cfg.support_carve:
        sdf_fn, record, carved = carved_above_cut(sdf_fn, color_fn, scene, grown, cut, points)
        region = {**(region or {}), "carve": record}
    if cut is not None:
        logger.info(
            "the asset is cut %.3g (normalised units) above the support plane it stands on",
            cut[3] - scene["support_plane"]["offset"],
        )
    radius, fillet = support_fillet_radius(sdf_fn, scene, data_cfg.support_fillet_radius, cut, grown)
    base, why = base_of(data_cfg.support_base, (region or {}).get("cut"))
    if cut is not None and sdf_fn is not None:
        region = {**(region or {}), "base": {"setting": data_cfg.support_base, "base": base, "reason": why}}
    mesh_sdf_fn, mesh_cut = based_on_support(_unblended(sdf_fn, scene, radius), scene, cut, base)
    return AssetOverSupport(grown, cut, mesh_sdf_fn, mesh_cut, region, fillet, carved)
