"""The benchmark scene set's pure-Python parts: cameras, per-photo lighting, transforms and scene.json.

Blender itself is not run here (``make_scenes.py`` renders with it; see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks.scenes.layout import (
    OBJECTS,
    REFERENCE_LIGHTING,
    SPLITS,
    VARYING_LIGHTING,
    CaptureConfig,
    blender_frames,
    capture_poses,
    photo_lighting,
    scene_name,
    scene_record,
    transforms_json,
    validate_scene_record,
)
from benchmarks.scenes.make_scenes import parse_mesh_module

OBJECT_RADIUS = 0.95  # blender_objects.NORMALISED_RADIUS


def _elevation(c2w: np.ndarray) -> float:
    p = c2w[:3, 3]
    return math.degrees(math.asin(p[2] / np.linalg.norm(p)))


def _sees_whole_object(c2w: np.ndarray, fov_deg: float) -> bool:
    """The radius-0.95 sphere at the origin lies inside the (circular, inscribed) field of view."""
    eye = c2w[:3, 3]
    forward = -c2w[:3, 2]
    to_origin = -eye / np.linalg.norm(eye)
    off_axis = math.degrees(math.acos(np.clip(forward @ to_origin, -1, 1)))
    return off_axis + math.degrees(math.asin(OBJECT_RADIUS / np.linalg.norm(eye))) < fov_deg / 2


def test_sphere_cameras_look_at_the_object_from_the_band_and_cover_azimuth():
    cfg = CaptureConfig()
    poses = capture_poses(cfg)
    assert {k: len(v) for k, v in poses.items()} == {"train": 100, "val": 5, "test": 20}
    bands = cfg.elevation_bands()
    for split, c2w in poses.items():
        for pose in c2w:
            rot = pose[:3, :3]
            np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-9)
            assert np.linalg.det(rot) == pytest.approx(1.0)
            assert np.linalg.norm(pose[:3, 3]) == pytest.approx(cfg.distance)
            # OpenGL: the camera looks down its -Z axis, at the origin; +Z world is up on screen
            np.testing.assert_allclose(-rot[:, 2], -pose[:3, 3] / cfg.distance, atol=1e-9)
            assert rot[2, 1] >= 0
            lo, hi = bands[split]
            assert lo - 1e-6 <= _elevation(pose) <= hi + 1e-6
            assert _sees_whole_object(pose, cfg.fov_deg)
    el = [_elevation(p) for p in poses["train"]]
    assert min(el) < -5 and max(el) > 65  # the band is used, not only its middle
    az = np.degrees(np.arctan2(poses["train"][:, 1, 3], poses["train"][:, 0, 3])) % 360
    assert np.histogram(az, bins=8, range=(0, 360))[0].min() >= 8  # every octant is photographed


def test_full_sphere_reaches_top_and_bottom():
    el = [_elevation(p) for p in capture_poses(CaptureConfig(elevation="full"))["train"]]
    assert min(el) < -70 and max(el) > 70


def test_room_cameras_stay_above_the_table():
    poses = capture_poses(CaptureConfig(background="room"))
    assert min(_elevation(p) for p in poses["train"]) >= 5.0 - 1e-6
    assert min(_elevation(p) for p in poses["test"]) >= 10.0 - 1e-6


@pytest.mark.parametrize("num", [10, 20, 50, 100])
def test_walk_around_rings_are_hand_held_and_keep_the_object_in_frame(num):
    cfg = CaptureConfig(path="walk", num_train=num)
    walk = capture_poses(cfg)["train"]
    assert len(walk) == num
    el = np.array([_elevation(p) for p in walk])
    rings = (25.0,) if num <= 20 else (15.0, 40.0)
    assert all(min(abs(e - r) for r in rings) <= 5.0 + 1e-6 for e in el)
    if num > 20:
        assert (el < 27.5).sum() == math.ceil(0.6 * num)  # the lower ring first and larger
    dist = np.linalg.norm(walk[:, :3, 3], axis=1)
    assert dist.min() >= 0.97 * cfg.distance - 1e-9 and dist.max() <= 1.1 * cfg.distance + 1e-9
    assert dist.std() > 0.01  # jittered, not a perfect orbit
    assert all(_sees_whole_object(p, cfg.fov_deg) for p in walk)
    # walking order: consecutive photos are neighbours in azimuth within a ring
    az = np.unwrap(np.arctan2(walk[:, 1, 3], walk[:, 0, 3]))
    first_ring = az[: num if num <= 20 else math.ceil(0.6 * num)]
    steps = np.diff(first_ring)
    assert np.all(steps > 0) or np.all(steps < 0)


def test_cameras_are_seeded_and_test_views_do_not_depend_on_the_training_capture():
    a, b = capture_poses(CaptureConfig(seed=3)), capture_poses(CaptureConfig(seed=3))
    for split in SPLITS:
        np.testing.assert_array_equal(a[split], b[split])
    other = capture_poses(CaptureConfig(seed=4))
    assert not np.allclose(a["train"], other["train"]) and not np.allclose(a["test"], other["test"])
    walk10 = capture_poses(CaptureConfig(seed=3, path="walk", num_train=10, lighting="varying"))
    np.testing.assert_array_equal(walk10["test"], a["test"])
    np.testing.assert_array_equal(walk10["val"], a["val"])
    # unseen: no test camera coincides with a training camera
    gap = np.linalg.norm(a["test"][:, None, :3, 3] - a["train"][None, :, :3, 3], axis=-1).min()
    assert gap > 0.02


def test_fixed_lighting_is_the_reference_and_varying_changes_only_training_photos():
    fixed = photo_lighting(CaptureConfig(), "train", 4)
    assert all(f["lighting"] == REFERENCE_LIGHTING and f["gain"] == [1.0, 1.0, 1.0] for f in fixed)
    cfg = CaptureConfig(lighting="varying")
    train = photo_lighting(cfg, "train", 50)
    assert train == photo_lighting(cfg, "train", 50)  # seeded
    for f in train:
        for key in ("sun_azimuth_deg", "sun_elevation_deg", "sun_strength", "sky_strength"):
            lo, hi = VARYING_LIGHTING[key]
            assert lo <= f["lighting"][key] <= hi
        assert f["lighting"]["sun_angle_deg"] == REFERENCE_LIGHTING["sun_angle_deg"]
        lo, hi = VARYING_LIGHTING["exposure_ev"]
        assert lo <= f["exposure_ev"] <= hi
        r, g, b = np.array(f["gain"]) / 2.0 ** f["exposure_ev"]
        assert r == pytest.approx(1 + 0.12 * f["white_balance"]) and b == pytest.approx(
            1 - 0.12 * f["white_balance"]
        )
        assert abs(g - 1) <= 0.03 + 1e-12
    assert len({round(f["lighting"]["sun_azimuth_deg"], 6) for f in train}) == 50
    assert np.ptp([f["exposure_ev"] for f in train]) > 0.8
    for split in ("val", "test"):
        assert all(
            f["lighting"] == REFERENCE_LIGHTING and f["gain"] == [1.0, 1.0, 1.0]
            for f in photo_lighting(cfg, split, 5)
        )


def test_transforms_are_blender_synthetic_and_load_in_t23d(tmp_path):
    from PIL import Image

    from t23d.data import DataConfig, load_dataset

    cfg = CaptureConfig(num_train=6, num_val=2, num_test=3, resolution=16, lighting="varying")
    frames = blender_frames(cfg)
    assert [f["split"] for f in frames] == ["train"] * 6 + ["val"] * 2 + ["test"] * 3
    counts = {"train": 6, "val": 2, "test": 3}
    for split in SPLITS:
        data = transforms_json(cfg, frames, split, albedo=True)
        assert data["camera_angle_x"] == pytest.approx(math.radians(45.0))
        assert [f["file_path"] for f in data["frames"]] == [f"./{split}/r_{i}" for i in range(counts[split])]
        (tmp_path / split).mkdir()
        for frame in data["frames"]:
            assert frame["albedo_file_path"] == frame["file_path"] + "_albedo"
            assert set(frame["t23d_capture"]) == {"lighting", "gain", "exposure_ev", "white_balance"}
            Image.new("RGBA", (16, 16), (200, 100, 50, 255)).save(tmp_path / f"{frame['file_path'][2:]}.png")
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps(data))
    ds = load_dataset(tmp_path, DataConfig())
    assert ds.source_format == "blender" and ds.width == 16
    assert len(ds.train_indices) == 6 and len(ds.test_indices) == 3  # the test split wins over val
    expected = np.array([f["c2w"] for f in frames if f["split"] != "val"])
    np.testing.assert_allclose(ds.c2w_world(), expected, atol=1e-5)
    fixed = transforms_json(
        CaptureConfig(),
        blender_frames(CaptureConfig(num_train=2, num_val=0, num_test=0)),
        "train",
        albedo=False,
    )
    assert all("t23d_capture" not in f and "albedo_file_path" not in f for f in fixed["frames"])


def _record(**changes):
    cfg = CaptureConfig(**changes)
    return scene_record(
        scene_name("duck", cfg), "duck", cfg, gt={"kind": "mesh", "path": "mesh.ply"}, renderer={"engine": "x"},
        albedo=None, created="2026-12-02T00:00:00+00:00", command="python make_scenes.py duck",
    )  # fmt: skip


def test_scene_record_schema_round_trips_and_rejects_broken_records():
    record = _record(lighting="varying", path="walk", num_train=20)
    assert record["name"] == "duck-walk20-varying"
    assert record["splits"] == {"train": 20, "val": 5, "test": 20}
    assert record["lighting"]["reference"] == REFERENCE_LIGHTING and "per_photo_ranges" in record["lighting"]
    assert record["elevation_deg"]["test"] == [0.0, 60.0]
    validate_scene_record(json.loads(json.dumps(record)))  # survives JSON
    for key in ("gt", "capture", "splits"):
        broken = dict(record)
        del broken[key]
        with pytest.raises(ValueError, match=f"missing '{key}'"):
            validate_scene_record(broken)
    with pytest.raises(ValueError, match="schema"):
        validate_scene_record({**record, "schema": "other/9"})
    with pytest.raises(ValueError, match="object 'teacup' is not one of"):
        validate_scene_record({**record, "object": "teacup"})
    with pytest.raises(ValueError, match="gt must be"):
        validate_scene_record({**record, "gt": {"kind": "voxels", "path": "x"}})
    with pytest.raises(ValueError, match="path: invalid value 'orbit'; accepted: sphere | walk"):
        validate_scene_record({**record, "capture": {**record["capture"], "path": "orbit"}})


def test_scene_names_list_every_non_default_option():
    assert scene_name("duck", CaptureConfig()) == "duck"
    assert scene_name("bowl", CaptureConfig(num_train=50)) == "bowl-views50"
    assert (
        scene_name("monkey", CaptureConfig(path="walk", num_train=10, background="room"))
        == "monkey-walk10-room"
    )
    assert scene_name("teapot", CaptureConfig(elevation="full", seed=2)) == "teapot-full-seed2"
    assert set(OBJECTS) >= {"duck", "statue", "teapot", "bowl", "monkey", "boxsphere"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"num_train": 0}, "num_train: invalid value 0"), ({"distance": 0.9}, "distance: invalid value 0.9"),
     ({"lighting": "sunset"}, "lighting: invalid value 'sunset'; accepted: fixed | varying")],
)  # fmt: skip
def test_capture_options_are_validated(changes, message):
    with pytest.raises(ValueError, match=message):
        CaptureConfig(**changes)


def test_npm_mesh_module_is_parsed_and_checked():
    text = "exports.positions=[[0,0,0],[1,0,0],[0,1,0]];\nexports.cells=[[0,1,2]]\n"
    assert parse_mesh_module(text) == {"positions": [[0, 0, 0], [1, 0, 0], [0, 1, 0]], "cells": [[0, 1, 2]]}
    with pytest.raises(ValueError, match=r"3 vertex indices in \[0, 3\)"):
        parse_mesh_module("exports.positions=[[0,0,0],[1,0,0],[0,1,0]];exports.cells=[[0,1,3]]")
    with pytest.raises(ValueError, match="expected exports.positions and exports.cells"):
        parse_mesh_module("exports.positions=[[0,0,0]]")
