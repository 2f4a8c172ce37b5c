"""Bad inputs raise T23dError with messages that name the problem and the fix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t23d.common.errors import ConfigError, T23dError
from t23d.data import DataConfig, SfmConfig, detect_format, load_dataset
from t23d.data.synthetic import SyntheticScene
from t23d.data.synthetic_writers import write_blender, write_colmap, write_nerfstudio


@pytest.fixture(scope="module")
def scene() -> SyntheticScene:
    return SyntheticScene()


def test_missing_path(tmp_path) -> None:
    with pytest.raises(T23dError, match=r"^input path does not exist: .*nope$"):
        load_dataset(tmp_path / "nope", DataConfig())


def test_empty_folder(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(
        T23dError, match=r"^no images or camera files found in .*; expected transforms\.json \(nerfstudio\)"
    ):
        load_dataset(tmp_path, DataConfig())


def test_corrupt_image_is_named(tmp_path, scene) -> None:
    write_blender(scene, tmp_path, n_train=3, n_test=1, resolution=24)
    (tmp_path / "train" / "r_1.png").write_bytes(b"not a png at all")
    with pytest.raises(T23dError, match=r"^cannot read image .*train/r_1\.png: "):
        load_dataset(tmp_path, DataConfig())


def test_corrupt_raw_photo_is_named_before_sfm(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / f"p{i}.png")
    (tmp_path / "p1.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(T23dError, match=r"^cannot read image .*p1\.png: "):
        load_dataset(tmp_path, DataConfig())


def test_transforms_with_missing_files_lists_them(tmp_path, scene) -> None:
    write_nerfstudio(scene, tmp_path, n_views=13, resolution=16)
    for i in range(12):
        (tmp_path / "images" / f"frame_{i:05d}.png").unlink()
    shown = ", ".join(re.escape(str(tmp_path / "images" / f"frame_{i:05d}.png")) for i in range(10))
    with pytest.raises(
        T23dError, match=rf"^transforms\.json references 12 missing file\(s\): {shown} \(and 2 more\)$"
    ):
        load_dataset(tmp_path, DataConfig())


def test_unsupported_camera_model_in_transforms(tmp_path, scene) -> None:
    write_nerfstudio(scene, tmp_path, n_views=2, resolution=16)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["camera_model"] = "EQUIRECTANGULAR"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(
        T23dError,
        match=r"^unsupported camera model 'EQUIRECTANGULAR' in .*transforms\.json; accepted: PINHOLE, OPENCV, OPENCV_FISHEYE$",
    ):
        load_dataset(tmp_path, DataConfig())


def test_unsupported_camera_model_in_colmap(tmp_path, scene) -> None:
    write_colmap(scene, tmp_path, n_views=2, resolution=16, num_points=20, binary=False)
    cams = tmp_path / "sparse" / "0" / "cameras.txt"
    lines = cams.read_text().splitlines()
    assert lines[-1].startswith("1 PINHOLE 16 16 ")
    lines[-1] = "1 FOV 16 16 19.3 19.3 8.0 8.0 0.1"
    cams.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        T23dError,
        match=r"^unsupported camera model 'FOV' in .*cameras\.txt; accepted: PINHOLE, SIMPLE_PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV$",
    ):
        load_dataset(tmp_path, DataConfig())


def test_mixed_image_sizes_refused(tmp_path, scene) -> None:
    write_blender(scene, tmp_path, n_train=3, n_test=1, resolution=24)
    Image.open(tmp_path / "train" / "r_2.png").resize((32, 24)).save(tmp_path / "train" / "r_2.png")
    with pytest.raises(
        T23dError,
        match=r"^images have 2 different sizes \(r_0\.png is 24x24; r_2\.png is 32x24\); t23d needs one size",
    ):
        load_dataset(tmp_path, DataConfig())


def test_image_not_matching_its_camera(tmp_path, scene) -> None:
    write_colmap(scene, tmp_path, n_views=2, resolution=16, num_points=20, text=False)
    Image.open(tmp_path / "images" / "view_000.png").resize((8, 8)).save(tmp_path / "images" / "view_000.png")
    with pytest.raises(T23dError, match=r"^image .*view_000\.png is 8x8 but its camera says 16x16"):
        load_dataset(tmp_path, DataConfig())


def test_photos_without_overlap(tmp_path) -> None:
    """Unrelated noise images: SfM registers (almost) nothing and the error says so, with counts."""
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray((rng.random((96, 96, 3)) * 255).astype(np.uint8)).save(tmp_path / f"shot_{i}.png")
    with pytest.raises(
        T23dError,
        match=r"^photos have too little overlap: only [0-2] of 5 images registered; need at least 3\.",
    ):
        load_dataset(tmp_path, DataConfig(sfm=SfmConfig(work_dir=tmp_path / "work")))


def test_explicit_format_without_its_files(tmp_path, scene) -> None:
    write_blender(scene, tmp_path, n_train=2, n_test=0, resolution=16)
    with pytest.raises(
        T23dError, match=r"^format 'nerfstudio' needs .*transforms\.json, which does not exist$"
    ):
        load_dataset(tmp_path, DataConfig(format="nerfstudio"))
    with pytest.raises(T23dError, match=r"^format 'colmap' needs a COLMAP model"):
        load_dataset(tmp_path, DataConfig(format="colmap"))


def test_bad_config_values(tmp_path, scene) -> None:
    write_blender(scene, tmp_path, n_train=2, n_test=0, resolution=16)
    with pytest.raises(
        ConfigError, match=r"^config key 'downscale': invalid value 0; accepted: an integer >= 1$"
    ):
        load_dataset(tmp_path, DataConfig(downscale=0))


def test_input_file_that_is_not_a_transforms_file(tmp_path: Path) -> None:
    f = tmp_path / "model.obj"
    f.write_text("")
    with pytest.raises(T23dError, match=r"^input .*model\.obj is a file; give a folder"):
        load_dataset(f, DataConfig())


@pytest.mark.parametrize(
    ("remove", "missing"),
    [
        (["images.bin"], r"images\.bin/\.txt"),
        (["images.bin", "points3D.bin"], r"images\.bin/\.txt, points3D\.bin/\.txt"),
    ],
)
def test_incomplete_colmap_model_is_an_error_not_raw_photos(
    tmp_path, scene, monkeypatch, remove, missing
) -> None:
    """Issue 9 item 2: a COLMAP folder missing images.bin was taken for raw photos and posed by SfM,
    losing the user's frame and scale without a word. It must fail, naming the missing files."""
    import t23d.data.sfm

    write_colmap(scene, tmp_path, n_views=4, resolution=32, num_points=50, text=False)
    for name in remove:
        (tmp_path / "sparse" / "0" / name).unlink()
    monkeypatch.setattr(t23d.data.sfm, "run_sfm", lambda *a, **k: pytest.fail("SfM must not run"))
    assert detect_format(tmp_path)[0] == "colmap"
    with pytest.raises(
        T23dError, match=rf"^COLMAP model in .*sparse/0 is incomplete: {missing} missing \(found: "
    ):
        load_dataset(tmp_path, DataConfig())
    # asking for SfM explicitly still works from the same folder's photos
    assert detect_format(tmp_path / "images")[0] == "images"


def test_incomplete_text_model_names_the_text_files(tmp_path, scene) -> None:
    write_colmap(scene, tmp_path, n_views=2, resolution=16, num_points=20, binary=False)
    (tmp_path / "sparse" / "0" / "images.txt").unlink()
    with pytest.raises(
        T23dError, match=r"incomplete: images\.bin/\.txt missing \(found: cameras\.txt, points3D\.txt\)"
    ):
        load_dataset(tmp_path, DataConfig())


def test_corrupt_colmap_model_is_named(tmp_path, scene) -> None:
    write_colmap(scene, tmp_path, n_views=2, resolution=16, num_points=20, text=False)
    (tmp_path / "sparse" / "0" / "images.bin").write_bytes(b"\x05\x00")
    with pytest.raises(
        T23dError, match=r"^COLMAP model .*sparse/0 \(\.bin\) cannot be read, it is truncated or corrupt"
    ):
        load_dataset(tmp_path, DataConfig())
