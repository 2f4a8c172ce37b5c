"""The asset over a support plane (:mod:`t23d.reconstruct.support`): the cut, lowered by colour, the region
grown over the plane, the fillet undone and the base extended, on analytic SDFs and colours."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


def test_the_support_fillet_radius_reaches_the_exported_sdf_only_when_it_applies():
    """``data.support_fillet_radius`` wraps the run's SDF with :func:`t23d.extract.grid.unblend_support`
    about the scene's support plane (not the cut plane above it); off at 0, without a plane, or for
    density fields (no SDF)."""
    from t23d.reconstruct.support import _unblended

    def sdf(points: torch.Tensor) -> torch.Tensor:
        return points[:, 2] + 0.5  # a floor at z = -0.5: the plane itself

    scene = {"support_plane": {"normal": [0.0, 0.0, 1.0], "offset": -0.5, "rms": 0.001}}
    assert _unblended(sdf, scene, 0.0) is sdf
    assert _unblended(sdf, {"support_plane": None}, 0.2) is sdf
    assert _unblended(None, scene, 0.2) is None
    wrapped = _unblended(sdf, scene, 0.2)
    on_floor = torch.tensor([[0.3, 0.0, -0.5], [0.0, 0.0, 0.0]])
    # the floor is lifted by r / 4 = 0.05 at the plane; 0.5 above it nothing changes
    assert wrapped(on_floor).tolist() == pytest.approx([0.05, 0.5], abs=1e-6)


def test_support_fillet_radius_auto_is_estimated_from_the_sdf_at_the_cut_height():
    """``data.support_fillet_radius``: a number is used as given, with nothing to record; ``auto`` is
    :func:`t23d.extract.fillet.estimate_support_fillet` at the cut height (its record goes to
    ``export.json``), and 0 without an SDF, a support plane or a cut."""
    from t23d.reconstruct.support import support_fillet_radius

    k, floor_z = 0.2, -0.5

    def filleted_can(points: torch.Tensor) -> torch.Tensor:  # a can on the floor, blended with radius k
        can = torch.maximum(points[:, :2].norm(dim=-1) - 0.35, (points[:, 2] + 0.1).abs() - 0.4)
        height = points[:, 2] - floor_z
        gap = (k - (can - height).abs()).clamp(min=0.0)
        return torch.minimum(can, height) - gap * gap / (4.0 * k)

    scene = {
        "support_plane": {"normal": [0.0, 0.0, 1.0], "offset": floor_z, "rms": 0.001},
        "aabb": [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]],
    }
    cut = np.array([0.0, 0.0, 1.0, floor_z + 0.05])
    assert support_fillet_radius(filleted_can, scene, 0.1, cut) == (0.1, None)
    radius, record = support_fillet_radius(filleted_can, scene, "auto", cut)
    assert radius == pytest.approx(k, abs=0.005)
    assert record["radius"] == radius and record["heights"][0] == pytest.approx(0.05)
    json.dumps(record)  # written to export.json as is
    assert support_fillet_radius(None, scene, "auto", cut) == (0.0, None)
    assert support_fillet_radius(filleted_can, {"support_plane": None}, "auto", None) == (0.0, None)


def test_the_asset_stands_on_the_support_plane_and_its_region_reaches_its_footprint():
    """Over a support plane, an SDF run's asset is meshed in a region grown along the plane to the
    object's learnt foot, and with ``support_base: extend`` with the object's section on the cut extended
    down to the plane (the plane becomes the mesh's cut); ``support_footprint: false`` / ``support_base:
    cut``, no SDF or no plane leave them as they were."""
    from t23d.data.config import DataConfig
    from t23d.reconstruct.support import based_on_support, region_over_support

    assert DataConfig().support_footprint and DataConfig().support_base == "auto"

    floor_z = -0.5

    def candlestick(points: torch.Tensor) -> torch.Tensor:  # a foot of radius 0.6, 0.1 high, and a stem
        r = points[:, :2].norm(dim=-1)
        foot = torch.maximum(r - 0.6, (points[:, 2] - floor_z - 0.05).abs() - 0.05)
        stem = torch.maximum(r - 0.1, (points[:, 2]).abs() - 0.5)
        return torch.minimum(torch.minimum(foot, stem), points[:, 2] - floor_z)

    scene = {"support_plane": {"normal": [0.0, 0.0, 1.0], "offset": floor_z, "rms": 0.001}}
    cut = np.array([0.0, 0.0, 1.0, floor_z + 0.05])
    sdf, mesh_cut = based_on_support(candlestick, scene, cut, "extend")
    assert mesh_cut.tolist() == [0.0, 0.0, 1.0, floor_z]
    assert float(sdf(torch.tensor([[0.3, 0.0, floor_z + 0.02]]))) < 0  # the foot below the cut is kept
    assert based_on_support(candlestick, scene, cut, "cut") == (candlestick, cut)
    assert based_on_support(None, scene, cut, "extend") == (None, cut)
    assert based_on_support(candlestick, {"support_plane": None}, None, "extend") == (candlestick, None)

    box = torch.tensor([[-0.2, -0.2, floor_z], [0.2, 0.2, 0.6]])
    grown, record = region_over_support(candlestick, scene, box, cut, True)
    assert record["grown"] and grown[1, 0] == pytest.approx(0.6, abs=0.02) and grown[0, 1] < -0.58
    json.dumps(record)  # written to export.json as is
    assert region_over_support(candlestick, scene, box, cut, False) == (box, None)
    assert region_over_support(None, scene, box, cut, True) == (box, None)


def test_over_support_turns_the_data_settings_into_the_cut_region_and_sdf_to_mesh():
    """The cut at the margin, the region grown from it, the SDF as learnt (no fillet, base ``cut``); no
    plane: the box and SDF as given, nothing cut or recorded."""
    from t23d.data.config import DataConfig
    from t23d.reconstruct.support import over_support

    floor_z = -0.5

    def can(points: torch.Tensor) -> torch.Tensor:  # radius 0.3, standing on the table
        h = points[:, 2] - floor_z
        return torch.maximum(points[:, :2].norm(dim=-1) - 0.3, torch.maximum(-h, h - 0.8))

    scene = {"support_plane": {"normal": [0.0, 0.0, 1.0], "offset": floor_z, "rms": 0.001}}
    box = torch.tensor([[-0.2, -0.2, floor_z], [0.2, 0.2, 0.3]])
    base = over_support(can, scene, box, DataConfig())
    assert base.cut.tolist() == pytest.approx([0.0, 0.0, 1.0, floor_z + 0.05])
    assert base.mesh_cut.tolist() == base.cut.tolist() and base.sdf_fn is can and base.fillet is None
    assert base.region["base"]["base"] == "cut" and not base.extended  # auto: no colour read, no lower cut
    assert base.region["grown"] and float(base.aabb[1, 0]) == pytest.approx(0.3, abs=0.02)
    bare = over_support(can, {"support_plane": None}, box, DataConfig())
    assert bare.cut is None and bare.region is None and bare.aabb is box and bare.sdf_fn is can


def test_over_support_lets_the_region_reach_a_part_the_points_missed():
    """A thin candle on the can rises above the points' box: the region reaches its top (``region_reach``)
    and ``export.json``'s box says so; turned off, the box stays the points' and the footprint's."""
    import dataclasses

    from t23d.data.config import DataConfig
    from t23d.reconstruct.support import over_support

    floor_z = -0.5

    def can_and_candle(points: torch.Tensor) -> torch.Tensor:
        h = points[:, 2] - floor_z
        can = torch.maximum(points[:, :2].norm(dim=-1) - 0.3, torch.maximum(-h, h - 0.6))
        candle = torch.maximum(points[:, :2].norm(dim=-1) - 0.04, torch.maximum(-h, h - 1.2))
        return torch.minimum(can, candle)

    scene = {"support_plane": {"normal": [0.0, 0.0, 1.0], "offset": floor_z, "rms": 0.001}}
    box = torch.tensor([[-0.3, -0.3, floor_z], [0.3, 0.3, 0.2]])
    base = over_support(can_and_candle, scene, box, DataConfig())
    assert DataConfig().region_reach and base.region["reach"]["grown"]
    assert float(base.aabb[1, 2]) == pytest.approx(floor_z + 1.2, abs=0.04)
    assert base.region["box"] == base.aabb.tolist() == base.region["reach"]["box"]
    off = over_support(can_and_candle, scene, box, dataclasses.replace(DataConfig(), region_reach=False))
    assert "reach" not in off.region and float(off.aabb[1, 2]) == pytest.approx(0.2)


def red_can_on_brown_table(floor_z: float, red: list[float], brown: list[float], table_reach: float):
    """Coloured sparse points of a red can (60, above the cut) on a brown table (80, within
    ``table_reach`` of the centre), and the scene record of the table's plane."""
    from t23d.reconstruct.support import SparseColors

    rng = np.random.default_rng(0)
    on_can = np.concatenate([rng.uniform(-0.15, 0.15, (60, 2)), rng.uniform(-0.3, 0.2, (60, 1))], 1)
    on_table = np.concatenate([rng.uniform(-table_reach, table_reach, (80, 2)), np.full((80, 1), floor_z)], 1)
    sparse = SparseColors(
        np.concatenate([on_can, on_table]), np.array([red] * 60 + [brown] * 80, dtype=np.float64)
    )
    return sparse, {"support_plane": {"normal": [0.0, 0.0, 1.0], "offset": floor_z, "rms": 0.001}}


def test_sparse_point_colours_come_from_the_runs_saved_model_in_the_normalised_frame(tmp_path):
    """The run's saved COLMAP model's points, scaled as ``data.scale`` did and normalised with the
    scene's ``world_from_normalised``, keep their colours; split into object (in the box, above the cut)
    and table (on the plane, near the box); None without a model."""
    pytest.importorskip("pycolmap")
    from t23d.data.cameras import Camera
    from t23d.data.colmap import build_reconstruction, write_reconstruction
    from t23d.reconstruct.support import sparse_point_colors

    world = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [2.0, 0.0, -1.0]])  # the model's units
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    cam = Camera(width=64, height=64, fx=60.0, fy=60.0, cx=32.0, cy=32.0)
    rec = build_reconstruction(cam, np.eye(4)[None], ["a.png"], world, colors)
    write_reconstruction(rec, tmp_path / "sfm")
    w = np.eye(4)
    w[:3, :3] *= 4.0  # normalised unit = 4 metres
    w[:3, 3] = [0.0, 0.0, 2.0]
    scene = {"world_from_normalised": w.tolist()}
    sparse = sparse_point_colors(tmp_path / "sfm", scene, scale=2.0)  # model units x2 = metres
    order = np.argsort(sparse.points[:, 0] + 10 * sparse.points[:, 2])
    np.testing.assert_allclose(sparse.points[order], [[1.0, 0.0, -1.0], [0.0, 0.0, -0.5], [0.0, 0.0, 0.0]])
    assert sparse.colors[order].tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
    plane = np.array([0.0, 0.0, 1.0, -0.5])
    box = np.array([[-0.3, -0.3, -0.5], [0.3, 0.3, 0.5]])
    objects, table = sparse.object_and_table(plane, box, above=0.06, on=0.01)
    assert objects.tolist() == [[0, 1, 0]] and table.tolist() == [[1, 0, 0]]  # the far point is neither
    assert sparse_point_colors(None, scene) is None and sparse_point_colors(tmp_path / "none", scene) is None


def test_over_support_lowers_the_cut_by_colour_and_records_it():
    """``support_cut: colour`` (the default) brings the cut down the can's rim to where the blend into the
    table takes the table's colours, grows the region from there and records the cut in the region;
    ``fixed`` keeps it at the margin; without a plane nothing is cut."""
    import dataclasses

    from t23d.data.config import DataConfig
    from t23d.reconstruct.support import over_support

    assert DataConfig().support_cut == "colour"
    floor_z, red, brown = -0.5, [0.8, 0.1, 0.1], [0.5, 0.35, 0.2]

    def can(points: torch.Tensor) -> torch.Tensor:  # radius 0.3, blended into the table below 0.02
        h = points[:, 2] - floor_z
        radius = 0.3 + 4.0 * (0.02 - h).clamp(min=0.0)
        return torch.maximum(points[:, :2].norm(dim=-1) - radius, torch.maximum(-h, h - 0.8))

    def color(points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        outside = points[:, :2].norm(dim=-1) > 0.302
        return torch.where(outside[:, None], torch.tensor(brown), torch.tensor(red))

    sparse, scene = red_can_on_brown_table(floor_z, red, brown, table_reach=0.5)
    box = torch.tensor([[-0.2, -0.2, floor_z], [0.2, 0.2, 0.3]])
    base = over_support(can, scene, box, DataConfig(), color_fn=color, sparse=lambda: sparse)
    assert base.cut.tolist() == pytest.approx([0.0, 0.0, 1.0, floor_z + 0.02])
    assert base.region["cut"]["lowered"] and base.region["cut"]["height"] == pytest.approx(0.02)
    assert base.region["grown"] and float(base.aabb[1, 0]) == pytest.approx(0.3, abs=0.02)
    json.dumps(base.region)  # written to export.json as is
    # support_base auto: the cut came down the can's rim, so the base is extended to the table...
    assert base.region["base"] == {
        "setting": "auto",
        "base": "extend",
        "reason": "the base's edge has the object's colours below the margin: it stands on the table",
    }
    assert base.extended and base.mesh_cut.tolist() == pytest.approx([0.0, 0.0, 1.0, floor_z])
    low = torch.tensor([[0.25, 0.0, floor_z + 0.01], [0.35, 0.0, floor_z + 0.01]])
    assert base.sdf_fn(low).tolist()[0] < 0 < base.sdf_fn(low).tolist()[1]  # the rim's prism, not the blend
    # ...and coloured from just above the cut, where the field holds the can rather than the table
    height = base.bake_color_fn(lambda p, d: p[:, 2:].expand(-1, 3), lift=0.01)
    looked_up = height(
        torch.tensor([[0.3, 0.0, floor_z + 0.005], [0.3, 0.0, floor_z + 0.2]]), torch.zeros(2, 3)
    )
    assert looked_up[:, 0].tolist() == pytest.approx([floor_z + 0.03, floor_z + 0.2])

    fixed = over_support(
        can, scene, box, dataclasses.replace(DataConfig(), support_cut="fixed"), color, lambda: sparse
    )
    assert fixed.cut.tolist() == pytest.approx([0.0, 0.0, 1.0, floor_z + 0.05]) and "cut" not in fixed.region
    assert fixed.region["base"]["base"] == "cut" and fixed.mesh_cut.tolist() == fixed.cut.tolist()
    assert fixed.bake_color_fn(color, lift=0.01) is color
    told = dataclasses.replace(DataConfig(), support_base="cut")
    assert not over_support(can, scene, box, told, color, lambda: sparse).extended
    bare = over_support(can, {"support_plane": None}, box, DataConfig(), color, lambda: sparse)
    assert bare.cut is None and bare.region is None and bare.aabb is box and bare.sdf_fn is can


def test_over_support_carves_the_table_coloured_skirt_and_the_region_leaves_it_out():
    """``support_carve``: the brown solid grown against the red can's side from the table is carved out of
    the SDF that is meshed, recorded in the region, and left out of the region the field's render is
    compared in; the can stays. Off, nothing is carved."""
    import dataclasses

    from t23d.data.config import DataConfig
    from t23d.reconstruct.support import over_support

    floor_z, red, brown = -0.5, [0.8, 0.1, 0.1], [0.5, 0.35, 0.2]

    def can_and_skirt(points: torch.Tensor) -> torch.Tensor:
        can = torch.maximum(points[:, :2].norm(dim=-1) - 0.3, (points[:, 2] + 0.1).abs() - 0.4)
        q = (points - torch.tensor([0.4, 0.0, -0.25])).abs() - torch.tensor([0.2, 0.1, 0.25])
        skirt = q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)
        return torch.minimum(can, skirt)

    def color(points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        outside = points[:, :2].norm(dim=-1) > 0.31
        return torch.where(outside[:, None], torch.tensor(brown), torch.tensor(red))

    sparse, scene = red_can_on_brown_table(floor_z, red, brown, table_reach=0.9)
    box = torch.tensor([[-0.7, -0.5, floor_z], [0.7, 0.5, 0.4]])
    cfg = dataclasses.replace(DataConfig(), support_cut="fixed", support_carve=True)
    base = over_support(can_and_skirt, scene, box, cfg, color_fn=color, sparse=lambda: sparse)
    skirt, inside_can = torch.tensor([[0.45, 0.0, -0.25]]), torch.tensor([[0.0, 0.0, -0.1]])
    assert float(base.sdf_fn(skirt)) > 0 and float(base.sdf_fn(inside_can)) < 0
    assert base.region["carve"]["carved"] > 0 and "cut" not in base.region
    region = base.region_fn()
    assert not bool(region(skirt)) and bool(region(inside_can))
    json.dumps(base.region)  # written to export.json as is
    off = over_support(
        can_and_skirt, scene, box, dataclasses.replace(cfg, support_carve=False), color, lambda: sparse
    )
    assert off.sdf_fn is can_and_skirt and off.carved is None and bool(off.region_fn()(skirt))


def test_a_run_without_coloured_sparse_points_is_cut_at_the_margin_and_not_carved():
    """An older run, or one whose points came without a saved model: both colour steps say why they did
    nothing, and the asset is cut at the margin."""
    from t23d.data.config import DataConfig
    from t23d.reconstruct.support import over_support

    floor_z = -0.5

    def can(points: torch.Tensor) -> torch.Tensor:
        h = points[:, 2] - floor_z
        return torch.maximum(points[:, :2].norm(dim=-1) - 0.3, torch.maximum(-h, h - 0.8))

    def red(points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        return torch.tensor([0.8, 0.1, 0.1]).expand(len(points), 3)

    scene = {"support_plane": {"normal": [0.0, 0.0, 1.0], "offset": floor_z, "rms": 0.001}}
    box = torch.tensor([[-0.2, -0.2, floor_z], [0.2, 0.2, 0.3]])
    base = over_support(can, scene, box, DataConfig(), color_fn=red, sparse=lambda: None)
    assert base.cut.tolist() == pytest.approx([0.0, 0.0, 1.0, floor_z + 0.05]) and base.sdf_fn is can
    assert not base.region["cut"]["lowered"] and "no coloured sparse points" in base.region["cut"]["reason"]
    assert (
        base.region["carve"]["carved"] == 0.0
        and "no coloured sparse points" in base.region["carve"]["reason"]
    )
