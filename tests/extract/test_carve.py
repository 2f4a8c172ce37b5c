"""Carving the table-coloured solid that rises from the cut (:mod:`t23d.extract.carve`) on an analytic red
can standing on a table, with a brown skirt of solid grown against its side down to the table."""

from __future__ import annotations

import json

import numpy as np
import torch

from t23d.extract.carve import carve_table_coloured

FLOOR_Z, CUT = -0.5, 0.05
PLANE = np.array([0.0, 0.0, 1.0, FLOOR_Z])
BOX = np.array([[-0.7, -0.5, FLOOR_Z], [0.7, 0.5, 0.4]])
RED, BROWN = np.array([0.8, 0.1, 0.1]), np.array([0.5, 0.35, 0.2])


def box_sdf(points: torch.Tensor, lo: list[float], hi: list[float]) -> torch.Tensor:
    centre, half = (torch.tensor(lo) + torch.tensor(hi)) / 2, (torch.tensor(hi) - torch.tensor(lo)) / 2
    q = (points - centre).abs() - half
    return q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)


def can(points: torch.Tensor) -> torch.Tensor:
    """Radius 0.3, from the table up to z 0.3."""
    return torch.maximum(points[:, :2].norm(dim=-1) - 0.3, (points[:, 2] + 0.1).abs() - 0.4)


def can_and_skirt(points: torch.Tensor) -> torch.Tensor:
    """The can with a slab of solid against its side, from the table up to z 0."""
    return torch.minimum(can(points), box_sdf(points, [0.2, -0.1, FLOOR_Z], [0.6, 0.1, 0.0]))


def colours(points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """The can red except a brown patch high on its far side; the skirt brown."""
    brown = (points[:, :2].norm(dim=-1) > 0.31) | ((points[:, 0] < -0.2) & (points[:, 2] > 0.2))
    return torch.where(brown[:, None], torch.tensor(BROWN).float(), torch.tensor(RED).float())


def palettes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return np.clip(RED + rng.normal(0, 0.03, (100, 3)), 0, 1), np.clip(
        BROWN + rng.normal(0, 0.03, (100, 3)), 0, 1
    )


def test_the_skirt_is_carved_and_the_object_kept():
    objects, table = palettes()
    carved, report = carve_table_coloured(
        can_and_skirt, colours, PLANE, CUT, BOX, objects, table, resolution=96
    )
    inside = torch.tensor(
        [[0.45, 0.0, -0.25], [0.55, 0.05, -0.4], [0.0, 0.0, -0.1], [-0.25, 0.0, 0.2], [0.0, 0.0, -0.47]]
    )
    s = carved(inside)
    assert s[0] > 0 and s[1] > 0  # the skirt is gone
    assert s[2] < 0 and s[3] < 0  # the can, and its brown patch that does not reach the cut, stay
    assert s[4] < 0  # below the cut nothing changes (the cut removes it later)
    assert 0.0 < report.carved < 0.5 and 0.0 < report.table_coloured < 0.5
    # the can's own side, away from the skirt, is where it was
    side = torch.tensor([[-0.3, 0.0, -0.2], [0.0, 0.3, -0.2]])
    assert torch.allclose(carved(side), can(side), atol=1e-6)
    json.dumps(report.to_dict())


def test_an_object_of_its_own_colour_is_left_as_it_is():
    objects, table = palettes()

    def red(points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        return torch.tensor(RED).float().expand(len(points), 3)

    same, report = carve_table_coloured(can_and_skirt, red, PLANE, CUT, BOX, objects, table, resolution=64)
    assert same is can_and_skirt and report.carved == 0.0 and report.surface_cells > 0
    few, report = carve_table_coloured(
        can_and_skirt, colours, PLANE, CUT, BOX, objects[:5], table, resolution=64
    )
    assert few is can_and_skirt and report.carved == 0.0 and "too few" in report.reason


def test_the_cut_is_no_surface_a_can_merged_with_the_learnt_table_keeps_its_base():
    """The learnt table is solid below the plane and merged with the can; the cut through them is not a
    surface of the field, so its (table-brown) colours must not claim the can's base."""
    objects, table = palettes()

    def can_in_table(points: torch.Tensor) -> torch.Tensor:
        return torch.minimum(can(points), points[:, 2] - FLOOR_Z)

    def brown_table(points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        low = (points[:, 2] < FLOOR_Z + 0.01) | (points[:, :2].norm(dim=-1) > 0.31)
        return torch.where(low[:, None], torch.tensor(BROWN).float(), torch.tensor(RED).float())

    kept, report = carve_table_coloured(
        can_in_table, brown_table, PLANE, CUT, BOX, objects, table, resolution=64
    )
    assert kept is can_in_table and report.carved == 0.0
