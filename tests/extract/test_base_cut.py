"""The cut lowered by colour (:mod:`t23d.extract.base_cut`) on an analytic can standing on a table: its
rim is the object's colour down to the table, the learnt blend around its foot the table's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from t23d.extract.base_cut import OBJECT_VOTE, lower_cut_by_colour, object_share

FLOOR_Z = -0.5
PLANE = np.array([0.0, 0.0, 1.0, FLOOR_Z])
BOX = np.array([[-0.2, -0.2, FLOOR_Z], [0.2, 0.2, 0.3]])
RED, BROWN = np.array([0.8, 0.1, 0.1]), np.array([0.5, 0.35, 0.2])


def can_with_blend(points: torch.Tensor) -> torch.Tensor:
    """A can of radius 0.3 standing on the table, its foot blended into it below a height of 0.02 (the
    section widens by 4 per unit of height); sign-correct, not a true distance."""
    h = points[:, 2] - FLOOR_Z
    radius = 0.3 + 4.0 * (0.02 - h).clamp(min=0.0)
    return torch.maximum(points[:, :2].norm(dim=-1) - radius, torch.maximum(-h, h - 0.8))


def red_can_brown_blend(points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """The can red, what lies outside its radius (the blend) the table's brown."""
    outside = points[:, :2].norm(dim=-1) > 0.302
    return torch.where(outside[:, None], torch.tensor(BROWN).float(), torch.tensor(RED).float())


def palettes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        np.clip(RED + rng.normal(0, 0.03, (200, 3)), 0, 1),
        np.clip(BROWN + rng.normal(0, 0.03, (300, 3)), 0, 1),
    )


def test_object_share_counts_the_colours_nearer_the_object_palette():
    objects, table = palettes()
    assert object_share(np.array([RED, RED, BROWN, [0.7, 0.15, 0.1]]), objects, table) == 0.75
    assert object_share(np.zeros((0, 3)), objects, table) == 0.0


def test_the_cut_comes_down_the_rim_and_stops_where_the_blend_has_the_table_colour():
    objects, table = palettes()
    cut = lower_cut_by_colour(can_with_blend, red_can_brown_blend, PLANE, BOX, 0.05, 0.002, objects, table)
    assert cut.lowered and cut.height == pytest.approx(0.02, abs=1e-9)
    shares = [s["object_share"] for s in cut.slices]
    assert (
        all(s >= OBJECT_VOTE for s in shares[:-1]) and shares[-1] < OBJECT_VOTE
    )  # the last slice read is the blend
    assert cut.slices[-1]["height"] == pytest.approx(0.015) and cut.margin == 0.05
    json.dumps(cut.to_dict())  # written to export.json as is


def test_a_blend_with_the_table_colour_right_below_the_margin_keeps_the_cut():
    objects, table = palettes()

    def brown_below_margin(points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        low = (points[:, 2] - FLOOR_Z) < 0.05
        return torch.where(low[:, None], torch.tensor(BROWN).float(), torch.tensor(RED).float())

    cut = lower_cut_by_colour(can_with_blend, brown_below_margin, PLANE, BOX, 0.05, 0.002, objects, table)
    assert not cut.lowered and cut.height == 0.05 and len(cut.slices) == 1
    assert "table's colours" in cut.reason


def test_the_cut_never_goes_below_the_floor_and_needs_coloured_points():
    objects, table = palettes()

    def all_red(points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        return torch.tensor(RED).float().expand(len(points), 3)

    cut = lower_cut_by_colour(can_with_blend, all_red, PLANE, BOX, 0.05, 0.031, objects, table)
    assert cut.height == pytest.approx(0.035) and "as low as it may go" in cut.reason
    few = lower_cut_by_colour(can_with_blend, all_red, PLANE, BOX, 0.05, 0.002, objects[:5], table)
    assert not few.lowered and few.height == 0.05 and "too few" in few.reason and few.slices == []
