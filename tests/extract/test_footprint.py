"""The region grown along the support plane to a base that spreads out over the table (analytic SDFs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t23d.common.errors import ConfigError
from t23d.extract.footprint import grow_over_support

FLOOR_Z = -0.5
FLOOR = np.array([0.0, 0.0, 1.0, FLOOR_Z])
CUT = 0.05  # a photo run's cut height above its support plane
STEM_BOX = np.array([[-0.2, -0.2, FLOOR_Z], [0.2, 0.2, 0.6]])  # what the points above the plane give


def cylinder(points: torch.Tensor, centre_xy: tuple[float, float], radius: float, z0: float, z1: float):
    """A vertical cylinder from ``z0`` to ``z1`` (an SDF, exact enough for its sign)."""
    r = (points[:, :2] - torch.tensor(centre_xy)).norm(dim=-1) - radius
    half, mid = (z1 - z0) / 2, (z1 + z0) / 2
    return torch.maximum(r, (points[:, 2] - mid).abs() - half)


def table(points: torch.Tensor) -> torch.Tensor:
    """The learnt table: solid below the floor, with a mound 0.07 high far from the object."""
    mound = cylinder(points, (-0.8, -0.8), 0.1, FLOOR_Z, FLOOR_Z + 0.07)
    return torch.minimum(points[:, 2] - FLOOR_Z, mound)


def candlestick(points: torch.Tensor) -> torch.Tensor:
    """A stem of radius 0.1 on a disc foot of radius 0.6 and 0.1 high, standing on the table, and a
    second object (a can of radius 0.1) on the table at x = 0.85, not touching the foot."""
    foot = cylinder(points, (0.0, 0.0), 0.6, FLOOR_Z, FLOOR_Z + 0.1)
    stem = cylinder(points, (0.0, 0.0), 0.1, FLOOR_Z, 0.5)
    other = cylinder(points, (0.85, 0.0), 0.1, FLOOR_Z, FLOOR_Z + 0.3)
    return torch.minimum(torch.minimum(torch.minimum(foot, stem), other), table(points))


def test_a_foot_cut_off_by_the_box_is_taken_back_and_nothing_else():
    growth = grow_over_support(candlestick, FLOOR, STEM_BOX, CUT)
    box = np.asarray(growth.box)
    assert growth.grown
    # the foot's whole disc (radius 0.6), within a grid cell or two of margin
    np.testing.assert_allclose(box[0, :2], [-0.6, -0.6], atol=0.03)
    np.testing.assert_allclose(box[1, :2], [0.6, 0.6], atol=0.03)
    assert box[1, 0] < 0.75  # the can beside it is not connected to the foot above the cut
    assert box[0, 0] > -0.7 and box[0, 1] > -0.7  # nor is the table's mound
    np.testing.assert_allclose(box[:, 2], STEM_BOX[:, 2])  # the height is the box's own
    assert growth.slice_heights == pytest.approx([CUT + 0.01, CUT + 0.03])


def test_an_object_inside_its_box_keeps_the_box():
    def stem_only(points: torch.Tensor) -> torch.Tensor:
        return torch.minimum(cylinder(points, (0.0, 0.0), 0.1, FLOOR_Z, 0.5), table(points))

    growth = grow_over_support(stem_only, FLOOR, STEM_BOX, CUT)
    assert not growth.grown
    np.testing.assert_allclose(growth.box, STEM_BOX)


def test_a_base_lower_than_the_cut_is_not_reached():
    def low_foot(points: torch.Tensor) -> torch.Tensor:  # a foot 0.04 high: below the cut, cut off anyway
        foot = cylinder(points, (0.0, 0.0), 0.6, FLOOR_Z, FLOOR_Z + 0.04)
        stem = cylinder(points, (0.0, 0.0), 0.1, FLOOR_Z, 0.5)
        return torch.minimum(torch.minimum(foot, stem), table(points))

    assert not grow_over_support(low_foot, FLOOR, STEM_BOX, CUT).grown


def test_the_box_is_clipped_to_the_field_and_a_bad_plane_is_refused():
    def wide(points: torch.Tensor) -> torch.Tensor:  # a foot wider than the field
        foot = cylinder(points, (0.0, 0.0), 1.5, FLOOR_Z, FLOOR_Z + 0.1)
        return torch.minimum(torch.minimum(foot, cylinder(points, (0, 0), 0.1, FLOOR_Z, 0.5)), table(points))

    box = np.asarray(grow_over_support(wide, FLOOR, STEM_BOX, CUT).box)
    assert box[0, 0] == -1.0 and box[1, 1] == 1.0
    with pytest.raises(ConfigError, match="support plane"):
        grow_over_support(candlestick, np.array([0.0, 0.0, 2.0, FLOOR_Z]), STEM_BOX, CUT)
