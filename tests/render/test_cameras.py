"""Random SDS cameras: the default distance/fov ranges keep the unit sphere in frame; multi-view groups."""

from __future__ import annotations

import pytest
import torch

from t23d.render.cameras import (
    RandomCameraConfig,
    SphereFitDistance,
    WorldDistance,
    fit_sphere_distance,
    sample_random_views,
)


def _sphere_silhouette_pixels(views, radius: float = 1.0, num_points: int = 4000):
    """Pixel coordinates ``[B, N, 2]`` of points on the sphere's silhouette as seen by each camera, and depth."""
    c2w = views.cameras.c2w  # [B, 4, 4]
    eye = c2w[:, :3, 3]  # [B, 3]
    # points on the sphere: the silhouette lies on it, so projecting the whole sphere bounds the silhouette
    g = torch.Generator().manual_seed(0)
    pts = torch.nn.functional.normalize(torch.randn(num_points, 3, generator=g), dim=-1) * radius  # [N, 3]
    w2c = torch.linalg.inv(c2w)  # [B, 4, 4]
    cam = (w2c[:, None, :3, :3] @ pts[None, :, :, None])[..., 0] + w2c[:, None, :3, 3]  # [B, N, 3]
    fx, fy, cx, cy = views.cameras.intrinsics.unbind(-1)  # [B]
    depth = -cam[..., 2]  # OpenGL: the camera looks down -Z
    u = cx[:, None] + fx[:, None] * cam[..., 0] / depth
    v = cy[:, None] - fy[:, None] * cam[..., 1] / depth
    assert bool((eye.norm(dim=-1) > radius).all())
    return torch.stack([u, v], -1), depth


def test_default_cameras_keep_the_unit_sphere_in_frame():
    cfg = RandomCameraConfig(resolution=64, batch_size=256)
    views = sample_random_views(cfg, torch.Generator().manual_seed(1))
    uv, depth = _sphere_silhouette_pixels(views)
    assert bool((depth > 0).all())
    assert float(uv.min()) >= -1e-3 and float(uv.max()) <= 64 + 1e-3
    # ... and fill it: at the smallest scale (1.0) the sphere touches the frame
    extent = (uv.amax(1) - uv.amin(1)).amax(-1)  # [B] widest pixel extent of the sphere
    assert float(extent.min()) > 64 / 1.25 * 0.9, float(extent.min())


def test_old_world_distances_overfill_the_frame():
    """The previous defaults (distance 1.5-2.0, fov 40-70) cut the unit sphere off: the issue's finding."""
    cfg = RandomCameraConfig(resolution=64, batch_size=64, distance=WorldDistance((1.5, 2.0)))
    uv, _ = _sphere_silhouette_pixels(sample_random_views(cfg, torch.Generator().manual_seed(1)))
    outside = (uv < 0).any(-1).any(-1) | (uv > 64).any(-1).any(-1)  # [B]
    assert float(outside.float().mean()) > 0.75


def test_fit_sphere_distance_touches_the_frame():
    fov = torch.tensor([40.0, 70.0])
    d = fit_sphere_distance(1.0, fov)
    # the tangent ray from the camera to the sphere makes half the field of view with the axis
    assert torch.allclose(torch.rad2deg(torch.asin(1.0 / d)) * 2, fov)
    cfg = RandomCameraConfig(batch_size=32, distance=SphereFitDistance(radius=0.5, scale_range=(2.0, 2.0)))
    views = sample_random_views(cfg, torch.Generator().manual_seed(0))
    dist = views.cameras.c2w[:, :3, 3].norm(dim=-1)
    fov_deg = torch.rad2deg(2 * torch.atan(cfg.resolution / 2 / views.cameras.intrinsics[:, 1]))
    assert torch.allclose(dist, 2.0 * 0.5 / torch.sin(torch.deg2rad(fov_deg) / 2), rtol=1e-4)


def test_world_distance_range_is_honoured():
    cfg = RandomCameraConfig(batch_size=64, distance=WorldDistance((2.0, 2.5)))
    dist = sample_random_views(cfg, torch.Generator().manual_seed(0)).cameras.c2w[:, :3, 3].norm(dim=-1)
    assert float(dist.min()) >= 2.0 - 1e-5 and float(dist.max()) <= 2.5 + 1e-5


@pytest.mark.parametrize("num_views", [4, 2])
def test_multi_view_groups_have_fixed_relative_azimuths(num_views):
    cfg = RandomCameraConfig(resolution=16, batch_size=3, jitter=0.1)
    views = sample_random_views(cfg, torch.Generator().manual_seed(2), num_views=num_views)
    assert len(views.cameras) == 3 * num_views
    az = views.azimuth_deg.reshape(3, num_views)
    step = (az - az[:, :1]) % 360.0  # [3, V] relative azimuths
    expected = torch.arange(num_views) * (360.0 / num_views)
    assert torch.allclose(step, expected.expand_as(step), atol=1e-3)
    assert len({round(float(a), 3) for a in az[:, 0]}) == 3  # a random offset per group
    for name in ("elevation_deg",):
        v = getattr(views, name).reshape(3, num_views)
        assert torch.allclose(v, v[:, :1].expand_as(v))
    dist = views.cameras.c2w[:, :3, 3].norm(dim=-1).reshape(3, num_views)
    focal = views.cameras.intrinsics[:, 0].reshape(3, num_views)
    assert torch.allclose(focal, focal[:, :1].expand_as(focal))
    # every camera of a group looks at the same (jittered) target: their optical axes meet in one point
    eye = views.cameras.c2w[:, :3, 3].reshape(3, num_views, 3)
    axis = -views.cameras.c2w[:, :3, 2].reshape(3, num_views, 3)
    proj = torch.eye(3) - axis[..., :, None] * axis[..., None, :]  # [3, V, 3, 3]
    meet = torch.linalg.solve(proj.sum(1), (proj @ eye[..., None]).sum(1))[..., 0]  # [3, 3]
    miss = (proj @ (meet[:, None, :, None] - eye[..., None]))[..., 0].norm(dim=-1)  # [3, V]
    assert float(miss.max()) < 1e-3 and float(meet.norm(dim=-1).max()) > 1e-3  # jittered off the origin
    assert bool(torch.isfinite(dist).all())
    assert views.azimuth_deg.min() >= -180.0 and views.azimuth_deg.max() < 180.0


def test_one_view_keeps_independent_cameras():
    cfg = RandomCameraConfig(batch_size=4)
    a = sample_random_views(cfg, torch.Generator().manual_seed(3))
    b = sample_random_views(cfg, torch.Generator().manual_seed(3), num_views=1)
    assert torch.equal(a.cameras.c2w, b.cameras.c2w)
    assert len(set(a.elevation_deg.tolist())) == 4
    with pytest.raises(ValueError, match="num_views must be >= 1"):
        sample_random_views(cfg, torch.Generator(), num_views=0)
