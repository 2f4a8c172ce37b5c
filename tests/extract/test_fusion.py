"""TSDF fusion of rendered depth maps (``ExportConfig.extraction = "tsdf"``) on analytic renders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from t23d.common.errors import ConfigError, T23dError
from t23d.extract import extract_mesh
from t23d.extract.fusion import fuse_tsdf, sphere_cameras
from t23d.render.mesh import camera_rays

AABB = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
RADIUS = 0.5


def sphere_depth(c2w, intrinsics, height, width):
    """Exact renders of an opaque sphere: hit distance and opacity 1 on it, opacity 0 elsewhere."""
    o, d = camera_rays(np.asarray(c2w), np.asarray(intrinsics), height, width)
    b = np.einsum("nk,nk->n", o, d)
    c = np.einsum("nk,nk->n", o, o) - RADIUS**2
    disc = b * b - c
    hit = disc > 0
    t = np.where(hit, -b - np.sqrt(np.maximum(disc, 0.0)), 0.0)
    return t.reshape(height, width), hit.astype(np.float64).reshape(height, width)


class Settings:
    resolution = 64
    threshold = None
    faces = 20000
    min_component_fraction = 0.05
    chunk_size = 65536
    fill_cavities = True
    visibility_views = 0
    surface_optical_depth = None


def test_fused_sphere_is_the_sphere():
    import trimesh

    cams = sphere_cameras(AABB, 24, 192)
    fused = fuse_tsdf(sphere_depth, cams, AABB, resolution=64)
    assert fused.weights.max() == 24  # some points are seen by every view
    v, f, level = extract_mesh(lambda p: torch.zeros(len(p)), AABB, Settings(), sdf_fn=fused.sdf_fn())
    assert level == 0.0
    voxel = 2.0 / 64
    radii = np.linalg.norm(v, axis=1)
    assert abs(float(np.median(radii)) - RADIUS) < 0.15 * voxel
    assert np.abs(radii - RADIUS).max() < 0.5 * voxel
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight
    assert mesh.area == pytest.approx(4 * math.pi * RADIUS**2, rel=0.03)


def test_background_pixels_carve_fog_away():
    """A field that renders fog (opacity 0.3 everywhere) leaves no surface: every point is seen through."""

    def fog(c2w, intrinsics, height, width):
        return np.full((height, width), 2.0), np.full((height, width), 0.3)

    fused = fuse_tsdf(fog, sphere_cameras(AABB, 8, 32), AABB, resolution=24)
    with pytest.raises(T23dError, match="never changes sign"):
        extract_mesh(lambda p: torch.zeros(len(p)), AABB, Settings(), sdf_fn=fused.sdf_fn())


def test_fusion_errors_name_the_problem(tmp_path):
    from t23d.export import export_asset
    from t23d.export.config import ExportConfig

    with pytest.raises(ConfigError, match="at least one camera"):
        fuse_tsdf(sphere_depth, [], AABB, 16)
    with pytest.raises(ConfigError, match="truncation_voxels"):
        fuse_tsdf(sphere_depth, sphere_cameras(AABB, 2, 16), AABB, 16, truncation_voxels=0)
    with pytest.raises(ConfigError, match="needs a render_depth_fn"):
        export_asset(
            lambda p: torch.zeros(len(p)),
            lambda p, d: torch.zeros(len(p), 3),
            AABB,
            tmp_path,
            "x",
            ExportConfig(extraction="tsdf", resolution=16, faces=100, texture_size=64, fidelity_views=0),
        )
    with pytest.raises(ConfigError, match="extraction: invalid value 'poisson'"):
        from t23d.export.config import validate_export_config

        validate_export_config(ExportConfig(extraction="poisson"))  # type: ignore[arg-type]
