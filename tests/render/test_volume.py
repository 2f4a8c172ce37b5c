"""Volume rendering: packed compositing and two-level empty-space skipping against naive references."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from t23d.field.appearance import Appearance, AppearanceConfig, AppearanceRender
from t23d.field.background import Background, ConstantBackground
from t23d.field.hashgrid import HashGridConfig
from t23d.field.nerf import FieldConfig, NeRFField, SDFConfig
from t23d.render.cameras import orbit_cameras
from t23d.render.occupancy import OccupancyGridConfig
from t23d.render.rays import Rays, camera_rays
from t23d.render.volume import (
    RenderConfig,
    _packed_weights,
    make_occupancy_grid,
    measured_occupancy,
    render_rays,
    update_occupancy,
)


def test_packed_weights_match_dense_compositing():
    g = torch.Generator().manual_seed(0)
    counts = torch.tensor([3, 0, 5, 1, 7])
    ray = torch.repeat_interleave(torch.arange(5), counts)
    tau = torch.rand(int(counts.sum()), generator=g) * 2.0
    got = _packed_weights(tau, ray, 5)
    expected = []
    for r in range(5):
        t = tau[ray == r].double()
        trans = torch.exp(-(torch.cumsum(t, 0) - t))  # naive exclusive transmittance
        expected.append(trans * (1 - torch.exp(-t)))
    torch.testing.assert_close(got, torch.cat(expected).float())


def _occupied_radii(grid) -> set[float]:
    """Distances (rounded to 0.01) from the centre of the occupied cells on the +x axis through the middle."""
    g = grid.cfg.resolution
    centres = grid.cell_centres()
    on_axis = (
        (centres[:, 1].abs() < 1.0 / g + 1e-6) & (centres[:, 2].abs() < 1.0 / g + 1e-6) & (centres[:, 0] > 0)
    )
    return {round(float(x), 2) for x in centres[on_axis & grid.occupied, 0]}


def test_an_sdf_surface_that_moved_frees_the_cells_it_left():
    """The SDF band test replaces old verdicts: once the surface has shrunk from radius 0.7 to 0.3, the
    cells of the old shell cost no samples (a density's moving maximum would keep them for ~250 updates)."""
    small = HashGridConfig(n_levels=4, log2_hashmap_size=12, max_resolution=64, implementation="torch")

    def sphere(radius: float) -> NeRFField:
        cfg = FieldConfig(grid=small, geometry="sdf", sdf=SDFConfig(init_radius=radius, init_inv_s=500.0))
        return NeRFField(cfg, generator=torch.Generator().manual_seed(0))

    big, shrunk = sphere(0.7), sphere(0.3)
    cfg = RenderConfig(num_samples=128, occupancy=OccupancyGridConfig(resolution=32, warmup_steps=64))
    grid = make_occupancy_grid(big, cfg, "cpu")
    gen = torch.Generator().manual_seed(2)
    update_occupancy(grid, big, 0, gen)
    # cells of 0.0625, centres 0.031 + 0.0625 k; the band is 1.5 * sqrt(3) / 2 * 0.0625 + 6 / 500 = 0.093
    assert _occupied_radii(grid) == {0.66, 0.72, 0.78}
    update_occupancy(grid, shrunk, 16, gen)  # before warmup_steps: every cell is measured
    assert _occupied_radii(grid) == {0.22, 0.28, 0.34}
    # the same two measurements kept as a moving maximum leave the old shell occupied
    grid.update(big.occupancy_fn(grid.cell_size), 0, gen)
    grid.update(shrunk.occupancy_fn(grid.cell_size), 16, gen)
    assert _occupied_radii(grid) == {0.22, 0.28, 0.34, 0.66, 0.72, 0.78}


def test_the_sdf_band_test_keeps_every_cell_a_steep_sdf_crosses():
    """An SDF trained by score distillation is often steeper than a distance: its value at a cell's
    centre can exceed the unit-slope band although its zero level set crosses the cell. Every cell that
    holds a point of the surface must stay occupied (else rays skip that part of the surface)."""
    small = HashGridConfig(n_levels=4, log2_hashmap_size=12, max_resolution=64, implementation="torch")
    cfg_f = FieldConfig(grid=small, geometry="sdf", sdf=SDFConfig(init_radius=0.5, init_inv_s=500.0))
    cfg = RenderConfig(num_samples=128, occupancy=OccupancyGridConfig(resolution=32, warmup_steps=64))
    surface = torch.nn.functional.normalize(
        torch.randn(4000, 3, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    for slope in (1.0, 4.0):
        field = NeRFField(cfg_f, generator=torch.Generator().manual_seed(0))
        field.sdf = lambda x, k=slope: k * (x.norm(dim=-1) - 0.5)  # a sphere of radius 0.5, slope k
        grid = make_occupancy_grid(field, cfg, "cpu")
        update_occupancy(grid, field, 0, torch.Generator().manual_seed(2))
        g = grid.cfg.resolution
        ijk = ((0.5 * surface + 1.0) / 2.0 * g).floor().long().clamp(0, g - 1)  # cells of [-1, 1]^3
        cells = ijk[:, 0] + g * ijk[:, 1] + g * g * ijk[:, 2]
        assert bool(grid.occupied[cells].all()), slope
        # and the interior and the outside stay free: only a shell around the surface is occupied
        assert 0.05 < float(grid.occupied.float().mean()) < 0.25, slope


def _sphere_cells(grid, radius: float) -> torch.Tensor:
    """Indices of the grid cells (of [-1, 1]^3) that the sphere of ``radius`` passes through."""
    pts = torch.nn.functional.normalize(
        torch.randn(20000, 3, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    g = grid.cfg.resolution
    ijk = ((radius * pts + 1.0) / 2.0 * g).floor().long().clamp(0, g - 1)
    return torch.unique(ijk[:, 0] + g * ijk[:, 1] + g * g * ijk[:, 2])


def test_an_sdf_surface_moving_into_free_cells_after_the_warmup_is_never_lost():
    """After the warm-up an update measures a random quarter of the cells; a free cell next to an occupied
    one is measured every time, so a surface that moved by up to a cell is occupied wherever it is (a
    free cell it crosses would be a hole in every render through it)."""
    small = HashGridConfig(n_levels=4, log2_hashmap_size=12, max_resolution=64, implementation="torch")
    cfg_f = FieldConfig(grid=small, geometry="sdf", sdf=SDFConfig(init_radius=0.5, init_inv_s=500.0))
    cfg = RenderConfig(num_samples=128, occupancy=OccupancyGridConfig(resolution=32, warmup_steps=64))
    field = NeRFField(cfg_f, generator=torch.Generator().manual_seed(0))
    radius = {"r": 0.5}
    field.sdf = lambda x: x.norm(dim=-1) - radius["r"]
    grid = make_occupancy_grid(field, cfg, "cpu")
    gen = torch.Generator().manual_seed(2)
    update_occupancy(grid, field, 0, gen)
    assert bool(grid.occupied[_sphere_cells(grid, 0.5)].all())
    radius["r"] = 0.5 + grid.cell_size  # the surface moves out by one cell
    update_occupancy(grid, field, 1000, gen)  # after the warm-up: a quarter of the cells plus the frontier
    assert bool(grid.occupied[_sphere_cells(grid, radius["r"])].all())
    # the frontier is a thin layer around the occupied cells, not the whole free space
    frontier = grid.frontier()
    assert 0 < int(frontier.sum()) < int((~grid.occupied).sum())


def test_a_finished_sdf_field_is_rendered_with_every_cell_measured_afresh():
    """Export renders use a grid measured on the final field, not training's partly stale one; a density
    field keeps its grid (its moving maximum only errs towards occupied)."""
    small = HashGridConfig(n_levels=4, log2_hashmap_size=12, max_resolution=64, implementation="torch")
    cfg_f = FieldConfig(grid=small, geometry="sdf", sdf=SDFConfig(init_radius=0.5, init_inv_s=500.0))
    cfg = RenderConfig(num_samples=128, occupancy=OccupancyGridConfig(resolution=32, warmup_steps=64))
    field = NeRFField(cfg_f, generator=torch.Generator().manual_seed(0))
    field.sdf = lambda x: x.norm(dim=-1) - 0.3
    stale = make_occupancy_grid(field, cfg, "cpu")
    stale.occupied = torch.zeros_like(stale.occupied)  # training never saw the surface here
    stale.num_updates = 5
    fresh = measured_occupancy(field, stale)
    assert fresh is not stale and not bool(stale.occupied.any())
    assert bool(fresh.occupied[_sphere_cells(fresh, 0.3)].all())
    assert 0.01 < float(fresh.occupied.float().mean()) < 0.2
    density = NeRFField(FieldConfig(grid=small), generator=torch.Generator().manual_seed(0))
    assert measured_occupancy(density, stale) is stale
    assert measured_occupancy(field, None) is None


def test_a_shaded_render_of_rays_that_all_miss_is_the_background():
    """A lit (SH-shaded) render needs normals; a chunk of rays that all miss the object keeps no sample
    and must still render (whole-image evaluation of an albedo photo run hits such chunks)."""
    small = HashGridConfig(n_levels=4, log2_hashmap_size=12, max_resolution=64, implementation="torch")
    cfg_f = FieldConfig(grid=small, geometry="sdf", sdf=SDFConfig(init_radius=0.3, init_inv_s=500.0))
    field = NeRFField(cfg_f, generator=torch.Generator().manual_seed(0))
    model = Appearance(AppearanceConfig(shading="sh"), 1, generator=torch.Generator().manual_seed(0))
    look = AppearanceRender(model, image_ids=torch.zeros(2, dtype=torch.long))
    bg = Background(ConstantBackground((0.2, 0.4, 0.6)))
    # one ray at the sphere's centre height, one above it
    origins = torch.tensor([[-2.0, 0.0, 0.0], [-2.0, 0.0, 0.8]])
    dirs = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    rays = Rays(origins, dirs, torch.zeros(2, dtype=torch.long))
    missing = Rays(origins[1:], dirs[1:], torch.zeros(1, dtype=torch.long))
    cfg = RenderConfig(num_samples=256, occupancy=OccupancyGridConfig(enabled=False))
    with torch.no_grad():
        both = render_rays(field, bg, rays, cfg, appearance=look)
        miss = render_rays(
            field, bg, missing, cfg, appearance=dataclasses.replace(look, image_ids=look.image_ids[1:])
        )
    assert both.opacity[0] > 0.99 and both.opacity[1] < 1e-4
    torch.testing.assert_close(miss.rgb, torch.tensor([[0.2, 0.4, 0.6]]))
    assert miss.normals is not None and miss.normals.abs().max() == 0


def _field_and_grid(coarse_factor: int):
    gen = torch.Generator().manual_seed(1)
    field = NeRFField(
        FieldConfig(grid=HashGridConfig(n_levels=4, log2_hashmap_size=12, max_resolution=64)), generator=gen
    )
    cfg = RenderConfig(
        num_samples=128, occupancy=OccupancyGridConfig(resolution=32, coarse_factor=coarse_factor)
    )
    grid = make_occupancy_grid(field, cfg, "cpu")
    # an occupancy pattern with a few scattered cells, so skipping matters
    occ = torch.zeros(32**3, dtype=torch.bool)
    occ[torch.randperm(32**3, generator=gen)[:300]] = True
    grid.occupied = occ
    grid._refresh_coarse()
    return field, cfg, grid


def test_coarse_blocks_never_drop_an_occupied_sample():
    views = orbit_cameras(2, 24, 2.0, 50.0, elevation_deg=20.0)
    rays = camera_rays(views.cameras)
    bg = Background(ConstantBackground((1.0, 1.0, 1.0)))
    field, cfg1, grid1 = _field_and_grid(1)
    _, cfg4, grid4 = _field_and_grid(4)
    torch.manual_seed(0)
    with torch.no_grad():
        a = render_rays(field, bg, rays, dataclasses.replace(cfg1, stratified=False), grid1)
        b = render_rays(field, bg, rays, dataclasses.replace(cfg4, stratified=False), grid4)
    assert a.num_samples_evaluated == b.num_samples_evaluated > 0
    torch.testing.assert_close(a.rgb, b.rgb)
    torch.testing.assert_close(a.opacity, b.opacity)
    # and skipping happened: far fewer samples than steps along the rays
    assert a.num_samples_evaluated < 0.2 * rays.origins.shape[0] * cfg1.num_samples


def test_distortion_loss_matches_the_double_sum_and_prefers_a_surface_to_fog():
    from t23d.render.volume import distortion_loss

    gen = torch.Generator().manual_seed(0)
    ray = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    t = torch.tensor([0.1, 0.2, 0.5, 0.3, 0.9, 0.1, 0.15, 0.2, 0.7])
    w = torch.rand(9, generator=gen) * 0.3
    dt = 0.05
    expected = []
    for r in range(3):
        m = ray == r
        wi, ti = w[m].double(), t[m].double()
        expected.append(
            float((wi[:, None] * wi[None] * (ti[:, None] - ti[None]).abs()).sum() + dt / 3 * (wi**2).sum())
        )
    got = distortion_loss(w, t, dt, ray, 3)
    assert float(got) == pytest.approx(sum(expected) / 3, rel=1e-5)
    # the same total weight in one interval vs spread along the ray
    ray1 = torch.zeros(10, dtype=torch.long)
    tt = torch.linspace(0.0, 1.0, 10)
    surface = torch.zeros(10)
    surface[5] = 0.9
    fog = torch.full((10,), 0.09)
    assert float(distortion_loss(surface, tt, 0.1, ray1, 1)) < 0.2 * float(
        distortion_loss(fog, tt, 0.1, ray1, 1)
    )
    # gradients flow to the weights
    wg = w.clone().requires_grad_(True)
    distortion_loss(wg, t, dt, ray, 3).backward()
    assert wg.grad is not None and torch.isfinite(wg.grad).all()


def _phi(s: torch.Tensor, inv_s: float) -> torch.Tensor:
    return torch.sigmoid(s * inv_s)


def test_neus_opacity_is_exact_at_a_plane_whatever_the_sharpness_and_step():
    """Head-on into a plane the transmittance at the zero level is Phi(0) / Phi(s_start) (NeuS's telescoping
    product), so a ray is half opaque exactly where the SDF crosses zero, for any inv_s and step."""
    from t23d.render.volume import _packed_transmittance, sdf_optical_depths

    for inv_s in (10.0, 100.0, 1000.0):
        for dt in (0.01, 0.004):
            n = int(round(0.6 / dt))
            t = (torch.arange(n, dtype=torch.float64) + 0.5) * dt  # sections [i dt, (i + 1) dt]
            s = 0.3 - t  # the plane at t = 0.3, a section boundary
            ray = torch.zeros(n, dtype=torch.long)
            tau = sdf_optical_depths(s, t, ray, dt, inv_s)
            trans = _packed_transmittance(tau, ray, 1)  # before each sample
            k = int(round(0.3 / dt))  # first section past the plane
            expected = float(_phi(torch.tensor(0.0), inv_s) / _phi(torch.tensor(0.3), inv_s))
            assert float(trans[k]) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_neus_opacity_of_a_grazing_ray_is_one_half():
    """A ray touching a sphere's zero level at its closest point reaches opacity 1/2 (unbiased
    silhouettes); one passing 3/inv_s outside stays nearly transparent."""
    from t23d.render.volume import sdf_optical_depths

    inv_s, dt, radius = 200.0, 0.002, 0.5
    t = (torch.arange(1000, dtype=torch.float64) + 0.5) * dt - 1.0  # along x from -1 to 1
    ray = torch.zeros(1000, dtype=torch.long)
    for offset, expected in ((0.0, 0.5), (3.0 / inv_s, 1 - float(_phi(torch.tensor(3.0), 1.0)))):
        s = torch.sqrt(t**2 + (radius + offset) ** 2) - radius
        tau = sdf_optical_depths(s, t, ray, dt, inv_s)
        opacity = 1 - float(torch.exp(-tau.sum()))
        assert opacity == pytest.approx(expected, abs=2e-3)


def test_neus_opacity_needs_a_neighbour_and_has_gradients():
    from t23d.render.volume import sdf_optical_depths

    t = torch.tensor([0.10, 0.11, 0.12, 0.50, 0.13])  # sample 3 is isolated; 4 starts another ray
    ray = torch.tensor([0, 0, 0, 0, 1])
    s = torch.tensor([0.01, 0.0, -0.01, -0.2, 0.0], requires_grad=True)
    tau = sdf_optical_depths(s, t, ray, 0.01, 100.0)
    assert float(tau[3]) == 0.0 and float(tau[4]) == 0.0  # no neighbour on its ray: no opacity
    assert float(tau[1]) > 0.0
    tau.sum().backward()
    assert s.grad is not None and float(s.grad[:3].abs().sum()) > 0
