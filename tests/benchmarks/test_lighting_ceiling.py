"""The changing-light ceiling's job and scoring (Blender itself is not run here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.scenes.lighting_ceiling import ceiling_job, score
from t23d.data.synthetic import linear_to_srgb as _srgb
from t23d.data.synthetic import srgb_to_linear as _linear


def _png(path: Path, rgba: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(rgba, 0, 1) * 255).astype(np.uint8), "RGBA").save(path)


def _scene(folder: Path, mode: str = "varying") -> Path:
    """A two-view, eight-photo capture record with a lit test photo and its object mask."""
    record = {
        "object": "duck",
        "seed": 3,
        "lighting": {"mode": mode},
        "capture": {"resolution": 8, "fov_deg": 45.0, "background": "room"},
        "renderer": {"samples": 16, "denoiser": "OPENIMAGEDENOISE"},
    }
    (folder / "scene.json").write_text(json.dumps(record))
    train = [
        {"t23d_capture": {"lighting": {"sun_azimuth_deg": 45.0 * i}, "gain": [1.0] * 3}} for i in range(8)
    ]
    (folder / "transforms_train.json").write_text(json.dumps({"frames": train}))
    test = [
        {
            "file_path": f"./test/r_{i}",
            "albedo_file_path": f"./test/r_{i}_albedo",
            "transform_matrix": np.eye(4).tolist(),
        }
        for i in range(2)
    ]
    (folder / "transforms_test.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": test}))
    return folder


def test_the_job_renders_the_test_views_under_training_lightings_spread_through_the_capture(tmp_path):
    scene = _scene(tmp_path)
    job = ceiling_job(scene, tmp_path / "out", views=[0, 1], num_lightings=4, threads=2)
    azimuths = [f["lighting"]["sun_azimuth_deg"] for f in job["frames"]]
    assert azimuths == [0.0, 0.0, 90.0, 90.0, 180.0, 180.0, 270.0, 270.0]  # every 2nd photo, lighting-major
    assert [f["split"] for f in job["frames"][:2]] == ["v0", "v1"]
    assert job["object"] == "duck" and job["seed"] == 3 and job["denoise"] and job["threads"] == 2
    (tmp_path / "fixed").mkdir()
    with pytest.raises(SystemExit, match="lighting 'fixed'"):
        ceiling_job(_scene(tmp_path / "fixed", "fixed"), tmp_path / "out", [0], 2, 1)


def test_the_mean_of_a_bright_and_a_dark_render_scores_against_the_photo_lit_in_between(tmp_path):
    """Two lightings, one twice and one half as bright as the test photo's (in linear colour): their
    arithmetic mean is 1.25x, their geometric mean the photo itself; outside the mask all is white."""
    scene = _scene(tmp_path)
    out = tmp_path / "out"
    job = ceiling_job(scene, out, views=[0], num_lightings=2, threads=1)
    mask = np.zeros((8, 8, 1))
    mask[2:6, 2:6] = 1.0
    base = np.full((8, 8, 3), 0.2)
    ones = np.ones((8, 8, 1))
    for i in range(2):  # the capture's test photos (the job renders view 0 only)
        _png(scene / f"test/r_{i}.png", np.concatenate([_srgb(base), ones], -1))
        _png(scene / f"test/r_{i}_albedo.png", np.concatenate([np.full((8, 8, 3), 0.5), mask], -1))
    _png(out / "v0/l0.png", np.concatenate([_srgb(2.0 * base), ones], -1))
    _png(out / "v0/l1.png", np.concatenate([_srgb(0.5 * base), ones], -1))
    result = score(scene, out, job)
    assert result["views"] == 1 and result["lightings"] == 2
    assert result["psnr_geometric_mean"] > 40.0  # 8-bit rounding only
    truth = _srgb(np.full(3, 0.2))
    err = (_srgb(np.full(3, 0.25)) - truth) ** 2  # the arithmetic mean is 1.25x the photo's light
    expected = -10 * np.log10(err.mean() * 16 / 64)  # 16 of 64 pixels are object
    assert result["psnr_arithmetic_mean"] == pytest.approx(expected, abs=0.3)
    assert result["psnr_best_single"] < result["psnr_arithmetic_mean"]
    assert np.allclose(_linear(_srgb(np.array([0.01, 0.5]))), [0.01, 0.5])
