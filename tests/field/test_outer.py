"""The outer field for unmasked photos: contraction, sampling beyond the box, parallax, gradients."""

from __future__ import annotations

import pytest
import torch

from t23d.field.background import Background, ContractedBackground
from t23d.field.outer import OuterField, contract

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def test_contraction_keeps_the_unit_ball_and_maps_everything_else_inside_radius_two():
    inside = torch.tensor([[0.3, -0.2, 0.5], [0.0, 0.0, 1.0]])
    assert torch.equal(contract(inside), inside)
    far = torch.tensor([[2.0, 0.0, 0.0], [0.0, -10.0, 0.0], [1e6, 1e6, 0.0]])
    c = contract(far)
    r = c.norm(dim=-1)
    assert torch.allclose(r, torch.tensor([1.5, 1.9, 2.0]), atol=1e-5)  # 2 - 1/|x|
    assert torch.allclose(c / r[:, None], far / far.norm(dim=-1, keepdim=True))  # direction kept


def test_samples_start_where_rays_leave_the_box_and_grow_towards_far():
    outer = OuterField(AABB, num_samples=16, far=100.0)
    o = torch.tensor([[0.0, 0.0, 5.0], [3.0, 3.0, 5.0]])  # the second ray misses the box
    d = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]]), dim=-1)
    t = outer.sample_distances(o, d, generator=None)
    assert t.shape == (2, 17)
    assert t[0, 0] == pytest.approx(6.0)  # exits the box at z = -1
    assert t[1, 0] == pytest.approx(5.0)  # closest approach to the centre
    assert torch.all(t[:, 1:] > t[:, :-1])
    assert t[0, -1] == pytest.approx(100.0 * 3**0.5, rel=1e-5)  # far radii of the sphere around the box
    jittered = outer.sample_distances(o, d, generator=torch.Generator().manual_seed(0))
    assert torch.all(jittered[:, 1:] >= jittered[:, :-1]) and not torch.equal(jittered, t)
    assert torch.equal(jittered[:, [0, -1]], t[:, [0, -1]])


def test_contracted_background_depends_on_the_ray_origin_and_trains():
    gen = torch.Generator().manual_seed(0)
    bg = Background(ContractedBackground(num_samples=8), generator=gen, aabb=AABB)
    d = torch.nn.functional.normalize(torch.randn(64, 3, generator=gen), dim=-1)
    o1, o2 = -3.0 * d, -3.0 * d + torch.tensor([0.5, 0.0, 0.0])
    c1, c2 = bg(d, origins=o1), bg(d, origins=o2)
    assert c1.shape == (64, 3) and torch.all((c1 >= 0) & (c1 <= 1))
    assert not torch.allclose(c1, c2)  # same directions, other origins: parallax (not a map at infinity)
    c1.sum().backward()
    grads = [p.grad for p in bg.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    with pytest.raises(ValueError, match="origins"):
        bg(d)
    with pytest.raises(ValueError, match="aabb"):
        Background(ContractedBackground())


def test_optimizer_gives_the_outer_hash_grid_the_grid_learning_rate():
    from t23d.field.nerf import FieldConfig, NeRFField
    from t23d.run.state import make_optimizer

    field_ = NeRFField(FieldConfig())
    bg = Background(ContractedBackground(num_samples=8), aabb=field_.aabb())
    opt = make_optimizer(field_, bg, 1e-2, 1e-3, 1e-4, (0.9, 0.99), 1e-15)
    lr = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lr["background_grid"] == 1e-2 and lr["background"] == 1e-4
    grid_ids = {id(p) for g in opt.param_groups if g["name"] == "background_grid" for p in g["params"]}
    assert grid_ids == {id(p) for p in bg.outer.encoding.parameters()}
