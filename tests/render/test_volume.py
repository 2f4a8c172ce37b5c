"""Volume rendering: packed compositing and two-level empty-space skipping against naive references."""

from __future__ import annotations

import dataclasses

import torch

from t23d.field.background import Background, ConstantBackground
from t23d.field.hashgrid import HashGridConfig
from t23d.field.nerf import FieldConfig, NeRFField
from t23d.render.cameras import orbit_cameras
from t23d.render.occupancy import OccupancyGridConfig
from t23d.render.rays import camera_rays
from t23d.render.volume import RenderConfig, _packed_weights, make_occupancy_grid, render_rays


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
