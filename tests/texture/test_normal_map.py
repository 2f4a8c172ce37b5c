"""Tangent-space normal maps: tangents, a flat bake, a bumpy analytic bake, closest-point detail normals."""

from __future__ import annotations

import numpy as np
import pytest

from t23d.texture.normal_map import (
    FLAT,
    bake_normal_map,
    closest_point_normal_fn,
    vertex_tangents,
)

AMP, FREQ = 0.04, 2.5  # the bumps: h(x, y) = AMP sin(2 pi FREQ x) sin(2 pi FREQ y)


def plane(n: int = 9, flip_v: bool = False):
    """A flat grid over [0, 1]^2 in z = 0 with uv = (x, y) (or (x, 1 - y)), normals +Z."""
    xs = np.linspace(0.0, 1.0, n)
    yy, xx = np.meshgrid(xs, xs, indexing="ij")
    v = np.stack([xx, yy, np.zeros_like(xx)], -1).reshape(-1, 3)
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            i = r * n + c
            faces += [[i, i + 1, i + n + 1], [i, i + n + 1, i + n]]
    uv = v[:, :2].copy()
    if flip_v:
        uv[:, 1] = 1.0 - uv[:, 1]
    normals = np.tile([0.0, 0.0, 1.0], (len(v), 1))
    # inset the UVs a little so every chart texel lies inside [0, 1]
    return v, np.array(faces), 0.05 + 0.9 * uv, normals


def bumpy_normals(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Analytic unit normals of the height field h over the plane (the detail surface)."""
    k = 2 * np.pi * FREQ
    x, y = points[:, 0], points[:, 1]
    hx = AMP * k * np.cos(k * x) * np.sin(k * y)
    hy = AMP * k * np.sin(k * x) * np.cos(k * y)
    n = np.stack([-hx, -hy, np.ones_like(x)], -1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def decode(image: np.ndarray, v, faces, uv, normals, tangents, points_bary):
    """Decode the normal map at surface points (face, barycentrics) as a glTF viewer does:
    nearest texel, n = normalize(x T + y B + z N), B = w (N x T)."""
    face, bary = points_bary
    corners = faces[face]
    s = image.shape[0]
    uvp = np.einsum("pk,pkc->pc", bary, uv[corners])
    col = np.clip((uvp[:, 0] * s).astype(int), 0, s - 1)
    row = np.clip(((1.0 - uvp[:, 1]) * s).astype(int), 0, s - 1)
    local = image[row, col].astype(np.float64) / 255.0 * 2.0 - 1.0
    n = np.einsum("pk,pkc->pc", bary, normals[corners])
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    t = np.einsum("pk,pkc->pc", bary, tangents[corners, :3])
    t /= np.linalg.norm(t, axis=-1, keepdims=True)
    w = tangents[corners[:, 0], 3]
    b = w[:, None] * np.cross(n, t)
    out = local[:, :1] * t + local[:, 1:2] * b + local[:, 2:3] * n
    return out / np.linalg.norm(out, axis=-1, keepdims=True), np.einsum("pk,pkc->pc", bary, v[corners])


@pytest.mark.parametrize("flip_v", [False, True])
def test_tangents_follow_u_and_handedness_follows_v(flip_v):
    v, f, uv, n = plane(flip_v=flip_v)
    t = vertex_tangents(v, f, n, uv)
    np.testing.assert_allclose(t[:, :3], np.tile([1.0, 0.0, 0.0], (len(v), 1)), atol=1e-6)
    # bitangent = w (N x T) must point along +v: +Y on the plane, or -Y when v runs the other way
    b = t[:, 3:4] * np.cross(n, t[:, :3])
    np.testing.assert_allclose(b, np.tile([0.0, -1.0 if flip_v else 1.0, 0.0], (len(v), 1)), atol=1e-6)


def test_tangents_are_unit_and_perpendicular_on_a_curved_mesh():
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    p = mesh.vertices / 0.5
    uv = np.stack([np.arctan2(p[:, 1], p[:, 0]) / (2 * np.pi) + 0.5, 1.0 - np.arccos(p[:, 2]) / np.pi], -1)
    t = vertex_tangents(mesh.vertices, mesh.faces, mesh.vertex_normals, uv)
    np.testing.assert_allclose(np.linalg.norm(t[:, :3], axis=-1), 1.0, atol=1e-5)
    assert np.abs((t[:, :3] * mesh.vertex_normals).sum(-1)).max() < 1e-5
    assert set(np.unique(t[:, 3])) <= {-1.0, 1.0}


def test_constant_normal_surface_bakes_a_flat_map():
    v, f, uv, n = plane()
    t = vertex_tangents(v, f, n, uv)
    image, stats = bake_normal_map(v, f, uv, n, t, lambda p, nn: nn, 64, padding=4)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert (image == FLAT).all()  # covered texels and padding alike
    assert stats.texels > 0.7 * 64 * 64 and stats.error_deg < 0.5 and stats.baseline_deg == 0.0


@pytest.mark.parametrize("flip_v", [False, True])
def test_bumpy_surface_bakes_normals_that_decode_to_the_analytic_ones(flip_v):
    v, f, uv, n = plane(flip_v=flip_v)
    t = vertex_tangents(v, f, n, uv)
    image, stats = bake_normal_map(v, f, uv, n, t, bumpy_normals, 256, padding=4)
    rng = np.random.default_rng(0)
    face = rng.integers(0, len(f), 2000)
    bary = rng.dirichlet([1.0, 1.0, 1.0], 2000)
    decoded, points = decode(image, v, f, uv, n, t, (face, bary))
    truth = bumpy_normals(points, None)
    angle = np.degrees(np.arccos(np.clip((decoded * truth).sum(-1), -1, 1)))
    plain = np.degrees(np.arccos(np.clip(truth[:, 2], -1, 1)))  # what the flat mesh shows without the map
    assert plain.mean() > 15.0  # the bumps are real
    assert angle.mean() < 1.5 and np.percentile(angle, 99) < 4.0, (angle.mean(), angle.max())
    assert stats.error_deg < 1.0 and stats.baseline_deg > 15.0


def test_closest_point_normals_of_a_dense_sphere_match_the_sphere():
    import trimesh

    dense = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    fn = closest_point_normal_fn(dense.vertices, dense.faces)
    rng = np.random.default_rng(1)
    d = rng.normal(size=(500, 3))
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    for radius in (0.48, 0.5, 0.52):  # on, inside and outside the surface
        n = fn(radius * d, d)
        assert (n * d).sum(-1).min() > 0.995
