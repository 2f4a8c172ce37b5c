"""The support fillet's radius estimated from analytic SDFs of objects standing on a floor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from t23d.common.errors import ConfigError
from t23d.extract.fillet import estimate_support_fillet, radius_from_growth
from t23d.extract.grid import unblend_support

FLOOR_Z = -0.5
FLOOR = np.array([0.0, 0.0, 1.0, FLOOR_Z])
AABB = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
CUT = 0.05  # a photo run's cut height above its support plane


def smooth_union(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """The quadratic smooth minimum of two SDFs (radius ``k``): what a learnt SDF does at a concave corner."""
    gap = (k - (a - b).abs()).clamp(min=0.0)
    return torch.minimum(a, b) - gap * gap / (4.0 * k)


def can(points: torch.Tensor) -> torch.Tensor:
    """A cylinder of radius 0.35 standing on the floor, 0.8 tall (vertical walls)."""
    return torch.maximum(points[:, :2].norm(dim=-1) - 0.35, (points[:, 2] + 0.1).abs() - 0.4)


def box(points: torch.Tensor) -> torch.Tensor:
    """A 0.6 x 0.5 x 0.8 box standing on the floor."""
    q = (points - torch.tensor([0.1, 0.0, -0.1])).abs() - torch.tensor([0.3, 0.25, 0.4])
    return q.clamp(min=0).norm(dim=-1) + q.max(-1).values.clamp(max=0)


def sphere(points: torch.Tensor) -> torch.Tensor:
    """A sphere of radius 0.5 resting on the floor at its pole (0, 0, -0.5)."""
    return points.norm(dim=-1) - 0.5


def on_floor(obj, k: float):
    """``obj`` standing on the floor: its smooth union with it (radius ``k``), or the sharp one at 0."""

    def sdf(points: torch.Tensor) -> torch.Tensor:
        height = points[:, 2] - FLOOR_Z
        return torch.minimum(obj(points), height) if k == 0 else smooth_union(obj(points), height, k)

    return sdf


def test_radius_from_growth_inverts_the_fillet_of_a_vertical_wall():
    """Beside a vertical wall the fillet of radius R stands (sqrt(R) - sqrt(h))**2 out at height h."""
    for r in (0.1, 0.2, 0.4):
        for h in (0.02, 0.05, 0.08):
            assert radius_from_growth((r**0.5 - h**0.5) ** 2, h) == pytest.approx(r, rel=1e-9)
    assert radius_from_growth(0.0, 0.05) == pytest.approx(0.05)
    assert radius_from_growth(-0.01, 0.05) == pytest.approx(0.05)  # an overhang: no fillet above h


@pytest.mark.parametrize("k", [0.12, 0.15, 0.2])
@pytest.mark.parametrize("obj", [can, box], ids=["can", "box"])
def test_a_smooth_union_with_the_floor_gives_its_radius_back(obj, k):
    """An object with vertical walls blended into the floor with radius k: the estimate is k."""
    estimate = estimate_support_fillet(on_floor(obj, k), FLOOR, AABB, CUT)
    assert estimate.radius == pytest.approx(k, abs=0.005), estimate
    assert estimate.heights == pytest.approx([CUT, CUT + 0.01, CUT + 0.02, CUT + 0.03])
    assert estimate.radii == pytest.approx([k] * 4, abs=0.005)  # the same at every height below k
    growth = (k**0.5 - CUT**0.5) ** 2
    assert estimate.median_growths[0] == pytest.approx(growth, abs=0.002)
    # one point per grid edge crossed, along both axes: about 4 / pi x the outline's length per spacing
    outline = 2 * math.pi * (0.35 + growth) if obj is can else 2.2 + 8 * growth
    expected = (4 / math.pi if obj is can else 1.0) * outline / 0.005
    assert estimate.num_points[0] == pytest.approx(expected, rel=0.1)


def test_a_fillet_taller_than_the_reach_is_under_estimated():
    """Above a foot point the SDF is the distance to the wall only from the height R + growth up: with
    the default reach (0.2 above the cut at 0.05) a radius of 0.3 reads short, a longer reach finds it."""
    sdf = on_floor(can, 0.3)
    assert 0.25 < estimate_support_fillet(sdf, FLOOR, AABB, CUT).radius < 0.29
    assert estimate_support_fillet(sdf, FLOOR, AABB, CUT, reach=0.4).radius == pytest.approx(0.3, abs=0.005)


@pytest.mark.parametrize("obj", [can, box], ids=["can", "box"])
def test_a_sharp_union_with_the_floor_has_no_fillet(obj):
    """min(object, floor): the section at the cut height is the wall's own; the radius is 0."""
    estimate = estimate_support_fillet(on_floor(obj, 0.0), FLOOR, AABB, CUT)
    assert estimate.radius == 0.0
    assert max(abs(g) for g in estimate.median_growths) < 1e-3 and estimate.reason.startswith("no fillet")


def test_a_small_fillet_below_the_noise_level_counts_as_none():
    """Radius 0.1 at the cut 0.05 stands out 0.0086, under ``min_growth`` 0.01: no fillet (its unblending
    would move the cut's outline by under 0.007); a lower ``min_growth`` finds it."""
    sdf = on_floor(can, 0.1)
    assert estimate_support_fillet(sdf, FLOOR, AABB, CUT).radius == 0.0
    finer = estimate_support_fillet(sdf, FLOOR, AABB, CUT, min_growth=0.002)
    assert finer.radius == pytest.approx(0.1, abs=0.01)


def test_the_estimate_follows_a_tilted_support_plane():
    """The same filleted can in a frame where the floor is tilted and shifted: the same radius."""
    c, s = math.cos(0.6), math.sin(0.6)
    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    shift = torch.tensor([0.05, -0.1, 0.08])
    upright = on_floor(can, 0.2)

    def tilted(points: torch.Tensor) -> torch.Tensor:  # the scene rotated by rot, then shifted
        return upright((points - shift) @ rot)

    normal = rot @ torch.tensor([0.0, 0.0, 1.0])
    offset = float(normal @ (rot @ torch.tensor([0.0, 0.0, FLOOR_Z]) + shift))
    plane = np.array([*normal.tolist(), offset])
    estimate = estimate_support_fillet(tilted, plane, AABB * 1.3, CUT)
    assert estimate.radius == pytest.approx(0.2, abs=0.01)


def test_the_estimate_unblended_gives_the_can_its_wall_back():
    """Unblending with the estimated radius puts the outline at the cut height back on the can's wall."""
    learnt = on_floor(can, 0.2)
    radius = estimate_support_fillet(learnt, FLOOR, AABB, CUT).radius
    unblended = unblend_support(learnt, FLOOR, radius)
    x = torch.linspace(0.0, 0.9, 9001)
    ray = torch.stack([x, torch.zeros_like(x), torch.full_like(x, FLOOR_Z + CUT)], -1)
    for fn, expected in ((learnt, 0.35 + (0.2**0.5 - CUT**0.5) ** 2), (unblended, 0.35)):
        edge = float(x[torch.nonzero(fn(ray) > 0)[0, 0]])
        assert edge == pytest.approx(expected, abs=0.003)


def test_a_foot_of_one_height_counts_less_than_a_fillet():
    """A ledge around a sharp-cornered can, 0.055 above the floor and 0.1 wide (a bump of the table just
    over the cut, say): the lowest section stands out 0.1 (radius 0.29 on its own), the three above it
    not at all (radius = height); the median over the heights is theirs."""

    def ledged(points: torch.Tensor) -> torch.Tensor:
        ledge = torch.maximum(points[:, :2].norm(dim=-1) - 0.45, points[:, 2] - FLOOR_Z - 0.055)
        return torch.minimum(can(points), ledge)

    estimate = estimate_support_fillet(on_floor(ledged, 0.0), FLOOR, AABB, CUT)
    assert estimate.radii[0] == pytest.approx(radius_from_growth(0.1, CUT), abs=0.01)
    assert estimate.radii[1:] == pytest.approx(estimate.heights[1:], abs=0.002)  # no foot: R = h
    assert estimate.radius == pytest.approx(CUT + 0.025, abs=0.002)  # median of 0.29, 0.06, 0.07, 0.08


def test_the_wall_is_the_nearest_it_comes_above_the_foot_not_where_the_reach_ends():
    """A can with a wider collar 0.22-0.3 above the floor: the SDF straight above the foot falls again
    under the collar; the growth is its largest value (the wall between fillet and collar)."""

    def collared(points: torch.Tensor) -> torch.Tensor:
        collar = torch.maximum(points[:, :2].norm(dim=-1) - 0.5, (points[:, 2] - FLOOR_Z - 0.26).abs() - 0.04)
        return torch.minimum(can(points), collar)

    estimate = estimate_support_fillet(on_floor(collared, 0.15), FLOOR, AABB, CUT)
    assert estimate.radius == pytest.approx(0.15, abs=0.005)


def test_a_rounded_contact_is_under_estimated_never_over():
    """The model is a vertical wall: under a sphere resting on its pole the wall above the foot curves
    outwards, so the foot looks shorter than it is (a documented limitation): never more than the true
    radius, and 0 here, where the fillet at the cut height is small."""
    for k in (0.1, 0.2, 0.3):
        estimate = estimate_support_fillet(on_floor(sphere, k), FLOOR, AABB, CUT)
        assert estimate.radius <= k
    assert estimate_support_fillet(on_floor(sphere, 0.2), FLOOR, AABB, CUT).radius == 0.0


def test_a_fillet_along_a_small_part_of_the_outline_is_left_alone():
    """The median over the outline: a flare on one side of a sharp-cornered box is not a fillet all round."""
    sharp = on_floor(box, 0.0)
    flared = on_floor(box, 0.3)

    def one_side(points: torch.Tensor) -> torch.Tensor:
        return torch.where(points[:, 0] > 0.35, flared(points), sharp(points))

    assert estimate_support_fillet(one_side, FLOOR, AABB, CUT).radius == 0.0


def test_too_few_section_points_or_a_bad_height_are_handled():
    """No surface at the cut height (an empty scene): radius 0 and why; a height <= 0 or a bad spacing
    is refused with the value in the message."""
    estimate = estimate_support_fillet(lambda p: p[:, 2] - FLOOR_Z + 1.0, FLOOR, AABB, CUT)
    assert estimate.radius == 0.0 and estimate.num_points == [0] * 4
    assert estimate.median_growths == [None] * 4 and estimate.radii == [None] * 4
    assert "fewer than" in estimate.reason
    with pytest.raises(ConfigError, match=r"height must be a number > 0; got 0.0"):
        estimate_support_fillet(on_floor(can, 0.2), FLOOR, AABB, 0.0)
    with pytest.raises(ConfigError, match="spacing > 0, reach > 0 and band >= 0; got -0.01"):
        estimate_support_fillet(on_floor(can, 0.2), FLOOR, AABB, CUT, spacing=-0.01)
