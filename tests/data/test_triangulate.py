"""Sparse points for posed photos without masks (issue 12 item 0): triangulated with the given poses, so
the object region and the table under the object are found as for raw photos. A synthetic posed capture
of known geometry: the box and sphere standing on a printed sheet, in a textured room."""

from __future__ import annotations

import numpy as np
import pytest

from t23d.data.config import TriangulationConfig
from t23d.data.synthetic import SyntheticScene, orbit_poses
from t23d.data.synthetic_writers import write_nerfstudio
from t23d.data.triangulate import neighbour_pairs

pytest.importorskip("pycolmap")

SCENE = SyntheticScene(background="textured", ground="printed")


@pytest.fixture(scope="module")
def posed(tmp_path_factory):
    """24 posed photos at 96 px with no masks (nerfstudio layout)."""
    root = tmp_path_factory.mktemp("posed")
    write_nerfstudio(SCENE, root, n_views=24, resolution=96)
    return root


def test_each_camera_is_paired_with_its_nearest_neighbours():
    ring = orbit_poses(12, 3.0, (30.0, 30.0), turns=1.0)  # a flat ring, in order
    assert neighbour_pairs(ring, 2) == sorted(
        {(min(i, (i + 1) % 12), max(i, (i + 1) % 12)) for i in range(12)}
    )
    assert len(neighbour_pairs(ring, 20)) == 12 * 11 // 2  # more neighbours than cameras: every pair once


def test_posed_photos_without_masks_get_points_the_table_and_the_object_region(posed):
    from t23d.data import DataConfig, load_dataset

    ds = load_dataset(posed, DataConfig(holdout_every=0))
    assert ds.triangulation is not None and ds.sfm_model is not None
    w = ds.world_from_normalised
    pts = ds.points.numpy() * w[0, 0] + w[:3, 3]
    assert ds.triangulation["num_points"] == len(pts) >= 200  # measured 418
    assert ds.triangulation["mean_reprojection_error_px"] < 0.5  # measured 0.21 px
    # the saved model is in pixels of the photos as given (features ran on enlarged copies)
    ds.sfm_model.update_point_3d_errors()
    assert ds.sfm_model.compute_mean_reprojection_error() == pytest.approx(
        ds.triangulation["mean_reprojection_error_px"], rel=1e-6
    )
    assert {(c.width, c.height) for c in ds.sfm_model.cameras.values()} == {(96, 96)}
    # the points lie on the object, the printed sheet, or the room (8 units away)
    on_object = np.abs(SCENE.signed_distance(pts)) < 0.03
    on_sheet = np.abs(pts[:, 2] - SCENE.ground_height()) < 0.03
    on_room = np.abs(np.linalg.norm(pts, axis=1) - 8.0) < 0.3
    assert on_object.sum() >= 50 and on_sheet.sum() >= 50
    assert (on_object | on_sheet | on_room).mean() > 0.9, (on_object | on_sheet | on_room).mean()  # 0.97
    # the sheet is found as the plane the object stands on
    plane = ds.support_plane
    assert plane is not None and plane.normal @ [0, 0, 1] > 0.999
    floor = (np.array([[0.3, 0.2, SCENE.ground_height()]]) - w[:3, 3]) / w[0, 0]
    assert abs(plane.height(floor)[0]) * w[0, 0] < 0.02
    # the object region holds the object, down to the sheet, and not the sheet's 1.6-unit disc
    box = ds.aabb.numpy() * w[0, 0] + w[:3, 3]
    obj = SCENE.sample_surface(5000, seed=1)
    assert (box[0] <= obj.min(0) + 0.01).all() and (box[1] >= obj.max(0) - 0.01).all(), box
    assert (box[1, :2] - box[0, :2]).max() < 1.6, box  # the object is 0.9 wide, the sheet 3.2

    # without points nothing tells the object from the room: the region is a guess from the field of view
    off = load_dataset(posed, DataConfig(holdout_every=0, triangulation=TriangulationConfig(mode="off")))
    assert off.points is None and off.support_plane is None and off.triangulation is None
    assert off.aabb.abs().min() == 1.0  # the whole cube, 2.3 units wide here, against 1.3 with points
    off_box = off.aabb.numpy() * off.world_from_normalised[0, 0]
    assert (off_box[1, :2] - off_box[0, :2]).min() > 1.5 * (box[1, :2] - box[0, :2]).max()


def test_a_saved_model_gives_the_same_points_without_matching_again(posed, tmp_path, monkeypatch):
    """A resumed run reads the points its first load triangulated (matching on threads is not bit-exact)."""
    import t23d.data.triangulate
    from t23d.data import DataConfig, load_dataset
    from t23d.data.colmap import write_reconstruction

    first = load_dataset(posed, DataConfig(holdout_every=0))
    write_reconstruction(first.sfm_model, tmp_path / "sfm")

    def no_matching(*args, **kwargs):
        raise AssertionError("triangulated again")

    monkeypatch.setattr(t23d.data.triangulate, "triangulate_posed", no_matching)
    again = load_dataset(posed, DataConfig(holdout_every=0), tmp_path / "sfm")
    assert torch_equal(again.points, first.points)
    assert np.array_equal(again.world_from_normalised, first.world_from_normalised)
    assert again.support_plane.to_dict() == first.support_plane.to_dict()
    assert torch_equal(again.point_views, first.point_views)


def test_each_point_knows_the_training_photos_that_saw_it(posed):
    """The points' tracks come with them (``point_views``: point, photo), indexed in the dataset's own
    photos with a hold-out split: each point projects, in each photo said to see it, within a pixel of
    where the features were matched."""
    import torch

    from t23d.data import DataConfig, load_dataset
    from t23d.render.cameras import Cameras
    from t23d.render.diffrast import project

    ds = load_dataset(posed, DataConfig(holdout_every=3))
    views = ds.point_views
    assert views is not None and views.dtype == torch.int64 and views.shape[1] == 2
    assert len(views) >= 3 * len(ds.points)  # every kept point was seen by at least 3 photos
    assert set(views[:, 1].tolist()) <= set(ds.train_indices)  # held-out photos are not triangulated
    assert set(views[:, 0].tolist()) == set(range(len(ds.points)))
    rec = ds.sfm_model
    observed = {}  # point index -> pixel positions of its matched features, from the model's own tracks
    for k, pid in enumerate(sorted(rec.points3D)):
        observed[k] = np.array(
            [rec.images[e.image_id].points2D[e.point2D_idx].xy for e in rec.points3D[pid].track.elements]
        )
    cams = Cameras(ds.c2w, ds.intrinsics, ds.width, ds.height)
    xy = project(ds.points, cams)  # [N, P, 3] every point in every photo
    pix = xy[views[:, 1], views[:, 0], :2].double().numpy()
    assert (xy[views[:, 1], views[:, 0], 2] > 0).all()  # in front of the camera
    nearest = [np.linalg.norm(observed[int(k)] - p, axis=1).min() for k, p in zip(views[:, 0], pix)]
    assert np.max(nearest) < 1.0, np.max(nearest)
    # a photo off by one would put the points many pixels away (the cameras are 15 degrees apart)
    shifted = [
        int(ds.train_indices[(ds.train_indices.index(int(i)) + 1) % len(ds.train_indices)])
        for i in views[:, 1]
    ]
    wrong = xy[shifted, views[:, 0], :2].double().numpy()
    far = [np.linalg.norm(observed[int(k)] - p, axis=1).min() for k, p in zip(views[:, 0], wrong)]
    assert np.median(far) > 3.0, np.median(far)


def torch_equal(a, b) -> bool:
    """Same shape and values."""
    return a.shape == b.shape and bool((a == b).all())


def test_masked_photos_are_not_triangulated(tmp_path, monkeypatch):
    """Masks already say what the object is; no time is spent on features."""
    import t23d.data.triangulate
    from t23d.data import DataConfig, load_dataset

    def no_matching(*args, **kwargs):
        raise AssertionError("masked photos were triangulated")

    monkeypatch.setattr(t23d.data.triangulate, "triangulate_posed", no_matching)
    write_nerfstudio(SyntheticScene(), tmp_path / "masked", n_views=6, resolution=32, with_masks=True)
    ds = load_dataset(tmp_path / "masked", DataConfig())
    assert ds.alphas is not None and ds.points is None and ds.triangulation is None


def test_too_few_points_are_not_used(tmp_path, caplog):
    """A plain object on a plain backdrop gives no features: the loader says so and what to do."""
    from t23d.data import DataConfig, load_dataset

    plain = SyntheticScene(background="plain", albedo_kind="plain")
    write_nerfstudio(plain, tmp_path / "plain", n_views=8, resolution=48)
    with caplog.at_level("WARNING"):
        ds = load_dataset(tmp_path / "plain", DataConfig(holdout_every=0))
    assert ds.points is None and ds.triangulation is None and ds.support_plane is None
    assert "give masks, or --bbox" in caplog.text


@pytest.mark.parametrize(
    ("key", "value", "accepted"),
    [("mode", "maybe", "auto, off"), ("neighbours", 0, ">= 1"), ("min_track_length", 1, ">= 2")],
)
def test_bad_triangulation_options_are_refused_before_loading(key, value, accepted, tmp_path):
    from t23d.common.errors import ConfigError
    from t23d.data import DataConfig, load_dataset

    with pytest.raises(
        ConfigError, match=rf"'data.triangulation.{key}': invalid value .*; accepted: {accepted}"
    ):
        load_dataset(tmp_path / "missing", DataConfig(triangulation=TriangulationConfig(**{key: value})))


def test_a_failed_triangulation_still_loads_the_photos(posed, monkeypatch, caplog):
    """pycolmap failing inside is no reason to refuse photos that loaded before: a warning, no points."""
    import t23d.data.triangulate
    from t23d.data import DataConfig, load_dataset

    def broken(*args, **kwargs):
        raise RuntimeError("database is locked")

    monkeypatch.setattr(t23d.data.triangulate, "triangulate_posed", broken)
    with caplog.at_level("WARNING"):
        ds = load_dataset(posed, DataConfig(holdout_every=0))
    assert ds.points is None and ds.triangulation is None and ds.support_plane is None
    assert "database is locked" in caplog.text and "give masks, or --bbox" in caplog.text
