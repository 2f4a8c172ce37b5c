"""UV unwrapping, the vectorised rasteriser (against a naive one) and texture baking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t23d.common.errors import ConfigError
from t23d.render.raster import rasterize
from t23d.texture import bake_texture, unwrap_uv
from t23d.texture.bake import fill_padding


@pytest.fixture(scope="module")
def sphere_mesh():
    """A unit-ish icosphere (2562 vertices, 5120 faces), outward normals."""
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    return m.vertices.astype(np.float32), m.faces.astype(np.int32), m.vertex_normals.astype(np.float32)


@pytest.fixture(scope="module")
def unwrapped(sphere_mesh):
    v, f, n = sphere_mesh
    v2, f2, uv, vmap = unwrap_uv(v, f, texture_size=256, padding=4)
    return v2, f2, uv, n[vmap], vmap


def test_unwrap_shapes_ranges_and_mapping(sphere_mesh, unwrapped):
    v, f, _ = sphere_mesh
    v2, f2, uv, n2, vmap = unwrapped
    assert uv.shape == (len(v2), 2) and uv.dtype == np.float32
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    assert f2.shape == f.shape and f2.dtype == np.int32 and f2.max() < len(v2)
    assert np.allclose(v2, v[vmap])
    # same triangles, same winding, up to vertex duplication on seams
    assert np.allclose(np.sort(v2[f2].reshape(-1, 9), axis=0), np.sort(v[f].reshape(-1, 9), axis=0))
    # charts do not overlap: total UV area <= 1 and every face has positive UV area (consistent flip)
    a = uv[f2]
    cross = (a[:, 1, 0] - a[:, 0, 0]) * (a[:, 2, 1] - a[:, 0, 1]) - (a[:, 1, 1] - a[:, 0, 1]) * (
        a[:, 2, 0] - a[:, 0, 0]
    )
    assert 0.2 < 0.5 * np.abs(cross).sum() <= 1.0


def _naive_raster(tri: np.ndarray, w: int, h: int) -> np.ndarray:
    """Per-pixel loop: pixel centre (c, r) inside-or-on triangle -> True."""
    out = np.zeros((h, w), dtype=bool)
    for r in range(h):
        for c in range(w):
            p = np.array([c, r], dtype=float)
            s = []
            for i in range(3):
                a, b = tri[i], tri[(i + 1) % 3]
                s.append((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]))
            s = np.array(s)
            out[r, c] = np.all(s >= -1e-9) or np.all(s <= 1e-9)
    return out


def test_rasterizer_matches_naive_reference():
    rng = np.random.default_rng(0)
    tris = rng.uniform(-3, 20, size=(12, 3, 2))
    pix, tid, bary = rasterize(tris, 17, 15)
    for k in range(len(tris)):
        ref = _naive_raster(tris[k], 17, 15)
        mine = np.zeros(17 * 15, dtype=bool)
        p1, _, b1 = rasterize(tris[k : k + 1], 17, 15)
        mine[p1] = True
        assert np.array_equal(mine.reshape(15, 17), ref)
        # barycentrics reproduce the pixel centre
        xy = np.einsum("pk,kc->pc", b1, tris[k])
        assert np.allclose(xy, np.stack([p1 % 17, p1 // 17], axis=1), atol=1e-9)
    assert len(np.unique(pix)) == len(pix)  # one winner per pixel


def test_constant_color_bakes_constant_texture(unwrapped):
    v2, f2, uv, n2, _ = unwrapped
    color = torch.tensor([0.2, 0.6, 0.9])
    calls = []

    def color_fn(p: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        calls.append(len(p))
        assert torch.allclose(d.norm(dim=-1), torch.ones(len(d)), atol=1e-4)
        return color.expand(len(p), 3)

    stats: dict = {}
    img = bake_texture(v2, f2, uv, n2, color_fn, 256, 4, chunk_size=4096, stats=stats)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    expected = np.round(color.numpy() * 255).astype(np.uint8)
    assert np.all(img == expected)  # charts, padding and the rest
    assert max(calls) <= 4096 and 0.3 < stats["coverage"] < 1.0


def test_bake_maps_texels_to_their_surface_points(unwrapped):
    """Colour = position mapped to [0, 1]; sampling the texture at vertex UVs gives back positions."""
    v2, f2, uv, n2, _ = unwrapped

    def color_fn(p: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return p + 0.5

    img = bake_texture(v2, f2, uv, n2, color_fn, 256, 4).astype(np.float64) / 255
    # vertex uv -> nearest texel centre (row 0 = v 1)
    c = np.clip(np.floor(uv[:, 0] * 256).astype(int), 0, 255)
    r = np.clip(np.floor((1 - uv[:, 1]) * 256).astype(int), 0, 255)
    err = np.abs(img[r, c] - (v2 + 0.5)).max(axis=1)
    assert np.median(err) < 0.02 and np.quantile(err, 0.95) < 0.05


def test_albedo_mode_looks_straight_at_the_surface(unwrapped):
    v2, f2, uv, n2, _ = unwrapped
    seen = []

    def color_fn(p: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        seen.append(torch.sum(d * p / p.norm(dim=-1, keepdim=True), dim=-1))
        return torch.full((len(p), 3), 0.5)

    bake_texture(v2, f2, uv, n2, color_fn, 64, 2)
    cos = torch.cat(seen)
    assert float(cos.max()) < -0.99  # view dir == -normal (pointing into the sphere)
    seen.clear()
    bake_texture(v2, f2, uv, n2, color_fn, 64, 2, color_mode="normal_view")
    cos = torch.cat(seen)
    assert float(cos.min()) == pytest.approx(-1.0, abs=0.01) and float(cos.max()) == pytest.approx(
        -0.866, abs=0.02
    )


def test_fill_padding_nearest_then_mean():
    img = np.zeros((32, 32, 3))
    filled = np.zeros((32, 32), dtype=bool)
    img[4:8, 4:8] = [1, 0, 0]
    filled[4:8, 4:8] = True
    img[20:24, 20:24] = [0, 0, 1]
    filled[20:24, 20:24] = True
    out = fill_padding(img, filled, padding=3)
    assert np.all(out[4:8, 1:11] == [1, 0, 0]) and np.all(out[1:11, 4:8] == [1, 0, 0])  # within 3 px
    assert np.all(out[2:10, 2:10] == [1, 0, 0])  # corners at distance sqrt(8) <= 3
    assert np.all(out[20:24, 17:27] == [0, 0, 1]) and np.all(out[17:27, 20:24] == [0, 0, 1])
    assert np.allclose(out[0, 31], [0.5, 0, 0.5])  # far away: mean colour, never black


def test_texture_size_must_be_power_of_two(unwrapped):
    v2, f2, uv, n2, _ = unwrapped
    with pytest.raises(ConfigError, match="power of two.*got 1000"):
        bake_texture(v2, f2, uv, n2, lambda p, d: p, 1000, 4)
    with pytest.raises(ConfigError, match="padding"):
        bake_texture(v2, f2, uv, n2, lambda p, d: p, 64, -1)
