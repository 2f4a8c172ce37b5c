"""The analytic scene generator: true geometry, renders consistent with it, textured background."""

from __future__ import annotations

import dataclasses

import numpy as np

from t23d.data.cameras import Camera
from t23d.data.synthetic import SyntheticScene, orbit_poses, pinhole_camera


def test_sample_surface_lies_on_the_surface_inside_unit_sphere() -> None:
    scene = SyntheticScene()
    pts = scene.sample_surface(4000, seed=3)
    assert pts.shape == (4000, 3)
    assert np.abs(scene.signed_distance(pts)).max() < 1e-9
    assert np.linalg.norm(pts, axis=1).max() < 1.0
    # both parts are sampled: the sphere cap above the box and the box's bottom face
    assert (pts[:, 2] > 0.3).any() and np.isclose(pts[:, 2], -0.7).any()


def test_signed_distance_signs() -> None:
    scene = SyntheticScene()
    assert scene.signed_distance(np.array([[0.0, 0.0, 0.0]]))[0] < 0
    assert scene.signed_distance(np.array([[0.0, 0.0, 2.0]]))[0] == np.float64(2.0 - 0.85)


def test_render_depth_hits_surface_and_alpha() -> None:
    scene = SyntheticScene()
    cam = pinhole_camera(32)
    c2w = orbit_poses(3)[1]
    rgba = scene.render(c2w, cam)
    assert rgba.shape == (32, 32, 4) and rgba.dtype == np.float32
    assert 0.05 < rgba[..., 3].mean() < 0.9  # object covers part of the view, transparent elsewhere
    assert rgba[..., :3].std() > 0.1  # textured
    # the central ray hits the true surface
    o = c2w[:3, 3][None]
    d = -c2w[:3, 2][None]
    t = scene.intersect(o, d)
    assert np.isfinite(t[0]) and abs(scene.signed_distance(o + t[:, None] * d)[0]) < 1e-9
    opaque = dataclasses.replace(scene, background="textured").render(c2w, cam)
    assert np.all(opaque[..., 3] == 1.0)


def test_supersampling_smooths_edges() -> None:
    scene = SyntheticScene()
    c2w = orbit_poses(2)[0]
    a = scene.render(c2w, Camera(24, 24, 29.0, 29.0, 12.0, 12.0), supersample=3)[..., 3]
    assert ((a > 0) & (a < 1)).any()


def test_an_open_topped_box_is_a_cup_seen_into_from_above() -> None:
    """``box_wall``: the box's well is open at the top; rays from above reach its floor, rays from the
    side hit the outer wall, and surface samples cover the well's inside too."""
    scene = SyntheticScene(box_center=(0.0, 0.0, -0.2), box_wall=0.12, sphere_center=(5.0, 0.0, 0.0))
    floor = -0.2 - 0.45 + 0.12
    origins = np.array([[0.0, 0.0, 2.0], [0.44, 0.0, 2.0], [2.0, 0.0, -0.2]])
    dirs = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
    t = scene.intersect(origins, dirs)
    assert np.allclose(t, [2.0 - floor, 2.0 - 0.25, 2.0 - 0.45], atol=1e-4)  # well floor, rim, outer wall
    pts = scene.sample_surface(20000, seed=0)
    assert np.abs(scene.signed_distance(pts)).max() < 1e-6
    on_floor = (np.abs(pts[:, 2] - floor) < 1e-6) & (np.abs(pts[:, :2]).max(-1) < 0.33)
    assert 0.03 < on_floor.mean() < 0.07  # its share of the area: 0.44 of ~8.9 (the far sphere included)
    assert (scene.signed_distance(np.array([[0.0, 0.0, -0.3]])) > 0).all()  # inside the well is outside
