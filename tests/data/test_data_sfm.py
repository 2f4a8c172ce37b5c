"""Raw photos go through pycolmap SfM, register, and recover the true cameras; photos that do not
register are listed with the reason; a capture SfM cannot pose fails with advice."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from t23d.common.errors import ConfigError, T23dError
from t23d.data import DataConfig, SfmConfig, load_dataset
from t23d.data.exif import exif_focal_length
from t23d.data.normalise import umeyama
from t23d.data.sfm import plan_attempts, sequential_pairs, validate_sfm_config
from t23d.data.synthetic import SyntheticScene, pinhole_camera
from t23d.data.synthetic_writers import focal_35mm_of, write_raw_photos

pytest.importorskip("pycolmap")


def assert_cameras_recovered(ds, cap, rms_fraction: float = 0.02) -> None:
    """Registered cameras match the true ones up to a similarity (positions and orientations)."""
    names = [p.name for p in cap.image_paths]
    index = [names.index(p.name) for p in ds.image_paths]
    true_centres = cap.c2w[index, :3, 3]  # [K, 3]
    est = ds.c2w_world()  # [K, 4, 4] in SfM's world frame
    s, rot, t = umeyama(est[:, :3, 3], true_centres)
    aligned = s * est[:, :3, 3] @ rot.T + t
    rms = float(np.sqrt(((aligned - true_centres) ** 2).sum(1).mean()))
    assert rms < rms_fraction * 6.0, rms  # of the capture's diameter (radius 3)
    rot_err = np.einsum("ij,njk->nik", rot, est[:, :3, :3]) - cap.c2w[index, :3, :3]
    assert np.abs(rot_err).max() < 0.05


@pytest.mark.parametrize(
    ("camera_model", "matcher", "ext"),
    [("SIMPLE_RADIAL", "exhaustive", ".png"), ("PINHOLE", "sequential", ".jpg")],
)
def test_raw_photos_register_and_align(tmp_path, camera_model, matcher, ext) -> None:
    cap = write_raw_photos(SyntheticScene(), tmp_path / "photos", n_views=20, resolution=160, ext=ext)
    sfm = SfmConfig(camera_model=camera_model, matcher=matcher, work_dir=tmp_path / "work")
    ds = load_dataset(tmp_path / "photos", DataConfig(sfm=sfm))
    rep = ds.sfm_report
    assert ds.source_format == "images"
    assert rep["num_images"] == 20
    assert rep["num_registered"] >= 19  # >= 95 %
    assert all(e["reason"] for e in rep["unregistered"])
    assert ds.num_images == rep["num_registered"] and (ds.width, ds.height) == (160, 160)
    assert set(rep["timings_s"]) == {"features", "matching", "mapping"}
    assert rep["mean_reprojection_error_px"] < 1.0
    assert (tmp_path / "work" / "sparse" / "best" / "cameras.bin").is_file()
    # 160 px photos are enlarged twice for SIFT; the model is back in the photos' own pixels
    assert rep["attempts"][0]["upsample"] == 2
    assert_cameras_recovered(ds, cap)
    np.testing.assert_allclose(ds.intrinsics[:, 0].numpy(), cap.camera.fx, rtol=0.05)
    assert (ds.aabb.abs() <= 1).all()


@pytest.fixture(scope="module")
def walkaround(tmp_path_factory):
    """24 hand-held photos at 128 px walking once around a textured object on a plain backdrop, JPEGs
    with the 35 mm-equivalent focal length in EXIF, as a phone writes them."""
    out = tmp_path_factory.mktemp("walkaround")
    scene = SyntheticScene(background="plain")
    cap = write_raw_photos(scene, out / "photos", n_views=24, resolution=128, path="walkaround", ext=".jpg",
                           exif_focal=True)  # fmt: skip
    return out / "photos", cap


def test_walkaround_registers_with_exif_focal(walkaround, tmp_path) -> None:
    photos, cap = walkaround
    ds = load_dataset(photos, DataConfig(sfm=SfmConfig(work_dir=tmp_path / "work")))
    rep = ds.sfm_report
    assert rep["num_registered"] >= 23, rep["unregistered"]  # >= 95 %
    assert rep["attempts"][0]["matcher"] == "exhaustive"  # auto: a small capture
    assert rep["focal_length_px"]["source"] == "EXIF (35 mm-equivalent 37 mm) for 24 of 24 photos"
    # EXIF stores whole millimetres: 37 mm for the true 36.2 mm
    np.testing.assert_allclose(
        rep["focal_length_px"]["initial"], cap.camera.fx * 37 / focal_35mm_of(cap.camera), rtol=1e-3
    )
    # with features on the object only, the photos barely determine the focal length: bundle adjustment
    # drifts it (149-152 px for 154.5, with invented distortion) without explaining them better, so the
    # EXIF value is kept (likelihood ratio ~2 against a threshold of 40)
    choice = rep["focal_length_px"]["choice"]
    assert choice["kept"] == "known", choice
    assert choice["likelihood_ratio"] <= SfmConfig().keep_known_focal_chi2
    assert rep["focal_length_px"]["estimated"] == rep["focal_length_px"]["initial"]
    np.testing.assert_allclose(ds.intrinsics[:, 0].numpy(), rep["focal_length_px"]["initial"][0], rtol=1e-4)
    assert_cameras_recovered(ds, cap)


def test_a_wrong_known_focal_length_gives_way_to_the_refined_one(walkaround, tmp_path) -> None:
    """A focal length 20 % short explains the photos significantly worse than bundle adjustment's own,
    so the refined one is kept, near the truth."""
    photos, cap = walkaround
    sfm = SfmConfig(focal_length_px=0.8 * cap.camera.fx, work_dir=tmp_path / "work")
    rep = load_dataset(photos, DataConfig(sfm=sfm)).sfm_report
    choice = rep["focal_length_px"]["choice"]
    assert choice["kept"] == "refined" and choice["likelihood_ratio"] > 100, choice
    assert choice["rms_error_known_px"] > choice["rms_error_refined_px"]
    # near the truth, far from the 20 % short value given: matching and bundle adjustment on threads are
    # not bit-exact, and with features on the object only the estimate lands short (within 5 % in earlier runs,
    # 5.3 % once with the suite on two workers: RESULTS.md, issue 12 item 0)
    np.testing.assert_allclose(rep["focal_length_px"]["estimated"], cap.camera.fx, rtol=0.08)


def test_sequential_matching_closes_the_loop_and_names_a_stray_photo(walkaround, tmp_path) -> None:
    """Walk-around order: each photo with its next ones, the last wrapping to the first, plus loop
    detection; a photo of something else is not registered and the report says why."""
    photos, cap = walkaround
    mixed = tmp_path / "photos"
    shutil.copytree(photos, mixed)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((128, 128, 3)) * 255).astype(np.uint8)).save(mixed / "photo_012b.jpg")
    sfm = SfmConfig(matcher="sequential", sequential_overlap=5, work_dir=tmp_path / "work")
    ds = load_dataset(mixed, DataConfig(sfm=sfm))
    rep = ds.sfm_report
    first = rep["attempts"][0]
    assert first["matcher"] == "sequential" and first["wrap_around_pairs"] == 15  # 5 + 4 + 3 + 2 + 1
    assert first["loop_detection"] == "vocabulary tree of the capture's own features"
    assert rep["num_images"] == 25 and rep["num_registered"] >= 23
    stray = [e for e in rep["unregistered"] if e["image"] == "photo_012b.jpg"]
    assert stray and stray[0]["reason"].startswith("matched no other photo: it shares too little"), stray
    assert stray[0]["num_features"] > 100 and stray[0]["num_matched_photos"] == 0
    assert "photo_012b.jpg" not in [p.name for p in ds.image_paths]
    assert_cameras_recovered(ds, cap)


def test_relaxed_retry_registers_what_the_first_attempt_missed(walkaround, tmp_path) -> None:
    """Without upsampling, SIFT finds too few features on these small photos to register them all; the
    relaxed second attempt (upsampled, lower threshold, fewer inliers needed) does, and is kept."""
    photos, cap = walkaround
    sfm = SfmConfig(min_feature_image_size=128, work_dir=tmp_path / "work")  # 128 px: no upsampling at first
    ds = load_dataset(photos, DataConfig(sfm=sfm))
    rep = ds.sfm_report
    first, second = rep["attempts"]
    assert first["upsample"] == 1 and second["upsample"] == 2 and second["affine"]
    assert first["num_registered"] < 23 <= second["num_registered"], rep["attempts"]
    assert rep["chosen_attempt"] == "relaxed" and rep["num_registered"] == second["num_registered"]
    assert_cameras_recovered(ds, cap)


@pytest.mark.slow  # 3-15 min on 2 loaded cores: mapping the texture-poor capture tries many starts
def test_plain_object_on_plain_background_gets_texture_advice(tmp_path) -> None:
    """A plain object on a plain backdrop cannot be posed: the error explains why and what to do
    (models made of matches sliding along silhouettes are discarded, not returned); a printed sheet
    under the same object makes it work."""
    plain = SyntheticScene(background="plain", albedo_kind="plain", lighting="lambert")
    write_raw_photos(plain, tmp_path / "plain", n_views=16, resolution=96, path="walkaround", ext=".jpg",
                     exif_focal=True)  # fmt: skip
    with pytest.raises(
        T23dError,
        match=r"^photos have too little texture: only \d+ of 16 images registered; need at least 5\. SfM found "
        r"a median of \d+ features per photo: a plain object on a plain background cannot be posed\. Put texture "
        r"in the scene: lay a newspaper",
    ):
        load_dataset(tmp_path / "plain", DataConfig(sfm=SfmConfig(work_dir=tmp_path / "w1")))

    paper = SyntheticScene(background="plain", albedo_kind="plain", lighting="lambert", ground="printed")
    write_raw_photos(paper, tmp_path / "paper", n_views=16, resolution=96, path="walkaround", ext=".jpg",
                     exif_focal=True)  # fmt: skip
    ds = load_dataset(tmp_path / "paper", DataConfig(sfm=SfmConfig(work_dir=tmp_path / "w2")))
    assert ds.sfm_report["num_registered"] >= 15


def test_exif_focal_length(tmp_path) -> None:
    from PIL import ExifTags

    img = Image.new("RGB", (120, 90))
    img.save(tmp_path / "none.jpg")
    assert exif_focal_length(tmp_path / "none.jpg") is None
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.FocalLengthIn35mmFilm] = 28
    img.save(tmp_path / "f35.jpg", exif=exif)
    got = exif_focal_length(tmp_path / "f35.jpg")
    assert got.source == "35 mm-equivalent 28 mm"
    assert got.focal_px == pytest.approx(28 * 150 / np.hypot(36, 24))  # the 120x90 diagonal is 150 px
    # focal length in mm with the sensor's pixel density, for a photo resized from a 4000 px sensor
    exif = Image.Exif()
    ifd = exif.get_ifd(ExifTags.IFD.Exif)
    ifd[ExifTags.Base.FocalLength] = 4.0
    ifd[ExifTags.Base.FocalPlaneXResolution] = 1000.0
    ifd[ExifTags.Base.FocalPlaneResolutionUnit] = 4  # pixels per millimetre
    ifd[ExifTags.Base.ExifImageWidth] = 4000
    img.save(tmp_path / "fmm.jpg", exif=exif)
    got = exif_focal_length(tmp_path / "fmm.jpg")
    assert (
        got.focal_px == pytest.approx(4.0 * 1000.0 * 120 / 4000)
        and got.source == "4 mm at 1000 px/mm on the sensor"
    )
    # the synthetic writer's EXIF gives back the camera's focal length
    cam = pinhole_camera((160, 120), fov_deg=50)
    assert focal_35mm_of(cam) * np.hypot(160, 120) / np.hypot(36, 24) == pytest.approx(cam.fx)


def test_sequential_pairs_wrap_around() -> None:
    pairs = sequential_pairs(6, 2)
    assert pairs == [
        (0, 1),
        (0, 2),
        (0, 4),
        (0, 5),
        (1, 2),
        (1, 3),
        (1, 5),
        (2, 3),
        (2, 4),
        (3, 4),
        (3, 5),
        (4, 5),
    ]
    assert sequential_pairs(3, 10) == [(0, 1), (0, 2), (1, 2)]


def test_attempt_plan() -> None:
    (first,) = plan_attempts(SfmConfig(retry=False), 40, 96)
    assert (first.upsample, first.matcher) == (3, "exhaustive")
    first, relaxed = plan_attempts(SfmConfig(), 250, 1000)
    assert (first.upsample, first.matcher, first.affine) == (1, "sequential", False)
    assert (relaxed.upsample, relaxed.matcher, relaxed.affine) == (2, "exhaustive", True)
    assert relaxed.peak_threshold == pytest.approx(first.peak_threshold / 2)
    assert relaxed.init_min_num_inliers < first.init_min_num_inliers
    assert plan_attempts(SfmConfig(matcher="sequential"), 20, 2000)[1].matcher == "sequential"
    assert plan_attempts(SfmConfig(min_feature_image_size=0), 20, 64)[0].upsample == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_registered": 1}, r"^config key 'data\.sfm\.min_registered': invalid value 1; accepted: >= 2$"),
        (
            {"focal_length_px": -5.0},
            r"'data\.sfm\.focal_length_px': invalid value -5\.0; accepted: a finite number > 0",
        ),
        ({"retry_below": 1.5}, r"'data\.sfm\.retry_below': invalid value 1\.5; accepted: between 0 and 1$"),
    ],
)
def test_bad_sfm_options(changes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_sfm_config(SfmConfig(**changes))
