"""The region grown to the object's learnt solid where it reaches beyond the box (analytic SDFs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t23d.common.errors import ConfigError
from t23d.extract.reach import grow_to_reach, object_component

FLOOR_Z = -0.5
CUT = np.array([0.0, 0.0, 1.0, FLOOR_Z + 0.025])  # a photo run's cut just above its table
POINTS_BOX = np.array([[-0.3, -0.3, FLOOR_Z], [0.3, 0.3, 0.2]])  # the sparse points miss the candle


def cylinder(points: torch.Tensor, centre_xy: tuple[float, float], radius: float, z0: float, z1: float):
    """A vertical cylinder from ``z0`` to ``z1`` (an SDF, exact enough for its sign)."""
    r = (points[:, :2] - torch.tensor(centre_xy)).norm(dim=-1) - radius
    half, mid = (z1 - z0) / 2, (z1 + z0) / 2
    return torch.maximum(r, (points[:, 2] - mid).abs() - half)


def candlestick(points: torch.Tensor) -> torch.Tensor:
    """A body (radius 0.25) to z 0.1 with a thin candle (radius 0.03) on it to z 0.7, on the table; a
    floater (a ball at z 0.6, x 0.7) and a flat mound on the table at x -0.8, neither touching it."""
    body = cylinder(points, (0.0, 0.0), 0.25, FLOOR_Z, 0.1)
    candle = cylinder(points, (0.0, 0.0), 0.03, 0.0, 0.7)
    floater = (points - torch.tensor([0.7, 0.0, 0.6])).norm(dim=-1) - 0.1
    mound = cylinder(points, (-0.55, 0.0), 0.3, FLOOR_Z, FLOOR_Z + 0.04)  # touches the body on the table
    table = points[:, 2] - FLOOR_Z
    return torch.minimum(torch.minimum(torch.minimum(body, candle), torch.minimum(floater, mound)), table)


def test_a_thin_part_the_points_missed_is_taken_back_and_nothing_else():
    growth = grow_to_reach(candlestick, POINTS_BOX, CUT)
    box = np.asarray(growth.box)
    assert growth.grown and growth.cells_outside > 0
    assert box[1, 2] == pytest.approx(0.7, abs=0.04)  # the candle's top, with a cell or two of margin
    assert box[1, 0] < 0.4  # the floater beside the candle is not connected to it
    assert box[0, 0] == pytest.approx(POINTS_BOX[0, 0])  # the mound lies on the table, under the clearance
    np.testing.assert_allclose(box[:, 1], POINTS_BOX[:, 1])  # nothing reaches beyond the box sideways
    assert box[0, 2] == pytest.approx(POINTS_BOX[0, 2])  # the box never shrinks


def test_an_object_inside_its_box_keeps_the_box_even_where_it_touches_a_face():
    def body_only(points: torch.Tensor) -> torch.Tensor:  # its top is the box's top face
        return torch.minimum(cylinder(points, (0.0, 0.0), 0.25, FLOOR_Z, 0.2), points[:, 2] - FLOOR_Z)

    growth = grow_to_reach(body_only, POINTS_BOX, CUT)
    assert not growth.grown and growth.cells_outside == 0 and growth.cells > 0
    np.testing.assert_allclose(growth.box, POINTS_BOX)


def test_without_a_cut_all_the_solid_counts_and_bad_input_is_refused():
    growth = grow_to_reach(candlestick, POINTS_BOX, None)  # the table itself is then the object's
    assert np.asarray(growth.box)[1, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="spacing"):
        grow_to_reach(candlestick, POINTS_BOX, CUT, spacing=0.0)
    with pytest.raises(ConfigError, match="cut plane"):
        grow_to_reach(candlestick, POINTS_BOX, np.array([0.0, 0.0, 2.0, 0.0]))


def test_the_object_is_the_component_with_most_cells_in_the_box():
    solid = np.zeros((6, 1, 1), dtype=bool)
    solid[[0, 1, 3, 4, 5], 0, 0] = True  # two components: cells 0-1 and 3-5
    in_box = np.zeros_like(solid)
    in_box[[1, 3], 0, 0] = True  # one cell of each in the box: a tie goes to the first label
    assert object_component(solid, in_box)[:, 0, 0].tolist() == [True, True, False, False, False, False]
    in_box[4, 0, 0] = True
    assert object_component(solid, in_box)[:, 0, 0].tolist() == [False, False, False, True, True, True]
    assert not object_component(solid, np.zeros_like(solid)).any()
