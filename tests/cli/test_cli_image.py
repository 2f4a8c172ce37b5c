"""``t23d generate --image`` in subprocesses: a whole run on a tiny random Zero123 prior, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import CONFIGS, run_t23d
from PIL import Image

SMOKE = str(CONFIGS / "image-cpu-smoke.yaml")


def _toy(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size]
    disk = (xx - 40) ** 2 + (yy - 50) ** 2 < 22**2
    square = (abs(xx - 62) < 12) & (abs(yy - 40) < 12)
    rgb = np.full((size, size, 3), 255, np.uint8)
    rgb[disk] = (220, 40, 30)
    rgb[square] = (30, 60, 220)
    return rgb, ((disk | square) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    rgb, mask = _toy()
    Image.fromarray(np.concatenate([rgb, mask[..., None]], axis=-1)).save(folder / "toy.png")
    Image.fromarray(rgb).save(folder / "toy_rgb.png")
    Image.fromarray(mask).save(folder / "toy_mask.png")
    Image.fromarray(mask[:48]).save(folder / "half_mask.png")
    return {p.stem: p for p in folder.iterdir()}


@pytest.fixture(scope="module")
def image_run(tiny_zero123_dir, photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli_image")
    res = run_t23d(
        "generate",
        "--image",
        str(photos["toy_rgb"]),
        "--mask",
        str(photos["toy_mask"]),
        "--elevation",
        "15",
        "--preset",
        "fast",
        "--config",
        SMOKE,
        "--prior",
        str(tiny_zero123_dir),
        "--device",
        "cpu",
        "--out",
        str(out),
        timeout=1800,  # about a minute alone; far longer on a shared, loaded machine
    )
    assert res.returncode == 0, res.stderr
    (run_dir,) = out.iterdir()
    return run_dir


def test_cli_image_run_exports_a_valid_glb_and_records_its_input(image_run, photos):
    from gltf_validate import validate_gltf

    info = json.loads((image_run / "run.json").read_text())
    assert info["status"] == "completed" and info["prior"]["kind"] == "zero123"
    assert info["image"]["elevation_deg"] == 15.0 and info["image"]["mask"] == str(photos["toy_mask"])
    assert 0.0 <= info["reference_metrics"]["iou"] <= 1.0
    assert (image_run / "input" / "image.png").read_bytes() == photos["toy_rgb"].read_bytes()
    assert (image_run / "input" / "mask.png").read_bytes() == photos["toy_mask"].read_bytes()
    assert (image_run / "input" / "reference.png").is_file()
    glb = image_run / "export" / "toy_rgb.glb"
    assert validate_gltf(glb)["issues"]["numErrors"] == 0
    assert "fidelity" in json.loads((image_run / "export" / "export.json").read_text())


def _main(capsys, *args: str) -> tuple[int, str]:
    """The CLI in-process (bad input fails before any model is loaded): exit code and stderr."""
    from t23d.cli.main import main

    code = main(list(args))
    return code, capsys.readouterr().err


def test_cli_rgb_without_mask_is_refused(photos, tmp_path, capsys):
    code, err = _main(capsys, "generate", "--image", str(photos["toy_rgb"]), "--out", str(tmp_path))
    assert code == 2
    assert "has no alpha channel and no --mask was given; pass the object's mask with --mask" in err
    assert not any(tmp_path.iterdir())


def test_cli_mask_of_another_size_is_refused(photos, tmp_path, capsys):
    args = ("--image", str(photos["toy_rgb"]), "--mask", str(photos["half_mask"]), "--out", str(tmp_path))
    code, err = _main(capsys, "generate", *args)
    assert code == 2 and "is 96x48 px but --image" in err and "must have the image's size" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a red ball", "--image", "x.png"], "--image cannot be combined with a text prompt ('a red ball')"),
        (["a red ball", "--mask", "m.png"], "--mask goes with --image PHOTO"),
        (["--image", "x.png", "--refine"], "--refine is not available for --image runs yet"),
        (
            ["--image", "x.png", "--resume", "somewhere"],
            "--image starts a new run; --resume RUN_DIR continues one",
        ),
        (["--image", "x.png", "--elevation", "120"], "--elevation 120.0 is out of range"),
    ],
)
def test_cli_image_flag_combinations(args, message, tmp_path, capsys):
    code, err = _main(capsys, "generate", *args, "--out", str(tmp_path))
    assert code == 2 and message in err, err
