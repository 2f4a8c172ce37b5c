"""Raw photos of the synthetic scene go through pycolmap SfM, register, and recover the true cameras."""

from __future__ import annotations

import numpy as np
import pytest

from t23d.data import DataConfig, SfmConfig, load_dataset
from t23d.data.normalise import umeyama
from t23d.data.synthetic import SyntheticScene
from t23d.data.synthetic_writers import write_raw_photos

pytest.importorskip("pycolmap")


@pytest.mark.parametrize(
    ("camera_model", "matcher", "ext"),
    [("SIMPLE_RADIAL", "exhaustive", ".png"), ("PINHOLE", "sequential", ".jpg")],
)
def test_raw_photos_register_and_align(tmp_path, camera_model, matcher, ext) -> None:
    cap = write_raw_photos(SyntheticScene(), tmp_path / "photos", n_views=24, resolution=160, ext=ext)
    cfg = DataConfig(sfm=SfmConfig(camera_model=camera_model, matcher=matcher, work_dir=tmp_path / "work"))
    ds = load_dataset(tmp_path / "photos", cfg)
    rep = ds.sfm_report
    assert ds.source_format == "images"
    assert rep["num_images"] == 24
    assert rep["num_registered"] >= 22  # >= 90 %
    assert ds.num_images == rep["num_registered"] and (ds.width, ds.height) == (160, 160)
    assert set(rep["timings_s"]) == {"features", "matching", "mapping"}
    assert rep["mean_reprojection_error_px"] < 1.0
    assert (tmp_path / "work" / "sparse" / "best" / "cameras.bin").is_file()

    index = [cap.image_paths.index(p) for p in ds.image_paths]
    true_centres = cap.c2w[index, :3, 3]  # [K, 3]
    est = ds.c2w_world()  # [K, 4, 4] in SfM's world frame
    s, rot, t = umeyama(est[:, :3, 3], true_centres)
    aligned = s * est[:, :3, 3] @ rot.T + t
    rms = float(np.sqrt(((aligned - true_centres) ** 2).sum(1).mean()))
    scene_size = 2 * 3.0  # the orbit's diameter
    assert rms < 0.02 * scene_size
    # orientations agree too after the same rotation (OpenGL camera axes)
    rot_err = np.einsum("ij,njk->nik", rot, est[:, :3, :3]) - cap.c2w[index, :3, :3]
    assert np.abs(rot_err).max() < 0.05
    # the focal length is recovered and the normalised object sits in the unit cube
    np.testing.assert_allclose(ds.intrinsics[:, 0].numpy(), cap.camera.fx, rtol=0.05)
    assert (ds.aabb.abs() <= 1).all()
