"""Signed-distance geometry: the logistic density, finite-difference derivatives, the regularisers."""

from __future__ import annotations

import math

import pytest
import torch

from t23d.common.errors import ConfigError
from t23d.field.hashgrid import HashGridConfig
from t23d.field.nerf import FieldConfig, NeRFField, SDFConfig
from t23d.field.sdf import (
    SDFTrainingConfig,
    curvature_loss,
    eikonal_loss,
    sdf_derivatives,
    sdf_regulariser_losses,
)
from t23d.run.state import make_optimizer

SMALL_GRID = HashGridConfig(n_levels=6, log2_hashmap_size=12, max_resolution=64, implementation="torch")


def sdf_field(**sdf) -> NeRFField:
    cfg = FieldConfig(grid=SMALL_GRID, geometry="sdf", sdf=SDFConfig(**sdf), hidden_dim=32)
    return NeRFField(cfg, generator=torch.Generator().manual_seed(0))


def test_sdf_field_starts_as_the_init_sphere():
    f = sdf_field(init_radius=0.4)
    x = torch.nn.functional.normalize(torch.randn(256, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    for r in (0.2, 0.4, 0.7):
        s = f.sdf(r * x)
        assert torch.allclose(s, torch.full_like(s, r - 0.4), atol=2e-3)


def test_logistic_density_gives_optical_depth_ln2_at_the_zero_level():
    """Along a ray entering the surface head-on, NeuS's density accumulates ln 2 up to s = 0 (renders
    terminate on the extracted surface), whatever the sharpness."""
    for inv_s in (20.0, 200.0):
        f = sdf_field(init_radius=0.5, init_inv_s=inv_s, max_inv_s=inv_s)
        t = torch.linspace(0.95, 0.5, 20001)  # radius from outside the sphere down to its surface
        pts = torch.stack([t, torch.zeros_like(t), torch.zeros_like(t)], -1)
        with torch.no_grad():
            sigma = f.density(pts)
        depth = torch.trapezoid(sigma, -t)  # integral along the inward ray
        assert float(depth) == pytest.approx(math.log(2.0), rel=0.01)


def test_sharpness_is_learnt_and_capped():
    f = sdf_field(init_inv_s=20.0, max_inv_s=50.0)
    assert float(f.inv_s.detach()) == pytest.approx(20.0)
    with torch.no_grad():
        f.log_inv_s.fill_(math.log(1e4))
    assert float(f.inv_s.detach()) == pytest.approx(50.0)
    opt = make_optimizer(f, torch.nn.Identity(), 1e-2, 1e-2, 1e-3, (0.9, 0.99), 1e-15)
    assert any(g["name"] == "sharpness" and g["params"][0] is f.log_inv_s for g in opt.param_groups)


def test_bad_sdf_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="init_inv_s"):
        sdf_field(init_inv_s=100.0, max_inv_s=10.0)
    with pytest.raises(ConfigError, match="field.geometry"):
        NeRFField(FieldConfig(grid=SMALL_GRID, geometry="voxels"))  # type: ignore[arg-type]


def test_finite_differences_match_the_analytic_sphere():
    """s = |x| - r: gradient x/|x|, Laplacian 2/|x| (mean curvature x 2 of the level sets)."""
    gen = torch.Generator().manual_seed(2)
    pts = torch.nn.functional.normalize(torch.randn(64, 3, generator=gen), dim=-1) * 0.5
    d = sdf_derivatives(lambda p: p.norm(dim=-1) - 0.3, pts.double(), 1e-3)
    assert torch.allclose(d.value, torch.full((64,), 0.2, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(d.gradient, pts.double() / 0.5, atol=1e-5)
    assert torch.allclose(d.laplacian, torch.full((64,), 2 / 0.5, dtype=torch.float64), atol=1e-3)
    assert float(eikonal_loss(d.gradient)) < 1e-9
    assert float(curvature_loss(d.laplacian)) == pytest.approx(4.0, rel=1e-3)
    # a non-distance (scaled) function violates the eikonal equation
    d2 = sdf_derivatives(lambda p: 3.0 * (p.norm(dim=-1) - 0.3), pts.double(), 1e-3)
    assert float(eikonal_loss(d2.gradient)) == pytest.approx(4.0, rel=1e-4)


def test_eikonal_training_makes_a_distorted_field_a_distance():
    """Start from a field whose SDF is scaled by 2.5 near its surface; the eikonal loss alone restores
    |grad s| = 1 while the zero level stays where it is."""
    f = sdf_field(init_radius=0.5)
    gen = torch.Generator().manual_seed(3)
    opt = torch.optim.Adam(list(f.encoding.parameters()) + list(f.density_mlp.parameters()), lr=5e-3)

    def sample(n: int) -> torch.Tensor:
        return (torch.rand(n, 3, generator=gen) * 2 - 1) * 0.9

    # first fit s = 2.5 (|x| - 0.5) (not a distance), then switch to eikonal + zero-level anchoring
    for _ in range(150):
        p = sample(1024)
        loss = ((f.sdf(p) - 2.5 * (p.norm(dim=-1) - 0.5)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    before = eikonal_loss(sdf_derivatives(f.sdf, sample(512), 0.01).gradient)
    assert float(before) > 0.5
    surf = torch.nn.functional.normalize(torch.randn(256, 3, generator=gen), dim=-1) * 0.5
    for _ in range(200):
        d = sdf_derivatives(f.sdf, sample(512), 0.01)
        loss = eikonal_loss(d.gradient) + 10 * (f.sdf(surf) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eikonal_loss(sdf_derivatives(f.sdf, sample(512), 0.01).gradient)
    assert float(after) < 0.1 * float(before)
    assert float(f.sdf(surf).abs().max()) < 0.03


def test_regulariser_losses_follow_their_schedules_and_skip_density_fields():
    f = sdf_field()
    cfg = SDFTrainingConfig(num_surface_points=64, num_uniform_points=32)
    pts = torch.rand(100, 3) - 0.5
    losses = sdf_regulariser_losses(f, pts, cfg, 0, torch.Generator().manual_seed(0))
    assert set(losses) == {"eikonal", "curvature"}
    assert all(v.requires_grad and torch.isfinite(v) for v in losses.values())
    from t23d.common.schedule import Constant

    off = SDFTrainingConfig(eikonal=Constant(0.0), curvature=Constant(0.0))
    assert sdf_regulariser_losses(f, pts, off, 0, torch.Generator()) == {}
    dens = NeRFField(FieldConfig(grid=SMALL_GRID))
    assert sdf_regulariser_losses(dens, pts, cfg, 0, torch.Generator()) == {}


def test_shell_occupancy_marks_cells_near_the_surface_only():
    f = sdf_field(init_radius=0.5, init_inv_s=500.0, max_inv_s=500.0)
    occ = f.occupancy_fn(cell_size=0.05)  # cells [-1, -0.95], ..., centres at -0.975 + 0.05 k
    r = torch.tensor([0.0, 0.31, 0.43, 0.51, 0.57, 0.68, 0.9])  # cell centres 0.025, 0.325, ..., 0.675
    pts = torch.stack([r, torch.zeros_like(r), torch.zeros_like(r)], -1)
    with torch.no_grad():
        marked = occ(pts) > 0
    # band = 1.5 * sqrt(3) / 2 * 0.05 + 6 / 500 = 0.077 around |x| = 0.5, measured at the cell centre
    assert marked.tolist() == [False, False, True, True, True, False, False]
    # every point of a cell gets the same answer (the grid's random point per cell does not matter)
    a = torch.tensor([[0.4251, 0.0, 0.0], [0.4749, 0.0, 0.0]])
    with torch.no_grad():
        assert occ(a)[0] == occ(a)[1]


def test_the_curvature_anneal_falls_to_zero_mid_run_and_follows_a_steps_override():
    from t23d.common.schedule import Constant, Linear
    from t23d.field.sdf import rescale_sdf_training, sdf_training_for

    assert sdf_training_for(2400).curvature == Constant(1e-4)  # off unless asked (generate keeps it)
    cfg = sdf_training_for(2400, anneal_curvature=True)
    assert isinstance(cfg.curvature, Linear)
    assert cfg.curvature.at(0) == cfg.curvature.at(240) == 1e-4  # shapes the surface for a tenth of the run
    assert cfg.curvature.at(520) == pytest.approx(5e-5) and cfg.curvature.at(800) == 0.0
    assert cfg.curvature.at(2400) == 0.0
    short = rescale_sdf_training(cfg, 2400, 600)  # --steps 600
    assert short.curvature.at(60) == 1e-4 and short.curvature.at(200) == 0.0


def grounded_field(height: float = -0.3) -> NeRFField:
    """The init sphere of radius 0.5 on a ground plane ``z = height`` (tilted fields use other normals)."""
    cfg = FieldConfig(
        grid=SMALL_GRID, geometry="sdf", sdf=SDFConfig(init_radius=0.5), hidden_dim=32,
        ground_plane=[0.0, 0.0, 1.0, height],
    )  # fmt: skip
    return NeRFField(cfg, generator=torch.Generator().manual_seed(0))


def test_a_ground_plane_is_a_union_with_the_learnt_sdf():
    """With ``ground_plane`` the field's SDF is min(learnt, height above the plane): a ray straight down
    beside the sphere ends on the plane, one through the sphere on the sphere; ``ground=False`` is the
    learnt SDF alone (what the asset is made of)."""
    f, bare = grounded_field(-0.3), sdf_field(init_radius=0.5)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(512, 3, generator=g) * 2 - 1
    with torch.no_grad():
        learnt = f.sdf(x, ground=False)
        assert torch.allclose(learnt, bare.sdf(x), atol=1e-6)  # same init, same weights
        assert torch.allclose(f.sdf(x), torch.minimum(learnt, x[:, 2] + 0.3), atol=1e-6)
        # the density along a vertical line at x = 0.8 (beside the sphere) turns on at the plane
        z = torch.linspace(0.9, -0.9, 1801)
        line = torch.stack([torch.full_like(z, 0.8), torch.zeros_like(z), z], -1)
        sigma = f.density(line)
        opaque_at = float(z[int(torch.nonzero(torch.cumsum(sigma, 0) * 1e-3 > math.log(2.0))[0])])
        assert opaque_at == pytest.approx(-0.3, abs=0.01)
        assert float(bare.density(line).max()) < 1.0  # the sphere alone is far from that line
        # its normals: the plane's beside the sphere; without the ground, the sphere's
        p = torch.tensor([[0.8, 0.0, -0.3]])
        assert torch.allclose(f.normals(p), torch.tensor([[0.0, 0.0, 1.0]]), atol=1e-4)
        assert torch.allclose(f.normals(p, ground=False), torch.nn.functional.normalize(p, dim=-1), atol=0.01)


def test_the_regularisers_see_the_learnt_sdf_without_its_ground_plane():
    """The plane is exact; the eikonal and curvature losses are those of the learnt SDF, so the crease
    where an object meets its ground (a kink of the union) is not smoothed into a fillet, and render
    samples on the plane away from the object (where the learnt SDF is far from its surface) are left out
    of the curvature loss, which would flatten the object's underside towards the table."""
    f, bare = grounded_field(-0.3), sdf_field(init_radius=0.5)
    cfg = SDFTrainingConfig(num_surface_points=256, num_uniform_points=64)
    a = torch.linspace(0, 6, 64)
    on_sphere = 0.5 * torch.stack([a.cos() * 0.6, a.sin() * 0.6, torch.full_like(a, 0.8)], -1)  # z = 0.4
    on_plane = torch.stack([0.9 * a.cos(), 0.9 * a.sin(), torch.full_like(a, -0.3)], -1)  # far from it
    g = torch.Generator().manual_seed(3)
    grounded = sdf_regulariser_losses(f, torch.cat([on_sphere, on_plane]), cfg, 0, g)
    # the same draws of surface points (indices into the 128 points): only those on the sphere count
    pick = torch.randint(128, (cfg.num_surface_points,), generator=torch.Generator().manual_seed(3))
    kept = torch.cat([on_sphere, on_plane])[pick][pick < 64]
    lap = sdf_derivatives(lambda p: bare.sdf(p), kept, cfg.eps.at(0)).laplacian
    assert float(grounded["curvature"]) == pytest.approx(
        cfg.curvature.at(0) * float(lap.abs().mean()), rel=1e-4
    )
    every = sdf_derivatives(lambda p: bare.sdf(p), torch.cat([on_sphere, on_plane])[pick], cfg.eps.at(0))
    assert (
        abs(float(grounded["curvature"]) / (cfg.curvature.at(0) * float(every.laplacian.abs().mean())) - 1)
        > 0.1
    )
    # the union's own curvature at the crease (sphere radius 0.5 meets z = -0.3 at |xy| = 0.4) is far
    # larger than the learnt SDF's: that is what the losses must not see
    ring = torch.stack([0.4 * a.cos(), 0.4 * a.sin(), torch.full_like(a, -0.3)], -1)
    union = sdf_derivatives(f.sdf, ring, 0.02).laplacian.abs().mean()
    assert float(union) > 3 * float(sdf_derivatives(bare.sdf, ring, 0.02).laplacian.abs().mean())
    # eikonal: of the learnt SDF at every point (a distance either way)
    assert float(grounded["eikonal"]) == pytest.approx(
        float(sdf_regulariser_losses(bare, torch.cat([on_sphere, on_plane]), cfg, 0,
                                     torch.Generator().manual_seed(3))["eikonal"]), rel=1e-5)  # fmt: skip


def test_a_bad_ground_plane_is_refused_by_name():
    with pytest.raises(ConfigError, match="ground_plane.*unit normal"):
        NeRFField(FieldConfig(grid=SMALL_GRID, geometry="sdf", ground_plane=[0.0, 0.0, 2.0, 0.1]))
    with pytest.raises(ConfigError, match="ground_plane.*unit normal"):
        NeRFField(FieldConfig(grid=SMALL_GRID, geometry="sdf", ground_plane=[0.0, 1.0, 0.1]))
    with pytest.raises(ConfigError, match="ground_plane needs geometry 'sdf'"):
        NeRFField(FieldConfig(grid=SMALL_GRID, ground_plane=[0.0, 0.0, 1.0, 0.1]))
