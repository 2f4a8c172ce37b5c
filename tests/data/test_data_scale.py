"""--scale: two points marked in the photos and their distance put the scene in metres, with an
uncertainty; --bbox: the user's box becomes the field's box. Checked on COLMAP captures of known poses."""

from __future__ import annotations

import numpy as np
import pytest

from t23d.common.errors import ConfigError, T23dError
from t23d.data import DataConfig, load_dataset
from t23d.data.normalise import BBOX_FILL
from t23d.data.scale import parse_scale
from t23d.data.synthetic import SyntheticScene
from t23d.data.synthetic_writers import write_colmap
from t23d.data.undistort import distort_points

DISTORTION = {"k1": -0.08, "k2": 0.01, "p1": 0.001, "p2": -0.002}


def project(point: np.ndarray, c2w: np.ndarray, cam) -> tuple[float, float]:
    """Pixel position (x right, y down, photo as stored, lens distortion applied) of a world point."""
    p = np.linalg.inv(c2w) @ np.append(point, 1.0)  # OpenGL camera: looks down -z, y up
    xn, yn = p[0] / -p[2], -p[1] / -p[2]
    xd, yd = distort_points(np.array([xn]), np.array([yn]), cam)
    return float(cam.fx * xd[0] + cam.cx), float(cam.fy * yd[0] + cam.cy)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    out = tmp_path_factory.mktemp("colmap")
    cap = write_colmap(SyntheticScene(), out, n_views=8, resolution=96, camera_model="OPENCV",
                       distortion=DISTORTION, num_points=200)  # fmt: skip
    return out, cap


def marks_for(cap, points: list[np.ndarray], views: list[int], offset_px: float = 0.0) -> str:
    groups = []
    for p in points:
        tokens = []
        for k, v in enumerate(views):
            x, y = project(p, cap.c2w[v], cap.camera)
            tokens.append(f"{cap.image_paths[v].name}:{x + (offset_px if k == 0 else 0.0):.4f},{y:.4f}")
        groups.append(" ".join(tokens))
    return " | ".join(groups)


def test_scale_from_two_marked_points(capture) -> None:
    out, cap = capture
    a, b = np.array([-0.3, 0.2, 0.4]), np.array([0.5, -0.1, -0.2])  # 1.04 units apart
    true = float(np.linalg.norm(b - a))
    marks = marks_for(cap, [a, b], [0, 2, 5])
    ds = load_dataset(out, DataConfig(scale=f"{marks} = 0.25"))
    rep = ds.scale_report
    assert rep["factor"] == pytest.approx(0.25 / true, rel=1e-4)
    assert rep["distance_before"] == pytest.approx(true, rel=1e-4)
    assert rep["marks_per_point"] == [3, 3]
    # the marks are exact, so the uncertainty is the assumed 1 px marking error at ~3 units away
    assert 0.002 < rep["relative_uncertainty"] < 0.05
    assert rep["uncertainty_m"] == pytest.approx(rep["relative_uncertainty"] * 0.25)
    # the whole scene is in metres: cameras at the true positions times the factor
    np.testing.assert_allclose(ds.c2w_world()[:, :3, 3], cap.c2w[:, :3, 3] * rep["factor"], atol=1e-5)


def test_scale_uncertainty_grows_with_marks_that_miss(capture) -> None:
    out, cap = capture
    a, b = np.array([-0.3, 0.2, 0.4]), np.array([0.5, -0.1, -0.2])
    exact = load_dataset(out, DataConfig(scale=f"{marks_for(cap, [a, b], [0, 3])} = 1.0")).scale_report
    off = load_dataset(out, DataConfig(scale=f"{marks_for(cap, [a, b], [0, 3], 8.0)} = 1.0")).scale_report
    assert off["relative_uncertainty"] > 2 * exact["relative_uncertainty"]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a.png:1,2 b.png:3,4 | a.png:5,6 b.png:7,8", "expected one '=' before the distance"),
        ("a.png:1,2 b.png:3,4 = 0.3", "expected two points separated by '\\|', got 1"),
        ("a.png:1,2 a.png:3,4 | a.png:5,6 b.png:7,8 = 0.3", "point 1 must be marked in at least two"),
        ("a.png:1;2 b.png:3,4 | a.png:5,6 b.png:7,8 = 0.3", "mark 'a.png:1;2' of point 1 is not PHOTO:x,y"),
        ("a.png:1,2 b.png:3,4 | a.png:5,6 b.png:7,8 = -1", "the distance must be a positive number"),
    ],
)
def test_bad_scale_syntax(value, why) -> None:
    with pytest.raises(ConfigError, match=rf"^config key 'data\.scale' \(--scale\): invalid value .*: {why}"):
        parse_scale(value)


def test_scale_marked_in_a_photo_that_is_not_posed(capture) -> None:
    out, _ = capture
    with pytest.raises(
        T23dError, match=r"^--scale point 1 is marked in nope\.png, which is not among the posed"
    ):
        load_dataset(
            out, DataConfig(scale="nope.png:1,2 view_001.png:3,4 | view_000.png:5,6 view_001.png:7,8 = 1")
        )


def test_bbox_becomes_the_field_box(capture) -> None:
    out, cap = capture
    box = [-0.5, -0.4, -0.3, 0.7, 0.4, 0.5]  # 1.2 x 0.8 x 0.8
    ds = load_dataset(out, DataConfig(bbox=box))
    w = ds.world_from_normalised
    aabb = ds.aabb.double().numpy()
    back = aabb * w[0, 0] + w[:3, 3]  # the box, back in the world frame
    np.testing.assert_allclose(back.reshape(-1), box, atol=1e-6)
    assert (aabb[1] - aabb[0]).max() == pytest.approx(2 * BBOX_FILL, rel=1e-6)
    np.testing.assert_allclose(ds.c2w_world(), cap.c2w, atol=1e-5)  # poses are unchanged
    with pytest.raises(
        ConfigError, match=r"^config key 'data\.bbox' \(--bbox\): invalid value .*each min < max"
    ):
        load_dataset(out, DataConfig(bbox=[0, 0, 0, 1, -1, 1]))
