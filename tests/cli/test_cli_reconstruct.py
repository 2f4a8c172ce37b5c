"""``t23d reconstruct`` and ``t23d render`` from the command line: the two-command raw-photo path, and
bad input that must fail with a clear message and leave no run directory behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.cli import run_t23d

from t23d.data.synthetic import SyntheticScene
from t23d.data.synthetic_writers import write_blender, write_raw_photos


def _no_run_dirs(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


def test_raw_photos_two_command_path(tmp_path):
    """Raw photos with no poses -> SfM (pycolmap) -> training -> metrics, from one command; then render.
    ``--local-codes 4`` makes the run build, train and report per-photo local light codes on the way.

    The synthetic photos show a busy random texture everywhere (SfM needs features), which a few dozen
    steps cannot fit, so this checks the path, not the quality (see the Blender-format tests for that).
    """
    photos = tmp_path / "photos"
    write_raw_photos(SyntheticScene(background="textured"), photos, n_views=24, resolution=128)
    res = run_t23d(
        "reconstruct",
        str(photos),
        "--preset",
        "fast",
        "--steps",
        "30",
        "--downscale",
        "2",
        "--device",
        "cpu",
        "--no-export",
        "--local-codes",
        "4",
        "--out",
        str(tmp_path / "out"),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (run_dir,) = (tmp_path / "out").iterdir()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["source_format"] == "images"
    assert info["sfm"]["num_registered"] >= 22, info["sfm"]
    assert info["image_size"] == [64, 64]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_test_views"] == info["num_test"] >= 2
    # --local-codes: the per-photo local light codes were built, trained and reported
    assert info["capture"]["local_light"] == {"codes": 4, "reason": "set in the config"}
    # unmasked photos learn view-independent colour, and the resolved config says so for resumes and exports
    assert info["capture"]["view_dependence"] == {"on": False, "reason": "auto: unmasked photos"}
    assert "view_dependent: false" in (run_dir / "config.yaml").read_text()
    assert (
        metrics["appearance"]["local_codes"]["size"] == 4
        and metrics["appearance"]["local_codes"]["norm_mean"] > 0
    )

    # novel views: the held-out split, and a turntable
    res = run_t23d("render", str(run_dir), "--cameras", "test", "--out", str(tmp_path / "views"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(list((tmp_path / "views").glob("view_*.png"))) == info["num_test"]
    res = run_t23d(
        "render", str(run_dir), "--resolution", "32", "--frames", "4", "--out", str(tmp_path / "tt")
    )
    assert res.returncode == 0 and (tmp_path / "tt" / "turntable.gif").is_file()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty", "no images or camera files found"),
        ("corrupt", "bad.png"),
        ("missing", "missing"),
        ("camera_model", "camera model"),
    ],
)
def test_reconstruct_bad_input(setup, message, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    if setup == "corrupt":
        write_blender(SyntheticScene(), data, n_train=3, n_test=1, resolution=16)
        (data / "bad.png").write_bytes(b"not a png")
        frames = json.loads((data / "transforms_train.json").read_text())
        frames["frames"][0]["file_path"] = "./bad"
        (data / "transforms_train.json").write_text(json.dumps(frames))
    elif setup in ("missing", "camera_model"):
        frame = {
            "file_path": "images/nope.png",
            "transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]],
        }
        meta = {
            "fl_x": 50,
            "fl_y": 50,
            "cx": 16,
            "cy": 16,
            "w": 32,
            "h": 32,
            "frames": [frame],
            "camera_model": "EQUIRECTANGULAR" if setup == "camera_model" else "PINHOLE",
        }
        (data / "transforms.json").write_text(json.dumps(meta))
        if setup == "camera_model":  # the image exists; only the camera model is wrong
            from PIL import Image

            (data / "images").mkdir()
            Image.new("RGB", (32, 32)).save(data / "images" / "nope.png")
    res = run_t23d("reconstruct", str(data), "--device", "cpu", "--out", str(tmp_path / "out"))
    assert res.returncode == 2, res.stderr[-2000:]
    assert message in res.stderr
    assert _no_run_dirs(tmp_path / "out")


def test_render_rejects_a_folder_that_is_not_a_run(tmp_path):
    res = run_t23d("render", str(tmp_path))
    assert res.returncode == 2 and "not a t23d run directory" in res.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--scale", "a.png:1,2 b.png:3,4 = 0.3"], "config key 'data.scale' (--scale): invalid value"),
        (["--bbox", "0", "0", "0", "1", "-1", "1"], "config key 'data.bbox' (--bbox): invalid value"),
        (["--local-codes", "many"], "--local-codes 'many': give 'auto' or a size"),
    ],
)
def test_reconstruct_bad_scale_bbox_or_local_codes(flags, message, tmp_path):
    data = tmp_path / "data"
    write_blender(SyntheticScene(), data, n_train=2, n_test=1, resolution=16)
    res = run_t23d("reconstruct", str(data), *flags, "--device", "cpu", "--out", str(tmp_path / "out"))
    assert res.returncode == 2, res.stderr[-2000:]
    assert message in res.stderr
    assert _no_run_dirs(tmp_path / "out")
