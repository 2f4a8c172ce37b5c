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


def _open3d_imports() -> bool:
    try:
        import open3d  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


#: Both implementations; the open3d one only where open3d imports (an optional dependency).
BACKENDS = [
    "numpy",
    pytest.param("open3d", marks=pytest.mark.skipif(not _open3d_imports(), reason="open3d does not import")),
]


def sphere_depth(c2w, intrinsics, height, width, centre=(0.0, 0.0, 0.0)):
    """Exact renders of an opaque sphere: hit distance and opacity 1 on it, opacity 0 elsewhere."""
    o, d = camera_rays(np.asarray(c2w), np.asarray(intrinsics), height, width)
    o = o - np.asarray(centre)
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_sphere_is_the_sphere(backend):
    """An off-centre sphere fused from 24 views is that sphere, to a fraction of a voxel."""
    import trimesh

    centre = np.array([0.2, -0.1, 0.05])
    cams = sphere_cameras(AABB, 24, 192)
    fused = fuse_tsdf(
        lambda *cam: sphere_depth(*cam, centre=centre), cams, AABB, resolution=64, backend=backend
    )
    assert fused.weights.max() == 24  # some points are seen by every view
    v, f, level = extract_mesh(lambda p: torch.zeros(len(p)), AABB, Settings(), sdf_fn=fused.sdf_fn())
    assert level == 0.0
    voxel = 2.0 / 64
    radii = np.linalg.norm(v - centre, axis=1)
    assert abs(float(np.median(radii)) - RADIUS) < 0.15 * voxel
    assert np.abs(radii - RADIUS).max() < 0.5 * voxel
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight
    assert mesh.area == pytest.approx(4 * math.pi * RADIUS**2, rel=0.03)


@pytest.mark.parametrize("backend", BACKENDS)
def test_background_pixels_carve_fog_away(backend):
    """A field that renders fog (opacity 0.3 everywhere) leaves no surface: every point is seen through."""

    def fog(c2w, intrinsics, height, width):
        return np.full((height, width), 2.0), np.full((height, width), 0.3)

    fused = fuse_tsdf(fog, sphere_cameras(AABB, 8, 32), AABB, resolution=24, backend=backend)
    assert fused.weights.max() > 0 and fused.values.min() == pytest.approx(fused.truncation)
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
    with pytest.raises(ConfigError, match="tsdf_backend: invalid value 'cuda'"):
        fuse_tsdf(sphere_depth, sphere_cameras(AABB, 2, 16), AABB, 16, backend="cuda")
    with pytest.raises(ConfigError, match="extraction: invalid value 'poisson'"):
        from t23d.export.config import validate_export_config

        validate_export_config(ExportConfig(extraction="poisson"))  # type: ignore[arg-type]


@pytest.mark.skipif(not _open3d_imports(), reason="open3d does not import")
def test_open3d_and_numpy_fuse_the_same_values():
    """Both backends fuse the same values on the same lattice (open3d's voxel centres are extraction's
    lattice points, its pixel centres are shifted to t23d's +0.5 convention)."""
    centre = np.array([0.2, -0.1, 0.05])
    cams = sphere_cameras(AABB, 12, 96)
    depth = lambda *cam: sphere_depth(*cam, centre=centre)  # noqa: E731
    a = fuse_tsdf(depth, cams, AABB, resolution=48, backend="numpy")
    b = fuse_tsdf(depth, cams, AABB, resolution=48, backend="open3d")
    assert a.values.shape == b.values.shape == (49, 49, 49)
    np.testing.assert_allclose(b.origin, a.origin)
    np.testing.assert_allclose(b.spacing, a.spacing)
    assert b.truncation == pytest.approx(a.truncation)
    assert (a.weights == b.weights).mean() > 0.99
    band = (a.weights > 0) & (np.abs(a.values) < 0.99 * a.truncation)
    assert band.sum() > 1000
    assert np.abs(a.values - b.values)[band].mean() < 0.01 * a.truncation
