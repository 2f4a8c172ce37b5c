"""Fidelity report (mesh vs field renders) and the two mesh renderers."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from export_fields import AABB, RADIUS, smooth_color, sphere_density, sphere_render_fn

from t23d.export import ExportConfig, export_asset
from t23d.render.mesh import MeshAppearance, cast, orbit_cameras

FAST = dict(
    resolution=64, faces=3000, texture_size=512, preview_size=64, fidelity_views=4, fidelity_resolution=96
)


def _has_open3d() -> bool:
    try:
        import open3d  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


BACKENDS = [
    "raster",
    pytest.param("open3d", marks=pytest.mark.skipif(not _has_open3d(), reason="open3d missing")),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sphere_fidelity_is_high(tmp_path, backend):
    r = export_asset(
        sphere_density, smooth_color, AABB, tmp_path, "ball", ExportConfig(**FAST, render_backend=backend),
        render_field_fn=sphere_render_fn(smooth_color, supersample=2),
    )  # fmt: skip
    assert r.fidelity is not None and r.fidelity.backend == backend and r.fidelity.num_views == 4
    assert r.fidelity.psnr >= 30.0 and r.fidelity.iou >= 0.98
    assert r.fidelity.image_psnr > r.fidelity.psnr  # whole images include the matching background
    doc = json.loads((tmp_path / "export.json").read_text())
    assert doc["fidelity"]["psnr"] == pytest.approx(r.fidelity.psnr) and doc["fidelity"]["warnings"] == []


def test_given_cameras_and_low_fidelity_warns(tmp_path, caplog):
    cams = orbit_cameras(AABB.numpy(), 2, 64)
    # the field claims to be a bigger sphere than the density says -> silhouettes disagree
    with caplog.at_level(logging.WARNING, logger="t23d.export.fidelity"):
        r = export_asset(
            sphere_density, smooth_color, AABB, tmp_path, "ball", ExportConfig(**FAST),
            render_field_fn=sphere_render_fn(smooth_color, radius=1.3 * RADIUS), fidelity_cameras=cams,
        )  # fmt: skip
    assert r.fidelity.num_views == 2 and r.fidelity.iou < 0.9
    assert any("IoU" in m for m in r.fidelity.warnings)
    assert "IoU" in caplog.text


@pytest.mark.skipif(not _has_open3d(), reason="open3d missing")
def test_raster_backend_matches_open3d():
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    v, f = m.vertices, m.faces.astype(np.int64)
    for cam in orbit_cameras(AABB.numpy(), 3, 80):
        t_o, b_o = cast(v, f, cam, "open3d")
        t_r, b_r = cast(v, f, cam, "raster")
        hit_o, hit_r = t_o >= 0, t_r >= 0
        assert (hit_o & hit_r).sum() / (hit_o | hit_r).sum() > 0.99
        both = hit_o & hit_r & (t_o == t_r)
        assert both.mean() > 0.9 * hit_o.mean()
        assert np.allclose(b_o[both], b_r[both], atol=1e-3)  # perspective-correct barycentrics agree
    look = MeshAppearance(vertex_colors=np.full((len(v), 3), 255, np.uint8))
    assert look.texture is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_supersampled_mesh_render_measures_partial_pixel_coverage(backend):
    from t23d.render.mesh import render_mesh

    # a unit square at z = 0 seen from z = 2; its edges fall 0.575 px into pixel columns/rows
    v = np.array([[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.5, 0.5, 0.0], [-0.5, 0.5, 0.0]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    c2w = np.eye(4)
    c2w[2, 3] = 2.0
    cam = (c2w, np.array([30.3, 30.3, 32.0, 32.0]), 64, 64)
    look = MeshAppearance(vertex_colors=np.full((4, 3), 200, dtype=np.uint8))
    side = 30.3 * 0.5  # square side in pixels
    rgb1, cov1 = render_mesh(v, f, look, cam, backend)
    rgb4, cov4 = render_mesh(v, f, look, cam, backend, supersample=4)
    assert set(np.unique(cov1)) == {0.0, 1.0} and cov1.sum() == 16 * 16
    # 229.5 px; 4x4 samples per pixel quantise each edge to 1/4 px (225 here), one sample per pixel gives 256
    assert cov4.sum() == pytest.approx(side**2, abs=6.0)
    partial = (cov4 > 0) & (cov4 < 1)
    assert partial.sum() == 16 * 16 - 14 * 14  # the ring of edge pixels around 14 x 14 covered ones
    np.testing.assert_allclose(
        rgb4, np.repeat(cov4[..., None], 3, axis=2) * 200 / 255, atol=1e-12
    )  # premultiplied
