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


def test_fidelity_compares_only_the_mesh_above_the_given_cut(tmp_path):
    """``fidelity_cut``: the asset's part below the plane (an extended base, not the field's) is left out
    of the comparison, and the plane recorded: a plane below the ball changes nothing; at its equator the
    compared half no longer covers the field's lower half."""
    whole = export_asset(
        sphere_density, smooth_color, AABB, tmp_path / "whole", "ball", ExportConfig(**FAST),
        render_field_fn=sphere_render_fn(smooth_color, supersample=2),
    )  # fmt: skip
    below = export_asset(
        sphere_density, smooth_color, AABB, tmp_path / "below", "ball", ExportConfig(**FAST),
        render_field_fn=sphere_render_fn(smooth_color, supersample=2), fidelity_cut=np.array([0, 0, 1.0, -2.0]),
    )  # fmt: skip
    half = export_asset(
        sphere_density, smooth_color, AABB, tmp_path / "half", "ball", ExportConfig(**FAST),
        render_field_fn=sphere_render_fn(smooth_color, supersample=2), fidelity_cut=np.array([0, 0, 1.0, 0.0]),
    )  # fmt: skip
    assert whole.fidelity.compared_above is None
    assert below.fidelity.psnr == pytest.approx(whole.fidelity.psnr, abs=0.01)
    assert half.fidelity.iou < 0.8 < whole.fidelity.iou
    assert json.loads((tmp_path / "half" / "export.json").read_text())["fidelity"]["compared_above"] == [
        0,
        0,
        1,
        0,
    ]


def test_clipped_above_cuts_textured_meshes_along_the_plane_and_keeps_their_uvs():
    """A textured box cut at z = 0.1 ends exactly there with its UVs interpolated (here a linear function
    of the position, so exact); a mesh with vertex colours keeps the faces with a vertex above."""
    import trimesh

    from t23d.export.fidelity import clipped_above

    box = trimesh.creation.box()
    v, f = np.asarray(box.vertices), np.asarray(box.faces)
    uv = (v[:, :2] + v[:, 2:] + 1.0) / 3.0
    texture = np.zeros((4, 4, 3), np.uint8)
    cv, cf, look = clipped_above(
        v, f, MeshAppearance(uvs=uv, texture=texture), np.array([0.0, 0.0, 1.0, 0.1])
    )
    assert cv[np.unique(cf)][:, 2].min() == pytest.approx(0.1) and look.texture is texture
    np.testing.assert_allclose(look.uvs, (cv[:, :2] + cv[:, 2:] + 1.0) / 3.0, atol=1e-9)
    assert trimesh.Trimesh(cv, cf).area == pytest.approx(4 * 0.4 + 1.0)  # four side strips and the top
    colours = MeshAppearance(vertex_colors=np.zeros((len(v), 3), np.uint8))
    kv, kf, kept = clipped_above(v, f, colours, np.array([0.0, 0.0, 1.0, 0.1]))
    assert kv is v and kept is colours and len(kf) == 2 + 4 * 2  # the top and every side face


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
