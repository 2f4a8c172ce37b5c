"""Texture from photos (:mod:`t23d.texture.photos`): photos rendered from a mesh of known colour are
projected back onto it; occlusion, masks and never-seen surface are checked against that truth."""

from __future__ import annotations

import numpy as np
import pytest

from t23d.common.errors import ConfigError, T23dError
from t23d.render.mesh import cast, look_at
from t23d.texture.photos import PhotoSet, project_photos


def _pattern(p: np.ndarray) -> np.ndarray:
    """A colour that changes over a few hundredths of a unit: blur or misregistration shows."""
    return 0.5 + 0.45 * np.stack([np.sin(9 * p[:, 0]), np.sin(11 * p[:, 1] + 1), np.cos(7 * p[:, 2])], 1)


def _mesh(*spheres: tuple[tuple[float, float, float], float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Icospheres (centre, radius) as one mesh; returns vertices, faces and which sphere each vertex is on."""
    import trimesh

    vs, fs, label, offset = [], [], [], 0
    for k, (centre, radius) in enumerate(spheres):
        m = trimesh.creation.icosphere(subdivisions=5, radius=radius)
        vs.append(m.vertices + np.asarray(centre))
        fs.append(m.faces + offset)
        label.append(np.full(len(m.vertices), k))
        offset += len(m.vertices)
    return np.concatenate(vs), np.concatenate(fs), np.concatenate(label)


def _photos(v, f, colour_of, eyes, size=96, alpha_border=False) -> PhotoSet:
    """Exact renders of the mesh coloured by ``colour_of(points)``: black background, alpha = coverage."""
    focal = 0.5 * size / np.tan(np.radians(25.0))
    intr = np.array([focal, focal, size / 2, size / 2])
    cams, images, alphas = [], [], []
    for eye in eyes:
        cam = (look_at(np.asarray(eye, float), np.zeros(3)), intr, size, size)
        tri, bary = cast(v, f, cam, "auto")
        img = np.zeros((size * size, 3), np.float32)
        hit = tri >= 0
        img[hit] = colour_of(np.einsum("pk,pkc->pc", bary[hit], v[f[tri[hit]]]))
        alpha = hit.astype(np.float32).reshape(size, size)
        cams.append(cam)
        images.append(img.reshape(size, size, 3))
        alphas.append(alpha)
    return PhotoSet(cams, images, alphas if alpha_border else None)


def _ring(n: int, elevation_deg: float, dist: float = 3.0) -> list[np.ndarray]:
    el = np.radians(elevation_deg)
    return [
        dist * np.array([np.cos(el) * np.cos(a), np.cos(el) * np.sin(a), np.sin(el)])
        for a in np.linspace(0, 2 * np.pi, n, endpoint=False)
    ]


def _surface_points(v, f, n, seed=0):
    """Random points on the mesh with their (face) normals and triangle indices."""
    rng = np.random.default_rng(seed)
    tri = rng.integers(0, len(f), n)
    b = rng.dirichlet(np.ones(3), n)
    p = np.einsum("pk,pkc->pc", b, v[f[tri]])
    a, bb, c = v[f[tri, 0]], v[f[tri, 1]], v[f[tri, 2]]
    nrm = np.cross(bb - a, c - a)
    return p, nrm / np.linalg.norm(nrm, axis=1, keepdims=True), tri


def test_photos_reproduce_the_colour_they_show_and_leave_unseen_surface_to_the_field():
    v, f, _ = _mesh(((0.0, 0.0, 0.0), 0.6))
    eyes = _ring(12, 20.0) + _ring(6, 60.0)  # nothing below -20 degrees of latitude is ever seen
    photos = _photos(v, f, _pattern, eyes, alpha_border=True)
    p, n, _ = _surface_points(v, f, 20000)
    field = np.full((len(p), 3), 0.2, np.float32)  # a wrong, flat colour: photos must replace it
    rgb, stats = project_photos(p, n, field, v, f, photos, match_field=False)
    truth = _pattern(p)
    seen = p[:, 2] / 0.6 > -0.1
    unseen = p[:, 2] / 0.6 < -0.75
    err = np.abs(rgb - truth).max(axis=1)
    # bilinear sampling of 96 px photos of a pattern with a ~0.6-unit period: a few hundredths
    assert np.median(err[seen]) < 0.03 and np.quantile(err[seen], 0.99) < 0.12, np.quantile(err[seen], 0.99)
    assert np.abs(rgb[unseen] - 0.2).max() < 1e-6  # the field's colour, untouched
    assert 0.5 < stats.covered < 0.95 and stats.photos == 18 and stats.mean_views > 3


def test_an_occluded_surface_takes_nothing_from_the_surface_in_front():
    # a small red sphere in front of a large blue one, seen from three cameras on the same side
    v, f, label = _mesh(((0.0, -0.9, 0.0), 0.35), ((0.0, 0.4, 0.0), 0.8))
    on_front = np.zeros(len(v), bool)
    on_front[label == 0] = True

    def colour(pts):
        front = np.linalg.norm(pts - np.array([0.0, -0.9, 0.0]), axis=1) < 0.4
        return np.where(front[:, None], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]).astype(np.float32)

    eyes = [np.array([0.0, -3.5, 0.0]), np.array([0.4, -3.4, 0.3]), np.array([-0.4, -3.4, -0.3])]
    photos = _photos(v, f, colour, eyes, size=128)
    p, n, tri = _surface_points(v, f, 30000, seed=1)
    back = label[f[tri, 0]] == 1
    rgb, _ = project_photos(p, n, np.zeros((len(p), 3), np.float32), v, f, photos, match_field=False)
    red_on_back = rgb[back, 0]
    assert red_on_back.max() < 0.05, red_on_back.max()  # no red leaks onto the blue sphere
    # ...while the blue sphere's visible part does take the photos' blue
    facing = back & (n[:, 1] < -0.5) & (np.abs(p[:, 0]) > 0.6)
    assert facing.sum() > 50 and np.median(rgb[facing, 2]) > 0.95


def test_the_photos_masks_keep_the_background_off_a_mesh_fatter_than_the_object():
    # the mesh is 5 % larger than the object in the photos (a reconstruction a little fat): near its
    # rim, texels project onto background pixels with no depth edge of the mesh nearby; the mask says so
    v_obj, f_obj, _ = _mesh(((0.0, 0.0, 0.0), 0.6))
    v, f, _ = _mesh(((0.0, 0.0, 0.0), 0.63))
    eyes = _ring(8, 10.0)
    photos = _photos(v_obj, f_obj, lambda p: np.ones((len(p), 3), np.float32), eyes, alpha_border=True)
    p, n, _ = _surface_points(v, f, 20000, seed=2)
    rgb, stats = project_photos(p, n, np.ones((len(p), 3), np.float32), v, f, photos)
    assert rgb.min() > 0.99, rgb.min()  # the photos' black background never reaches the texture
    assert stats.covered > 0.5
    unmasked = PhotoSet(photos.cameras, photos.images, None)
    rgb, _ = project_photos(p, n, np.ones((len(p), 3), np.float32), v, f, unmasked)
    assert rgb.min() < 0.9  # without masks it does (what the masked case is guarding against)


def test_photos_of_different_exposure_are_matched_to_the_fields_colour():
    v, f, _ = _mesh(((0.0, 0.0, 0.0), 0.6))
    eyes = _ring(12, 20.0) + _ring(6, 60.0)
    photos = _photos(v, f, _pattern, eyes)
    rng = np.random.default_rng(4)
    gains = rng.uniform(0.6, 1.3, (len(eyes), 3)).astype(np.float32)  # exposure and white balance
    for img, g in zip(photos.images, gains, strict=True):
        img *= g
    p, n, _ = _surface_points(v, f, 20000, seed=3)
    truth = _pattern(p)
    blurred = 0.5 + 0.8 * (truth - 0.5)  # a field that knows the neutral colour, with less contrast
    seen = p[:, 2] / 0.6 > -0.1
    matched, stats = project_photos(p, n, blurred, v, f, photos, match_field=True)
    raw, _ = project_photos(p, n, blurred, v, f, photos, match_field=False)
    err_matched = np.abs(matched - truth)[seen].mean()
    err_raw = np.abs(raw - truth)[seen].mean()
    assert err_matched < 0.7 * err_raw, (err_matched, err_raw)  # measured 0.028 vs 0.046
    assert err_matched < np.abs(blurred - truth)[seen].mean()  # sharper than the field it matched
    assert stats.gain_range[0] < 0.9 and stats.gain_range[1] > 1.2  # undoes 0.6..1.3


def test_bad_photo_sets_and_options_are_refused():
    v, f, _ = _mesh(((0.0, 0.0, 0.0), 0.6))
    photos = _photos(v, f, _pattern, _ring(2, 0.0), size=32)
    with pytest.raises(T23dError, match="expected one of each"):
        PhotoSet(photos.cameras, photos.images[:1])
    with pytest.raises(T23dError, match="its camera says"):
        PhotoSet(photos.cameras, [np.zeros((16, 16, 3))] * 2)
    p, n, _ = _surface_points(v, f, 10)
    with pytest.raises(ConfigError, match="photo_top_k"):
        project_photos(p, n, np.zeros((10, 3)), v, f, photos, top_k=0)
