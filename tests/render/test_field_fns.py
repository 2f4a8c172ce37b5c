"""Field renders for the export stage: anti-aliased like the mesh renders they are compared with."""

from __future__ import annotations

import math

import torch

from t23d.field.hashgrid import HashGridConfig
from t23d.field.nerf import FieldConfig, NeRFField, SDFConfig
from t23d.render.cameras import look_at
from t23d.render.field_fns import edge_pixels, render_field_fn_of
from t23d.render.volume import RenderConfig

RADIUS = 0.5


def sharp_sphere() -> NeRFField:
    """An SDF field that is exactly the sphere of radius 0.5 (its learnt correction zeroed), far sharper
    than a pixel: one ray per pixel renders its silhouette aliased."""
    small = HashGridConfig(n_levels=4, log2_hashmap_size=12, max_resolution=64, implementation="torch")
    sdf = SDFConfig(init_radius=RADIUS, init_inv_s=2000.0, max_inv_s=2000.0)
    field = NeRFField(
        FieldConfig(grid=small, geometry="sdf", sdf=sdf), generator=torch.Generator().manual_seed(0)
    )
    geometry = field._geometry

    def exact(x):
        raw, feats, inside = geometry(x)
        return torch.zeros_like(raw), feats, inside

    field._geometry = exact
    return field


def camera(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A camera 2 units from the sphere's centre, 40 degrees field of view, slightly off-axis."""
    c2w = look_at(torch.tensor([[0.3, -1.9, 0.5]]), torch.zeros(1, 3))[0]
    f = 0.5 * size / math.tan(math.radians(20.0))
    return c2w, torch.tensor([f, f, 0.5 * size, 0.5 * size])


def true_coverage(c2w: torch.Tensor, intrinsics: torch.Tensor, size: int, k: int = 8) -> torch.Tensor:
    """[size, size] fraction of each pixel the sphere covers, from k x k rays per pixel (analytic hits)."""
    fx, fy, cx, cy = intrinsics.double().tolist()
    sub = (torch.arange(size * k, dtype=torch.float64) + 0.5) / k
    v, u = torch.meshgrid(sub, sub, indexing="ij")
    d = torch.stack([(u - cx) / fx, -(v - cy) / fy, -torch.ones_like(u)], -1) @ c2w[:3, :3].double().T
    d = torch.nn.functional.normalize(d, dim=-1)
    o = c2w[:3, 3].double()
    b = (d * o).sum(-1)
    hit = (b * b - (o.dot(o) - RADIUS**2)) > 0
    return hit.double().reshape(size, k, size, k).mean((1, 3))


def test_edge_pixels_mark_silhouettes_and_colour_edges_and_nothing_flat():
    opacity = torch.zeros(16, 16)
    opacity[4:12, 4:12] = 1.0
    rgb = torch.zeros(16, 16, 3)
    rgb[4:12, 4:8] = torch.tensor([1.0, 0.0, 0.0])  # a red half and a blue half: a colour edge at column 8
    rgb[4:12, 8:12] = torch.tensor([0.0, 0.0, 1.0])
    edges = edge_pixels(rgb, opacity)
    assert edges[4, 4] and edges[3, 3] and edges[7, 11] and edges[7, 12]  # both sides of the silhouette
    assert edges[6, 7] and edges[6, 8]  # both sides of the colour edge
    assert not edges[0, 0] and not edges[6, 5] and not edges[6, 10]  # background, flat red, flat blue
    assert int(edges.sum()) < 16 * 16 // 2


def test_adaptive_supersampling_equals_full_supersampling_and_removes_aliasing():
    field = sharp_sphere()
    cfg = RenderConfig(num_samples=256, occupancy=None)
    size, s = 32, 2
    c2w, intr = camera(size)
    rgb1, opa1 = render_field_fn_of(field, cfg, None)(c2w, intr, size, size)
    rgb2, opa2 = render_field_fn_of(field, cfg, None, supersample=s)(c2w, intr, size, size)
    # the reference: every pixel rendered with s x s rays on the mesh renderer's grid, averaged
    fine_rgb, fine_opa = render_field_fn_of(field, cfg, None)(c2w, intr * s, size * s, size * s)
    full_rgb = fine_rgb.reshape(size, s, size, s, 3).mean((1, 3))
    full_opa = fine_opa.reshape(size, s, size, s).mean((1, 3))
    assert torch.allclose(opa2, full_opa, atol=1e-3) and torch.allclose(rgb2, full_rgb, atol=1e-3)
    # only the rim was rendered again: the interior and the background are the centre-ray values
    rim = (opa1 - opa2).abs() > 1e-6
    assert 0 < int(rim.sum()) < 0.2 * size * size
    assert torch.equal(rgb2[~edge_pixels(rgb1, opa1)], rgb1[~edge_pixels(rgb1, opa1)])
    # the one-ray silhouette is aliased (0/1 pixels); the anti-aliased one is nearer the true coverage
    truth = true_coverage(c2w, intr, size)
    err1, err2 = (opa1.double() - truth).abs().sum(), (opa2.double() - truth).abs().sum()
    assert float(((opa1 > 0.05) & (opa1 < 0.95)).sum()) < float(((opa2 > 0.05) & (opa2 < 0.95)).sum())
    assert float(err2) < 0.7 * float(err1), (float(err1), float(err2))


def test_supersample_must_be_a_positive_integer():
    import pytest

    with pytest.raises(ValueError, match="supersample"):
        render_field_fn_of(sharp_sphere(), RenderConfig(occupancy=None), None, supersample=0)


def test_a_region_leaves_out_what_the_asset_was_cut_from():
    """Fidelity of a cut asset: pixels whose ray ends below the cut (here the sphere's lower half, as a
    table under an object would be) render empty, the rest as without the region."""
    field = sharp_sphere()
    cfg = RenderConfig(num_samples=256, occupancy=None)
    size = 32
    c2w, intr = camera(size)
    rgb, opa = render_field_fn_of(field, cfg, None)(c2w, intr, size, size)
    rgb_cut, opa_cut = render_field_fn_of(field, cfg, None, region=lambda p: p[:, 2] > 0.0)(
        c2w, intr, size, size
    )
    # where each pixel centre's ray first meets the sphere (analytic)
    fx, fy, cx, cy = intr.double().tolist()
    v, u = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    d = (
        torch.stack([(u - cx) / fx, -(v - cy) / fy, -torch.ones_like(u)], -1).double()
        @ c2w[:3, :3].double().T
    )
    d = torch.nn.functional.normalize(d, dim=-1)
    o = c2w[:3, 3].double()
    b = (d * o).sum(-1)
    disc = b * b - (o.dot(o) - RADIUS**2)
    t = -b - disc.clamp(min=0).sqrt()
    z = o[2] + t * d[..., 2]
    solid = (disc > 0.01) & (opa > 0.99)
    upper, lower = solid & (z > 0.05), solid & (z < -0.05)
    assert upper.sum() > 50 and lower.sum() > 50
    assert torch.equal(opa_cut[upper], opa[upper]) and torch.equal(rgb_cut[upper], rgb[upper])
    assert (opa_cut[lower] == 0).all() and (rgb_cut[lower] == 0).all()
    assert torch.equal(opa_cut[opa == 0], opa[opa == 0])  # nothing appears


def test_the_export_functions_leave_out_a_ground_plane():
    """A field's ground plane (the table of a photo run) is surroundings: the SDF the asset is extracted
    from and the normals baked into it are the learnt ones alone; the field still renders the plane."""
    from t23d.render.field_fns import density_fn_of, normal_fn_of, sdf_fn_of

    small = HashGridConfig(n_levels=4, log2_hashmap_size=12, max_resolution=64, implementation="torch")
    cfg = FieldConfig(
        grid=small,
        geometry="sdf",
        sdf=SDFConfig(init_radius=RADIUS, init_inv_s=200.0),
        ground_plane=[0, 0, 1, -0.4],
    )
    field = NeRFField(cfg, generator=torch.Generator().manual_seed(0))
    beside = torch.tensor([[0.8, 0.0, -0.41], [0.8, 0.0, -0.3]])  # just under and over the plane
    with torch.no_grad():
        assert torch.allclose(sdf_fn_of(field)(beside), field.sdf(beside, ground=False))
        assert float(sdf_fn_of(field)(beside).min()) > 0.2  # no table in the asset's SDF
    assert float(density_fn_of(field)(beside)[0]) > 10 * float(density_fn_of(field)(beside)[1])  # rendered
    n = normal_fn_of(field, eps=0.01)(beside.numpy().astype("float64"), beside.numpy() / 0.9)
    assert n[0] @ [0, 0, 1] < 0.5  # the sphere's normal there, not the plane's (0, 0, 1)
