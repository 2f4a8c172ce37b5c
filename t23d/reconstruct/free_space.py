"""Free space from the sparse points' visibility: a photo that saw a point saw nothing in front of it.

Every point of a COLMAP, SfM or triangulated model comes with its track, the photos that saw it. The
segment from each of those cameras to the point is therefore empty, up to a small ``margin`` before the
point (its position error and the surface it lies on). Along these segments, inside the field's box, the
field is pushed to free space: for SDF fields ``relu(-s(x))`` (no solid there), for density fields
``min(sigma(x) / surface, 1)`` (no matter there).

Why: without masks nothing but photo consistency carves the space around an object, and under light that
changes from photo to photo, a region that every camera sees against a shadowed, changing background (the
space under a head's jaw, above the table) is explained more cheaply by a view-dependent skirt of surface
than by the varying table behind it (benchmarks/RESULTS.md, issue 12: 29 % of the asset's area there).
The points behind such a region, on the table and on the walls, are geometry the photos agree on whatever
the light; each of their rays crosses the region and says it is empty. The constraint is exact for a
correct track, and a wrong one moves only the few samples on its own rays.

Opt-in (``mode: auto`` turns it on for photos without masks whose points have tracks; masks carve free
space already, through the silhouettes). Measured on the unmasked monkey-head captures
(benchmarks/RESULTS.md, session 21): the constraint holds after training (0.15 % of the segments' samples
solid) yet the skirt stays, a hair's breadth beside the lines (28 % of the asset's area against 31 %;
+0.3 dB), and under fixed light the asset came out 0.5 dB worse. ``cone_px`` widens each line into the
cone of the feature's patch of pixels (3 px: +1.2 dB under changing light, the skirt still there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

if TYPE_CHECKING:
    from t23d.field.nerf import NeRFField


@dataclass
class FreeSpaceConfig:
    """The free-space loss along the rays from each camera to the sparse points it saw."""

    mode: Literal["auto", "on", "off"] = "off"
    """``auto``: on for photos without masks whose sparse points have tracks; ``on``: whenever the points
    have tracks; ``off`` (the default; see the module docstring): never."""
    weight: float = 0.1
    """Loss weight."""
    margin: float = 0.05
    """Length (normalised units; the field's box is ``[-bound, bound]^3``) left out at the point's end of
    each segment: the point's own error and the surface it lies on."""
    samples_per_step: int = 2048
    """Points drawn along the segments per step (one random segment and position each)."""
    cone_px: float = 0.0
    """Radius (pixels of the photo) of a cone around each segment whose points count as free too (0: the
    segment alone). A matched feature describes a patch of pixels around the point, each of which saw the
    same surface; a line alone lets the field keep solid a hair's breadth beside it."""


def free_space_segments(
    points: Tensor,
    point_views: Tensor,
    c2w: Tensor,
    train_indices: list[int],
    bound: float,
    margin: float,
    cone_slope: Tensor | None = None,
) -> Tensor:
    """The empty segments ``[S, 2, 4]`` (start and end: position and cone radius) inside the box
    ``[-bound, bound]^3``: for each pair ``(point, image)`` of ``point_views`` [E, 2] whose image is a
    training image, the segment from the camera centre (``c2w`` [N, 4, 4]) to ``points`` [P, 3],
    shortened by ``margin`` at the point's end and clipped to the box. ``cone_slope`` [N] (None: 0): each
    camera's cone radius per unit of distance from it (:func:`cone_slopes`). Pairs whose segment misses
    the box (or is shorter than the margin) are dropped."""
    empty = torch.zeros(0, 2, 4)
    if len(point_views) == 0:
        return empty
    train = torch.zeros(len(c2w), dtype=torch.bool)
    train[torch.as_tensor(train_indices, dtype=torch.long)] = True
    views = point_views[train[point_views[:, 1]]]
    origin = c2w[views[:, 1], :3, 3].double()  # [E, 3]
    slope = (
        torch.zeros(len(views), dtype=torch.float64)
        if cone_slope is None
        else cone_slope[views[:, 1]].double()
    )
    d = points[views[:, 0]].double() - origin
    length = d.norm(dim=-1)
    keep = length > margin
    origin, d, length, slope = origin[keep], d[keep], length[keep], slope[keep]
    end = (length - margin) / length  # segment parameter of the shortened end
    # slab clipping of origin + t d, t in [0, end], to the box
    with torch.no_grad():
        safe = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
        t0 = (-bound - origin) / safe
        t1 = (bound - origin) / safe
        lo = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)
        hi = torch.minimum(torch.maximum(t0, t1).amin(-1), end)
    hit = hi > lo + 1e-9
    if not hit.any():
        return empty
    a = origin[hit] + lo[hit, None] * d[hit]
    b = origin[hit] + hi[hit, None] * d[hit]
    ra = (slope[hit] * lo[hit] * length[hit])[:, None]  # cone radius at each end
    rb = (slope[hit] * hi[hit] * length[hit])[:, None]
    return torch.stack([torch.cat([a, ra], -1), torch.cat([b, rb], -1)], 1).float()


def cone_slopes(intrinsics: Tensor, cone_px: float) -> Tensor:
    """Per camera (``intrinsics`` [N, 4] ``fx, fy, cx, cy``), the radius per unit of distance of a cone of
    ``cone_px`` pixels around a ray."""
    return cone_px / intrinsics[:, :2].double().mean(-1)


def dataset_segments(cfg: FreeSpaceConfig, dataset: Any, bound: float) -> Tensor | None:
    """The segments of ``dataset`` (a :class:`~t23d.data.dataset.PhotoDataset`) when ``cfg`` uses the loss
    on it (:func:`free_space_enabled`), else None; ``bound`` is the field's half-size."""
    views = getattr(dataset, "point_views", None)
    if not free_space_enabled(cfg, dataset.alphas is not None, views):
        return None
    slopes = cone_slopes(dataset.intrinsics, cfg.cone_px)
    return free_space_segments(
        dataset.points, views, dataset.c2w, dataset.train_indices, bound, cfg.margin, slopes
    )


def free_space_enabled(cfg: FreeSpaceConfig, masked: bool, point_views: Tensor | None) -> bool:
    """Whether a run uses the loss: ``cfg.mode`` for photos with masks (``masked``) or without, when the
    capture's points have tracks (``point_views``)."""
    if cfg.mode == "off" or point_views is None or len(point_views) == 0 or cfg.weight <= 0:
        return False
    return cfg.mode == "on" or not masked


def free_space_report(
    cfg: FreeSpaceConfig, masked: bool, point_views: Tensor | None, segments: int
) -> dict[str, Any]:
    """What the run chose, for the log, ``run.json`` and ``metrics.json``."""
    on = free_space_enabled(cfg, masked, point_views) and segments > 0
    if on:
        reason = f"{segments} camera-to-point segments cross the field's box"
    elif cfg.mode == "off":
        reason = "free_space.mode is 'off'"
    elif point_views is None or len(point_views) == 0:
        reason = "the capture's points have no tracks (or there are no points)"
    elif cfg.weight <= 0:
        reason = "free_space.weight is 0"
    elif masked and cfg.mode == "auto":
        reason = "the photos have masks: their silhouettes carve free space"
    else:
        reason = "no camera-to-point segment crosses the field's box"
    return {
        "on": on,
        "reason": reason,
        "segments": segments,
        "weight": cfg.weight if on else 0.0,
        "margin": cfg.margin,
    }


def free_space_loss(
    field_: NeRFField, segments: Tensor, num: int, generator: torch.Generator, surface_density: float
) -> Tensor:
    """The mean free-space penalty at ``num`` random points of random ``segments`` [S, 2, 4] (on the
    field's device; :func:`free_space_segments`), each point uniform in the disc of the segment's cone
    radius across it: ``relu(-sdf)`` for SDF fields, ``min(sigma / surface_density, 1)`` for density
    fields."""
    pick = torch.randint(len(segments), (num,), generator=generator).to(segments.device)
    t = torch.rand(num, 1, generator=generator).to(segments.device)
    seg = segments[pick]
    a, b = seg[:, 0, :3], seg[:, 1, :3]
    x = a + t * (b - a)
    radius = seg[:, 0, 3:] + t * (seg[:, 1, 3:] - seg[:, 0, 3:])  # [num, 1]
    if bool((radius > 0).any()):
        axis = torch.nn.functional.normalize(b - a, dim=-1)
        g = torch.randn(num, 3, generator=generator).to(segments.device)
        across = torch.nn.functional.normalize(g - (g * axis).sum(-1, keepdim=True) * axis, dim=-1)
        u = torch.rand(num, 1, generator=generator).to(segments.device)
        x = x + radius * u.sqrt() * across
    if field_.is_sdf:
        return torch.relu(-field_.sdf(x)).mean()  # type: ignore[union-attr]
    sigma = field_.density(x)  # type: ignore[operator]
    return (sigma / surface_density).clamp(max=1.0).mean()
