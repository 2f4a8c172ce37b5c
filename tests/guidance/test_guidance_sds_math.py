"""The SDS maths shared by every prior: CFG, weighting, timestep ranges, the reparametrised loss."""

from __future__ import annotations

import pytest
import torch

from t23d.common.errors import ConfigError
from t23d.common.schedule import Constant, Linear
from t23d.guidance.base import (
    combine_cfg,
    eps_from_v,
    sample_timesteps,
    sds_loss,
    step_range,
    timestep_weight,
)


def test_combine_cfg_formula() -> None:
    g = torch.Generator().manual_seed(0)
    uncond, cond = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    for s in (0.0, 1.0, 7.5, 100.0):
        expected = uncond + s * (cond - uncond)
        torch.testing.assert_close(combine_cfg(uncond, cond, s), expected)
    torch.testing.assert_close(combine_cfg(uncond, cond, 1.0), cond)
    torch.testing.assert_close(combine_cfg(uncond, cond, 0.0), uncond)


def test_weightings() -> None:
    a = torch.tensor([0.0, 0.25, 0.81, 1.0])
    torch.testing.assert_close(timestep_weight(a, "sds"), 1.0 - a)
    torch.testing.assert_close(timestep_weight(a, "uniform"), torch.ones(4))
    torch.testing.assert_close(
        timestep_weight(a, "fantasia3d"), torch.tensor([0.0, 0.5 * 0.75, 0.9 * 0.19, 0.0])
    )
    with pytest.raises(ConfigError, match="accepted: 'sds', 'uniform', 'fantasia3d'"):
        timestep_weight(a, "dreamfusion")


def test_step_range_anneals() -> None:
    lo, hi = Constant(0.02), Linear(start=0.98, end=0.5, start_step=0, end_step=100)
    assert step_range(lo, hi, 0, 1000) == (20, 980)
    assert step_range(lo, hi, 50, 1000) == (20, 740)
    assert step_range(lo, hi, 100, 1000) == (20, 500)
    assert step_range(lo, hi, 10_000, 1000) == (20, 500)
    assert step_range(Constant(1.0), Constant(1.0), 0, 1000) == (999, 999)


@pytest.mark.parametrize(("lo", "hi"), [(0.5, 0.4), (-0.1, 0.5), (0.1, 1.5)])
def test_step_range_rejects_bad_percents(lo: float, hi: float) -> None:
    with pytest.raises(ConfigError, match="0 <= min_step_percent <= max_step_percent <= 1"):
        step_range(Constant(lo), Constant(hi), 0, 1000)


def test_sample_timesteps_cover_the_inclusive_range() -> None:
    t = sample_timesteps(20_000, 20, 30, torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and t.min().item() == 20 and t.max().item() == 30
    assert set(t.tolist()) == set(range(20, 31))


def test_sds_loss_gradient_is_grad_over_batch() -> None:
    z = torch.randn(3, 4, 5, 5, requires_grad=True)
    grad = torch.randn(3, 4, 5, 5)
    loss = sds_loss(z, grad)
    loss.backward()
    torch.testing.assert_close(z.grad, grad / 3)
    torch.testing.assert_close(loss, 0.5 * (grad**2).sum() / 3)


def test_eps_from_v_recovers_noise() -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    a = torch.tensor([0.3, 0.9]).view(2, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(eps_from_v(v, x_t, a), eps)


def test_shrinking_renders_for_the_prior_passes_every_pixels_gradient():
    """A 128 px render fed to a 32 px prior (the refine stage): every pixel gets gradient, means are kept."""
    import torch

    from t23d.guidance.sds import resize_images

    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = resize_images(x, 32)
    assert y.shape == (2, 3, 32, 32)
    y.sum().backward()
    assert (x.grad > 0).all()
    assert torch.allclose(y.mean((2, 3)), x.mean((2, 3)), atol=1e-3)
    assert resize_images(x, 128) is x
