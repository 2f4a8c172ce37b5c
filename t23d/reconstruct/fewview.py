"""Few photos: measure how sparse a capture is and choose the regularisers that keep its asset clean.

With 10-20 photos a photometric field fits the photos with geometry the photos cannot tell apart: fog,
floaters, noise on plain surfaces. The remedies used here, chosen from the capture by :func:`plan_few_view`
and written to the run's log, ``run.json`` and ``metrics.json``:

- for density fields, **coarse-to-fine encoding** (FreeNeRF's frequency regularisation, on the hash grid's
  levels): only the coarse levels are visible at first, the finer ones fade in linearly
  (:func:`level_weights`), so the field explains the photos with smooth geometry before it may add
  detail; and the **distortion loss** (mip-NeRF 360): one compact surface per ray, against fog. SDF
  fields keep their own smoothness (``FewViewConfig.smooth_sdf`` ``off``): coarse-to-fine with a
  stronger **curvature** loss (Neuralangelo) made the duck's and the statue's assets worse at 10, 20
  and 50 masked views (2-5 dB, a third of the Chamfer distance), and 20 unmasked photos of a monkey head
  in a room lost its ears and kept a mass under its chin (17.1 dB, Chamfer-L1 0.052; without it 26.5 dB,
  0.015; a candlestick's 20 photos did better with it, 22.2 dB / 0.020 against 20.9 / 0.027, one run
  each; benchmarks/RESULTS.md, issue 12);
- **view-independent colour**: with few photos each surface point is seen from a handful of directions,
  and a view-dependent colour head fits each photo with its own colour that no other direction shares
  (the 10-view duck's asset came out about 0.1 too blue from every unseen direction, 22.9 dB; with a
  view-independent colour 28.4 dB, benchmarks/RESULTS.md): a sparse capture's field colour is a function
  of position only (``field.view_dependent`` off), which is also what the texture bakes;
- **SfM points on the surface** when the capture has them (COLMAP models, raw photos posed by SfM): the
  field's surface is pulled through the sparse points (for SDFs ``|s(p)|``, as Geo-NeuS; for density
  fields the density at each point is pushed up to the surface level) - depth supervision from the points
  without needing their tracks (the dataset carries points, not which photo saw them).

Sparsity is measured on the training cameras' directions seen from the object's centre: the number of
photos and the median angle from each camera to its nearest neighbour.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from t23d.common.schedule import Constant, Linear

if TYPE_CHECKING:
    from t23d.field.nerf import NeRFField
    from t23d.reconstruct.config import ReconstructConfig

log = logging.getLogger(__name__)


@dataclass
class FewViewConfig:
    """When a capture counts as sparse and what is then switched on."""

    mode: Literal["auto", "on", "off"] = "auto"
    """``auto``: regularise when the capture is sparse (below); ``on``: always; ``off``: never (the
    config's own ``visible_levels``, ``distortion``, curvature and ``sparse_points`` apply as given)."""
    max_views: int = 40
    """``auto``: a capture with at most this many training photos is sparse."""
    max_spacing_deg: float = 15.0
    """``auto``: ... or one whose median angle between neighbouring cameras (seen from the object's
    centre) exceeds this many degrees."""
    start_levels: float = 4.0
    """Hash-grid levels fully visible at step 0 (the rest fade in, one after the other)."""
    annealing_fraction: float = 0.5
    """All levels are visible after this fraction of the run's steps."""
    distortion: float = 0.01
    """Distortion-loss weight for density fields."""
    curvature: float = 5e-4
    """Curvature-loss weight for SDF fields with ``smooth_sdf`` (the default run uses
    ``SDFTrainingConfig.curvature``)."""
    smooth_sdf: Literal["auto", "on", "off"] = "off"
    """Train SDF fields of sparse captures coarse-to-fine with the stronger ``curvature`` loss: ``off``
    never (the default: measured worse with masks and without, see the module docstring), ``auto`` when
    the photos have no masks (the default until session 27), ``on`` always."""
    sparse_points: float = 0.1
    """Weight of the SfM-point surface loss when the capture has sparse points."""
    sparse_points_reach: float = 0.5
    """Distance (normalised units; the field's cube is [-1, 1]) from which that loss pulls the surface at
    step 0. It shrinks linearly to ``sparse_points_outlier_distance`` by the end of the coarse-to-fine
    phase: the field starts as a small sphere that can lie far inside the points, and in unmasked photos
    nothing else pulls it out to them (the background explains the object's pixels it does not cover)."""
    sparse_points_outlier_distance: float = 0.05
    """From the end of the coarse-to-fine phase, points further than this from the surface count as SfM
    outliers and give no gradient."""
    view_independent: bool = True
    """Turn the field's view-dependent colour off on sparse captures (see the module docstring)."""


@dataclass
class FewViewPlan:
    """What :func:`plan_few_view` found and chose (logged, written to ``metrics.json``)."""

    sparse: bool
    """Whether few-view regularisation is on."""
    reason: str
    """Why, in words."""
    num_views: int
    """Training photos."""
    spacing_deg: float
    """Median angle between each training camera and its nearest neighbour, seen from the object centre."""
    coverage: float
    """Fraction of the directions around the object within 30 degrees of a training camera."""
    num_points: int
    """SfM points inside the field's box available to the surface loss."""
    regularisers: dict[str, Any] = field(default_factory=dict)
    """The regularisers switched on and their settings."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return dataclasses.asdict(self)


def view_spacing(camera_positions: Tensor, centre: Tensor) -> tuple[float, float]:
    """Median nearest-neighbour angle (degrees) of the view directions from ``centre`` [3] to cameras at
    ``camera_positions`` [N, 3], and the fraction of a Fibonacci sphere of directions within 30 degrees of
    one of them."""
    d = torch.nn.functional.normalize(camera_positions.double() - centre.double(), dim=-1)  # [N, 3]
    if len(d) < 2:
        spacing = 180.0
    else:
        cos = (d @ d.T).clamp(-1, 1)
        cos.fill_diagonal_(-1.0)
        spacing = float(torch.rad2deg(torch.arccos(cos.max(1).values)).median())
    k = torch.arange(2000, dtype=torch.float64) + 0.5
    z = 1 - 2 * k / 2000
    phi = math.pi * (1 + 5**0.5) * k
    r = (1 - z * z).sqrt()
    sphere = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)  # [2000, 3]
    covered = (sphere @ d.T).max(1).values >= math.cos(math.radians(30.0))
    return spacing, float(covered.double().mean())


def plan_few_view(
    cfg: ReconstructConfig,
    camera_positions: Tensor,
    centre: Tensor,
    points: Tensor | None,
    masked: bool = True,
) -> tuple[ReconstructConfig, FewViewPlan]:
    """Decide on few-view regularisation for training cameras at ``camera_positions`` [N, 3] (normalised
    frame) around the object's ``centre`` [3], with the capture's sparse ``points`` [P, 3] (or None).
    ``masked``: the photos have masks or alpha. A dense capture of unmasked photos of an SDF field with
    SfM points still gets the SfM-point loss (with its reach), unless ``few_view.mode`` is ``off``: no
    silhouette pulls its surface out of the initial sphere otherwise. Returns the config with the chosen
    regularisers applied, and the plan."""
    fv = cfg.few_view
    n = len(camera_positions)
    spacing, coverage = view_spacing(camera_positions, centre)
    inside = sparse_points_inside(points, cfg.field.bound)
    num_points = 0 if inside is None else len(inside)
    if fv.mode == "off":
        sparse, reason = False, "few_view.mode is 'off'"
    elif fv.mode == "on":
        sparse, reason = True, "few_view.mode is 'on'"
    elif n <= fv.max_views:
        sparse, reason = True, f"{n} training photos <= few_view.max_views {fv.max_views}"
    elif spacing > fv.max_spacing_deg:
        sparse = True
        reason = (
            f"neighbouring cameras {spacing:.1f} deg apart > few_view.max_spacing_deg {fv.max_spacing_deg}"
        )
    else:
        sparse = False
        reason = f"{n} photos, neighbours {spacing:.1f} deg apart: dense enough"
    plan = FewViewPlan(sparse, reason, n, spacing, coverage, num_points)
    end_step = max(1, int(fv.annealing_fraction * cfg.steps))
    unmasked_sdf = not masked and cfg.field.geometry == "sdf" and fv.mode != "off"
    if not sparse and not (unmasked_sdf and num_points > 0 and fv.sparse_points > 0):
        return cfg, plan
    if not sparse:
        plan.reason += "; unmasked photos: the SfM points pull the surface"
        return dataclasses.replace(cfg, **_sparse_point_changes(fv, num_points, end_step, plan)), plan
    changes: dict[str, Any] = {}
    sdf = cfg.field.geometry == "sdf"
    smooth = fv.smooth_sdf == "on" or (fv.smooth_sdf == "auto" and not masked)
    if not sdf or smooth:
        levels = cfg.field.grid.n_levels
        start = min(float(levels), fv.start_levels)
        changes["visible_levels"] = Linear(start, float(levels), 0, end_step)
        plan.regularisers["coarse_to_fine"] = {
            "start_levels": start,
            "levels": levels,
            "until_step": end_step,
        }
    if fv.view_independent and cfg.field.view_dependent:
        changes["field"] = dataclasses.replace(cfg.field, view_dependent=False)
        plan.regularisers["view_independent_colour"] = True
    if sdf and smooth:
        changes["sdf_training"] = dataclasses.replace(cfg.sdf_training, curvature=Constant(fv.curvature))
        plan.regularisers["curvature"] = fv.curvature
    elif not sdf:
        changes["distortion"] = Constant(fv.distortion)
        plan.regularisers["distortion"] = fv.distortion
    if num_points > 0 and fv.sparse_points > 0:
        changes.update(_sparse_point_changes(fv, num_points, end_step, plan))
    return dataclasses.replace(cfg, **changes), plan


def _sparse_point_changes(
    fv: FewViewConfig, num_points: int, end_step: int, plan: FewViewPlan
) -> dict[str, Any]:
    """The SfM-point loss with its shrinking reach (config changes), recorded in ``plan``."""
    reach = max(fv.sparse_points_reach, fv.sparse_points_outlier_distance)
    plan.regularisers["sfm_points"] = {
        "weight": fv.sparse_points,
        "points": num_points,
        "reach": [reach, fv.sparse_points_outlier_distance, end_step],
    }
    return {
        "sparse_points": Constant(fv.sparse_points),
        "sparse_points_max_distance": Linear(reach, fv.sparse_points_outlier_distance, 0, end_step),
    }


def level_weights(visible_levels: float, n_levels: int) -> Tensor:
    """Weights ``[n_levels]`` of the hash grid's levels when ``visible_levels`` (a real number) are
    visible: 1 for the first ``floor(visible_levels)``, the fraction for the next, 0 beyond."""
    return (visible_levels - torch.arange(n_levels, dtype=torch.float32)).clamp(0.0, 1.0)


def apply_visible_levels(field_: NeRFField, cfg: ReconstructConfig, step: int) -> None:
    """Set the field's level weights for ``step`` from ``cfg.visible_levels`` (None: all levels)."""
    if cfg.visible_levels is None:
        field_.level_weights = None
        return
    n = cfg.field.grid.n_levels
    v = cfg.visible_levels.at(step)
    field_.level_weights = None if v >= n else level_weights(v, n)


def sparse_points_inside(points: Tensor | None, bound: float) -> Tensor | None:
    """The sparse points ``[P, 3]`` inside the field's cube ``[-bound, bound]^3`` (None when there are none)."""
    if points is None or len(points) == 0:
        return None
    inside = points[(points.abs() <= bound).all(-1)]
    return inside if len(inside) else None


def sparse_point_loss(
    field_: NeRFField,
    points: Tensor,
    num: int,
    generator: torch.Generator,
    surface_density: float,
    max_distance: float = 0.05,
) -> Tensor:
    """Pull the field's surface through ``num`` random sparse ``points`` [P, 3] (on the field's device).

    SDF fields: ``mean(min(|s(p)|, max_distance))`` (points further than ``max_distance`` from the surface
    are treated as SfM outliers and give no gradient). Density fields: ``mean(relu(1 - sigma(p) /
    surface_density))``, zero once a point is at least as dense as the surface level."""
    pick = torch.randint(len(points), (num,), generator=generator).to(points.device)
    p = points[pick]
    if field_.is_sdf:
        return field_.sdf(p).abs().clamp(max=max_distance).mean()  # type: ignore[union-attr]
    sigma = field_.density(p)  # type: ignore[operator]
    return torch.relu(1.0 - sigma / surface_density).mean()
