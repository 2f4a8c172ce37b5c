"""Mesh extraction on analytic density fields (no NeRF needed)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from t23d.common.errors import ConfigError, T23dError
from t23d.extract import auto_threshold, evaluate_density_grid, extract_mesh
from t23d.extract.mesh import face_normals, orient_outward

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
RADIUS, WIDTH = 0.5, 0.02
PEAK = 96 * math.log(2)  # twice the automatic threshold at resolution 96, so the iso-surface is at RADIUS


@dataclass
class Settings:
    resolution: int = 96
    threshold: float | None = None
    faces: int = 6000
    min_component_fraction: float = 0.05
    chunk_size: int = 65_536
    fill_cavities: bool = True
    visibility_views: int = 0
    surface_optical_depth: float | None = None


def sphere_density(points: torch.Tensor) -> torch.Tensor:
    """PEAK * sigmoid((RADIUS - |x|) / WIDTH): smooth over ~2 voxels at resolution 96."""
    return PEAK * torch.sigmoid((RADIUS - points.norm(dim=-1)) / WIDTH)


def iso_radius(threshold: float) -> float:
    """Radius where sphere_density == threshold."""
    p = threshold / PEAK
    return RADIUS - WIDTH * math.log(p / (1 - p))


def test_sphere_is_watertight_with_correct_area_and_outward_normals():
    import trimesh

    v, f, thr = extract_mesh(sphere_density, AABB, Settings())
    assert v.dtype == np.float32 and f.dtype == np.int32 and v.shape[1] == 3 and f.shape[1] == 3
    assert len(f) == 6000
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    r = iso_radius(thr)
    assert abs(r - RADIUS) < 1e-3  # the automatic threshold lands near the nominal radius
    assert mesh.area == pytest.approx(4 * math.pi * r**2, rel=0.02)
    assert mesh.area == pytest.approx(4 * math.pi * RADIUS**2, rel=0.02)
    assert mesh.volume > 0  # positive volume <=> outward winding
    n = face_normals(v, f)
    centroids = v[f].mean(axis=1)
    assert np.mean(np.sum(n * centroids, axis=1) > 0) == 1.0  # every face points away from the centre


def test_automatic_threshold_is_ln2_over_voxel_and_override_is_used():
    v, f, thr = extract_mesh(sphere_density, AABB, Settings(resolution=64))
    assert thr == pytest.approx(math.log(2) / (2.0 / 64))
    assert auto_threshold(0.5) == pytest.approx(math.log(2) / 0.5)
    _, _, thr2 = extract_mesh(sphere_density, AABB, Settings(resolution=64, threshold=50.0))
    assert thr2 == 50.0


def test_grid_is_evaluated_in_bounded_chunks_without_grad():
    sizes, grads = [], []

    def fn(p: torch.Tensor) -> torch.Tensor:
        sizes.append(len(p))
        grads.append(torch.is_grad_enabled())
        return sphere_density(p)

    grid = evaluate_density_grid(fn, AABB, 32, chunk_size=500)
    assert grid.values.shape == (33, 33, 33)
    assert max(sizes) <= 500 and sum(sizes) == 33**3 and not any(grads)
    # sample [i, j, k] sits at origin + (i, j, k) * spacing
    idx = np.array([3, 17, 30])
    p = torch.tensor(grid.origin + idx * grid.spacing, dtype=torch.float32)[None]
    assert grid.values[tuple(idx)] == pytest.approx(float(sphere_density(p)), rel=1e-5)


def test_anisotropic_aabb_gets_cubic_voxels():
    grid = evaluate_density_grid(sphere_density, torch.tensor([[-1.0, -0.5, -0.25], [1.0, 0.5, 0.25]]), 40)
    assert grid.values.shape == (41, 21, 11)
    assert np.allclose(grid.spacing, 0.05)


def test_floaters_are_removed():
    def fn(p: torch.Tensor) -> torch.Tensor:
        small = PEAK * torch.sigmoid((0.08 - (p - torch.tensor([0.8, 0.8, 0.8])).norm(dim=-1)) / WIDTH)
        return sphere_density(p) + small

    import trimesh

    v, f, _ = extract_mesh(fn, AABB, Settings(min_component_fraction=0.05))
    assert len(trimesh.Trimesh(v, f).split(only_watertight=False)) == 1
    assert np.linalg.norm(v, axis=1).max() < 0.6
    v, f, _ = extract_mesh(fn, AABB, Settings(min_component_fraction=0.0))
    assert np.linalg.norm(v, axis=1).max() > 0.9


def test_surface_touching_the_aabb_is_closed():
    import trimesh

    box = torch.tensor([[-0.3, -0.3, -0.3], [0.3, 0.3, 0.3]])  # cuts through the sphere
    v, f, _ = extract_mesh(sphere_density, box, Settings(resolution=48))
    assert trimesh.Trimesh(v, f, process=False).is_watertight


def test_orientation_fix_flips_inward_faces():
    res = 33
    g = np.linspace(-1, 1, res)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    grid = 1.0 / (1.0 + np.exp((np.sqrt(x**2 + y**2 + z**2) - 0.5) / 0.05))  # high inside
    import mcubes

    v, f = mcubes.marching_cubes(grid, 0.5)
    f_out, frac = orient_outward(grid, v, f.astype(np.int64))
    f_in, frac_in = orient_outward(grid, v, f[:, ::-1].astype(np.int64))
    assert frac > 0.99 and frac_in > 0.99
    assert np.array_equal(f_out, f_in[:, ::-1]) or np.array_equal(f_in, f_out)
    c = v.mean(axis=0)
    n = face_normals(v, f_in)
    assert np.mean(np.sum(n * (v[f_in].mean(axis=1) - c), axis=1) > 0) > 0.99


def test_no_surface_raises_with_range_and_suggestion():
    def faint(p: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.sigmoid((RADIUS - p.norm(dim=-1)) / WIDTH)

    with pytest.raises(T23dError, match=r"no surface.*threshold 11.09.*range from .* to 2; try threshold=1"):
        extract_mesh(faint, AABB, Settings(resolution=32))
    with pytest.raises(T23dError, match="constant"):
        extract_mesh(lambda p: torch.zeros(len(p)), AABB, Settings(resolution=16))


def test_bad_inputs_raise_config_errors():
    with pytest.raises(ConfigError, match="aabb"):
        extract_mesh(sphere_density, torch.tensor([[1.0, 1, 1], [-1, -1, -1]]), Settings())
    with pytest.raises(ConfigError, match="resolution"):
        extract_mesh(sphere_density, AABB, Settings(resolution=1))
    with pytest.raises(ConfigError, match="threshold"):
        extract_mesh(sphere_density, AABB, Settings(threshold=-1.0))


def test_hidden_inner_shell_is_not_meshed():
    """A hollow ball (dense shell, empty inside) yields the outer surface only when cavities are filled."""
    import dataclasses

    import torch

    from t23d.export.config import ExportConfig
    from t23d.extract import extract_mesh

    def hollow(points: torch.Tensor) -> torch.Tensor:
        r = points.norm(dim=-1)
        return torch.where((r < 0.6) & (r > 0.4), 500.0, 0.0)

    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    cfg = ExportConfig(resolution=64, faces=20000, min_component_fraction=0.0, visibility_views=0)
    v_filled, _, _ = extract_mesh(hollow, aabb, cfg)
    v_both, _, _ = extract_mesh(hollow, aabb, dataclasses.replace(cfg, fill_cavities=False))
    # the visibility filter alone also drops the inner shell: no view around the mesh sees it
    v_seen, _, _ = extract_mesh(
        hollow, aabb, dataclasses.replace(cfg, fill_cavities=False, visibility_views=32)
    )
    assert np.linalg.norm(v_filled, axis=-1).min() > 0.5  # only the outer sphere (r = 0.6)
    assert (np.linalg.norm(v_both, axis=-1) < 0.5).mean() > 0.2  # unfiltered: the inner shell (r = 0.4) too
    assert np.linalg.norm(v_seen, axis=-1).min() > 0.5


@pytest.mark.parametrize("optical_depth", [0.2, math.log(2)])
def test_refinement_moves_the_surface_to_the_given_optical_depth(optical_depth):
    # sphere_density's optical depth between radii r < s is PEAK * WIDTH * (sp((RADIUS - r) / WIDTH) - sp((RADIUS - s) / WIDTH))
    # with sp = softplus; the search starts 3 voxels outside each marching-cubes vertex (radius r0)
    def sp(x):
        return np.logaddexp(0.0, x)

    voxel = 2.0 / Settings.resolution
    v0, f0, _ = extract_mesh(sphere_density, AABB, Settings())
    v, f, _ = extract_mesh(sphere_density, AABB, Settings(surface_optical_depth=optical_depth))
    assert np.array_equal(f, f0)  # only vertices move
    r0, r = np.linalg.norm(v0, axis=1).astype(np.float64), np.linalg.norm(v, axis=1)
    beyond = sp((RADIUS - (r0 + 3 * voxel)) / WIDTH)
    expected = RADIUS - WIDTH * np.log(np.expm1(optical_depth / (PEAK * WIDTH) + beyond))
    assert np.all(np.abs(r0 - expected) > 0.2 * voxel)  # the iso-surface is elsewhere: the test can fail
    assert np.all(np.abs(r - expected) < 0.05 * voxel)
    assert trimesh_watertight(v, f)


def trimesh_watertight(v, f) -> bool:
    import trimesh

    return trimesh.Trimesh(v, f, process=False).is_watertight


def test_refinement_keeps_vertices_whose_ray_starts_inside_or_never_reaches_the_depth():
    from t23d.extract.mesh import refine_to_surface

    v, f, _ = extract_mesh(sphere_density, AABB, Settings(faces=500))
    voxel = 2.0 / Settings.resolution

    def solid(p):
        return torch.full((len(p),), 1e4)

    def empty(p):
        return torch.zeros(len(p))

    for fn in (solid, empty):
        moved_v, moved = refine_to_surface(fn, v, f, voxel, 0.2)
        assert moved == 0.0 and np.array_equal(moved_v, v.astype(np.float64))

    # half the sphere (z > 0) is cut off by a wall of density: only the other half moves
    def capped(p):
        return torch.where(p[:, 2] > 0.1, torch.tensor(1e4), sphere_density(p))

    moved_v, moved = refine_to_surface(capped, v, f, voxel, 0.2)
    top = v[:, 2] > 0.1 + 4 * voxel
    assert np.array_equal(moved_v[top], v[top].astype(np.float64))
    assert 0.3 < moved < 0.7


def test_render_step_sets_a_threshold_that_does_not_move_with_the_resolution():
    step = 2.0 / 96  # sphere_density's PEAK is twice ln 2 / step: the iso-surface is at RADIUS
    radii = []
    for res in (64, 96, 128):
        v, _, thr = extract_mesh(sphere_density, AABB, Settings(resolution=res, faces=4000), render_step=step)
        assert thr == pytest.approx(math.log(2) / step)
        radii.append(np.linalg.norm(v, axis=1).mean())
    assert np.allclose(radii, RADIUS, atol=2e-3)
    # without it the level follows the voxel (ln 2 / voxel), and the surface moves with the resolution
    v64, _, thr64 = extract_mesh(sphere_density, AABB, Settings(resolution=64, faces=4000))
    assert thr64 == pytest.approx(math.log(2) * 64 / 2)
    assert np.linalg.norm(v64, axis=1).mean() - RADIUS > 0.01
    with pytest.raises(ConfigError, match="render_step"):
        extract_mesh(sphere_density, AABB, Settings(), render_step=0.0)


def sphere_sdf(points: torch.Tensor) -> torch.Tensor:
    """Signed distance to the sphere of radius RADIUS (negative inside)."""
    return points.norm(dim=-1) - RADIUS


def test_sdf_zero_level_set_is_the_sphere_itself():
    """With ``sdf_fn`` the mesh is the zero level set, linearly interpolated: every vertex lies on the
    sphere to a small fraction of a voxel (no density threshold, no refinement)."""
    import trimesh

    v, f, level = extract_mesh(sphere_density, AABB, Settings(faces=200_000), sdf_fn=sphere_sdf)
    assert level == 0.0
    radii = np.linalg.norm(v, axis=1)
    voxel = 2.0 / 96
    assert np.abs(radii - RADIUS).max() < 0.02 * voxel
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.volume > 0
    assert mesh.area == pytest.approx(4 * math.pi * RADIUS**2, rel=0.01)


def test_sdf_extraction_closes_a_surface_cut_by_the_box_and_fills_inner_pockets():
    import trimesh

    def cut(points: torch.Tensor) -> torch.Tensor:  # a sphere of radius 1.2 clipped by the [-1, 1]^3 box
        return points.norm(dim=-1) - 1.2

    v, f, _ = extract_mesh(sphere_density, AABB, Settings(resolution=48), sdf_fn=cut)
    assert trimesh.Trimesh(v, f, process=False).is_watertight

    def shell(points: torch.Tensor) -> torch.Tensor:  # a hollow ball: solid between radius 0.3 and 0.6
        r = points.norm(dim=-1)
        return torch.maximum(r - 0.6, 0.3 - r)

    v, f, _ = extract_mesh(sphere_density, AABB, Settings(resolution=64), sdf_fn=shell)
    assert np.linalg.norm(v, axis=1).min() > 0.55  # the inner surface was filled, only the outer one is left


def test_sdf_extraction_errors_name_the_problem():
    with pytest.raises(ConfigError, match="zero level set"):
        extract_mesh(sphere_density, AABB, Settings(threshold=1.0), sdf_fn=sphere_sdf)
    with pytest.raises(T23dError, match="never changes sign.*all outside"):
        extract_mesh(sphere_density, AABB, Settings(resolution=16), sdf_fn=lambda p: p.norm(dim=-1) + 1.0)


def test_cut_below_plane_removes_the_support_and_closes_the_object_flat():
    """An object merged with the floor it stands on (one SDF: a sphere on a slab) is cut at a plane just
    above the floor: the mesh keeps the sphere, closed by a flat cap on the plane; the density follows."""
    import trimesh

    from t23d.extract.grid import cut_below_plane

    def sphere_on_floor(points: torch.Tensor) -> torch.Tensor:
        floor = points[:, 2] + 0.5  # the half-space z < -0.5, as a surface the field learnt too
        return torch.minimum(points.norm(dim=-1) - 0.5, floor)

    plane = np.array([0.0, 0.0, 1.0, -0.45])  # keep z > -0.45
    density, sdf = cut_below_plane(sphere_density, sphere_on_floor, plane)
    p = torch.tensor([[0.0, 0.0, -0.9], [0.0, 0.0, 0.0], [0.9, 0.9, -0.6]])  # floor, sphere, floor
    assert torch.equal(density(p)[[0, 2]], torch.zeros(2)) and density(p)[1] == sphere_density(p)[1]
    assert sdf(p).tolist() == pytest.approx([0.45, -0.45, 0.15], abs=1e-6)  # the floor is outside now
    v, f, _ = extract_mesh(sphere_density, AABB, Settings(resolution=64), sdf_fn=sdf)
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and v[:, 2].min() > -0.45 - 0.01  # nothing of the floor is left
    assert np.abs(v[:, :2]).max() < 0.51  # the floor's extent (the whole box) is gone
    uncut, _, _ = extract_mesh(sphere_density, AABB, Settings(resolution=64), sdf_fn=sphere_on_floor)
    assert np.abs(uncut[:, :2]).max() > 0.95  # without the cut the floor fills the box
    with pytest.raises(ConfigError, match="unit normal"):
        cut_below_plane(sphere_density, None, np.array([0.0, 0.0, 2.0, 0.0]))


def _smooth_union(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """The quadratic smooth minimum of two SDFs (radius ``k``): what a learnt SDF does at a concave corner."""
    gap = (k - (a - b).abs()).clamp(min=0.0)
    return torch.minimum(a, b) - gap * gap / (4.0 * k)


def test_unblend_support_gives_back_the_object_where_a_smooth_union_filleted_it():
    """A sphere resting on a floor, learnt as their smooth union (a fillet of radius 0.2 around the
    contact): the unblended function's zero set is the sphere again wherever it stands above the floor;
    the fillet and the floor are gone, the sphere's inside stays inside, and above the radius nothing
    changes. Extracted and cut like a photo run's asset, the mesh's foot is the sphere's, not the fillet's."""
    from t23d.extract.grid import cut_below_plane, unblend_support

    k, floor_z = 0.2, -0.5

    def sphere(points: torch.Tensor) -> torch.Tensor:
        return points.norm(dim=-1) - 0.5  # touches the floor at (0, 0, -0.5)

    def learnt(points: torch.Tensor) -> torch.Tensor:
        return _smooth_union(sphere(points), points[:, 2] - floor_z, k)

    support = np.array([0.0, 0.0, 1.0, floor_z])
    unblended = unblend_support(learnt, support, k)

    def crossing(fn, h: float) -> float:  # radius where fn changes sign along +x at height h
        x = torch.linspace(0.0, 0.9, 90001)
        pts = torch.stack([x, torch.zeros_like(x), torch.full_like(x, floor_z + h)], -1)
        outside = fn(pts) > 0
        return float(x[torch.nonzero(outside)[0, 0]])

    for h in (0.03, 0.08, 0.15):
        true_r = (0.25 - (0.5 - h) ** 2) ** 0.5
        assert crossing(learnt, h) > true_r + (0.02 if h < 0.1 else 0.002)  # the fillet
        assert crossing(unblended, h) == pytest.approx(true_r, abs=2e-4)
    above = torch.tensor([[0.3, 0.1, floor_z + 0.25], [0.0, 0.0, 0.2], [0.0, 0.6, -0.1]])
    assert torch.equal(unblended(above), learnt(above))
    inside = torch.tensor([[0.0, 0.0, floor_z + 0.05], [0.1, 0.0, floor_z + 0.1]])
    assert (unblended(inside) < 0).all()
    far_floor = torch.tensor([[0.85, 0.0, floor_z], [0.0, -0.85, floor_z + 0.01]])
    assert (unblended(far_floor) >= k / 4 - 0.01).all()  # the floor itself no longer crosses zero

    cut = support + np.array([0.0, 0.0, 0.0, 0.05])
    for fn, foot in ((learnt, "fillet"), (unblended, "sphere")):
        _, sdf = cut_below_plane(sphere_density, fn, cut)
        v, _, _ = extract_mesh(sphere_density, AABB, Settings(resolution=96), sdf_fn=sdf)
        band = v[np.abs(v[:, 2] - (floor_z + 0.06)) < 0.01]
        widest = float(np.linalg.norm(band[:, :2], axis=1).max())
        true_r = (0.25 - (0.5 - 0.07) ** 2) ** 0.5  # the sphere's radius at the band's top
        assert (widest < true_r + 0.02) == (foot == "sphere"), (foot, widest, true_r)
    with pytest.raises(ConfigError, match="radius must be a finite number > 0"):
        unblend_support(learnt, support, 0.0)
    with pytest.raises(ConfigError, match="unit normal"):
        unblend_support(learnt, np.array([0.0, 0.0, 2.0, 0.0]), k)


def test_extend_to_support_stands_the_cut_object_back_on_its_plane():
    """A can standing on a floor, learnt merged with it, cut 0.05 above the floor: extended, the asset is
    the can down to the floor (its outline at the cut continued straight down, closed flat on the floor),
    where the cut alone left it 0.05 short; above the cut nothing changes, and the floor stays out."""
    import trimesh

    from t23d.extract.grid import cut_below_plane, extend_to_support

    floor_z, lift = -0.5, 0.05

    def can_on_floor(points: torch.Tensor) -> torch.Tensor:
        can = torch.maximum(points[:, :2].norm(dim=-1) - 0.35, (points[:, 2] + 0.1).abs() - 0.4)
        return torch.minimum(can, points[:, 2] - floor_z)

    support = np.array([0.0, 0.0, 1.0, floor_z])
    cut = support + np.array([0.0, 0.0, 0.0, lift])
    extended = extend_to_support(can_on_floor, cut, floor_z)
    above = torch.tensor([[0.1, 0.0, 0.0], [0.5, 0.2, -0.3], [0.0, 0.0, floor_z + lift + 0.01]])
    assert extended(above).tolist() == pytest.approx(can_on_floor(above).tolist(), abs=1e-6)
    band = torch.tensor([[0.3, 0.0, floor_z + 0.02], [0.4, 0.0, floor_z + 0.02], [0.9, 0.0, floor_z + 0.02]])
    assert extended(band).tolist() == pytest.approx([-0.02, 0.05, 0.05], abs=1e-6)  # the can; beside it empty
    assert (extended(torch.tensor([[0.0, 0.0, floor_z - 0.01]])) > 0).all()  # nothing below the floor

    v, f, _ = extract_mesh(
        sphere_density,
        AABB,
        Settings(resolution=96),
        sdf_fn=cut_below_plane(sphere_density, extended, support)[1],
    )
    assert trimesh.Trimesh(v, f, process=False).is_watertight
    assert v[:, 2].min() == pytest.approx(floor_z, abs=0.01)  # on the floor, not at the cut
    assert np.linalg.norm(v[:, :2], axis=1).max() < 0.36  # the can's outline, none of the floor
    short, _, _ = extract_mesh(
        sphere_density,
        AABB,
        Settings(resolution=96),
        sdf_fn=cut_below_plane(sphere_density, can_on_floor, cut)[1],
    )
    assert short[:, 2].min() > floor_z + lift - 0.01  # the cut alone ends the asset above the floor
    with pytest.raises(ConfigError, match="below the cut"):
        extend_to_support(can_on_floor, cut, floor_z + 0.1)


def test_lifted_to_plane_looks_up_low_points_just_above_the_cut():
    """Points below the cut, or less than ``lift`` above it, take the colour ``lift`` above it (moved along
    the plane's normal, a tilted one too); points higher up and the view directions pass unchanged."""
    from t23d.extract.grid import lifted_to_plane

    seen = {}

    def position(points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        seen["directions"] = directions
        return points

    tilt = np.array([0.0, 0.6, 0.8])
    for normal in (np.array([0.0, 0.0, 1.0]), tilt):
        plane = np.array([*normal, -0.5])
        lifted = lifted_to_plane(position, plane, 0.02)
        pts = torch.tensor([[0.1, 0.2, -0.9], [0.3, -0.1, 0.4], [0.0, 0.0, 0.0]])
        n = torch.tensor(normal, dtype=torch.float32)
        pts = pts - (pts @ n - (-0.5))[:, None] * n + torch.tensor([-0.1, 0.01, 0.5])[:, None] * n
        dirs = torch.randn(3, 3)
        out = lifted(pts, dirs)
        heights = (out @ n + 0.5).tolist()
        assert heights == pytest.approx([0.02, 0.02, 0.5], abs=1e-6)
        assert torch.allclose(out - pts, (out - pts) @ n[:, None] * n[None], atol=1e-6)  # along the normal
        assert torch.equal(out[2], pts[2]) and seen["directions"] is dirs
