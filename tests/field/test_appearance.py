"""The appearance model: colour conversions, SH irradiance, per-photo codes, what reaches a render."""

from __future__ import annotations

import math

import pytest
import torch

from t23d.common.errors import ConfigError
from t23d.field.appearance import (
    Appearance,
    AppearanceConfig,
    AppearanceRender,
    linear_to_srgb,
    srgb_to_linear,
)


def unit(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)


def test_srgb_conversions_invert_each_other_and_match_known_values():
    x = torch.linspace(0, 1, 101)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)
    # mid-grey: sRGB 0.5 is 21.4 % linear; linear 0.18 (photographic grey) is sRGB 0.461
    assert srgb_to_linear(torch.tensor(0.5)).item() == pytest.approx(0.2140, abs=1e-4)
    assert linear_to_srgb(torch.tensor(0.18)).item() == pytest.approx(0.4614, abs=1e-3)


def test_environment_starts_white_and_uniform():
    app = Appearance(AppearanceConfig(shading="sh"), num_images=3)
    e = app.irradiance(unit(100))
    assert torch.allclose(e, torch.ones_like(e), atol=1e-6)
    albedo = torch.rand(100, 3, generator=torch.Generator().manual_seed(1))
    out = app.radiance(albedo, torch.zeros(100, 15), unit(100), unit(100, 2))
    # radiance = albedo (E = 1) plus a specular residual that starts almost off
    assert (out - albedo).abs().max() < 0.03


def test_learns_a_directional_light_from_shaded_colours():
    """Known albedo and normals; the SH environment is fitted to Lambertian shading of a sun plus ambient
    (in linear colour) through the sRGB radiance, and reproduces the light."""
    torch.manual_seed(0)
    app = Appearance(AppearanceConfig(shading="sh", specular=False), num_images=1)
    opt = torch.optim.Adam(app.parameters(), lr=0.05)
    sun = torch.nn.functional.normalize(torch.tensor([0.3, -0.4, 0.8]), dim=0)
    for it in range(300):
        n = unit(512, it)
        albedo = torch.rand(512, 3)
        light = 0.3 + 0.9 * (n @ sun).clamp(min=0)[:, None]  # linear irradiance
        target = linear_to_srgb(srgb_to_linear(albedo) * light)
        loss = ((app.radiance(albedo, torch.zeros(512, 15), n, -n) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    n = unit(2000, 999)
    truth = 0.3 + 0.9 * (n @ sun).clamp(min=0)
    with torch.no_grad():
        err = float((app.irradiance(n)[:, 0] - truth).abs().mean() / truth.mean())
    # the least-squares 2nd-order SH fit of this light is 5.2 % off (a clamped cosine has higher orders)
    assert err < 0.08, err
    lit, dark = app.irradiance(sun[None])[0, 0], app.irradiance(-sun[None])[0, 0]
    assert lit > 1.0 and dark < 0.5, (float(lit), float(dark))


def test_per_photo_codes_are_centred_and_the_neutral_code_is_their_average():
    app = Appearance(AppearanceConfig(per_image="exposure"), num_images=5, train_indices=[0, 1, 2, 3])
    with torch.no_grad():
        app.image_log_gain.copy_(torch.tensor([[1.0] * 3, [2.0] * 3, [3.0] * 3, [6.0] * 3, [9.0] * 3]))
    g = app.gains(torch.arange(5))
    # log gains minus the training photos' mean (3.0); photo 4 is held out and does not count
    assert torch.allclose(g[:, 0].log(), torch.tensor([-2.0, -1.0, 0.0, 3.0, 6.0]))
    c = torch.full((5, 3), 0.4)
    assert torch.equal(app.radiance(c, torch.zeros(5, 15), None, unit(5)), c)  # neutral: unchanged
    brighter = app.radiance(c, torch.zeros(5, 15), None, unit(5), torch.full((5,), 3))
    assert torch.allclose(brighter, linear_to_srgb(srgb_to_linear(c) * math.exp(3.0)))


def test_render_view_outputs_albedo_or_radiance_and_adjusts_photo_backgrounds_only():
    app = Appearance(AppearanceConfig(shading="sh", per_image="lighting"), num_images=2)
    with torch.no_grad():
        app.image_log_gain[0] = 0.5
        app.sh[0, 0] = 2.0 / 0.28209479177387814  # a bright red environment
    albedo = torch.full((4, 3), 0.3)
    n, d, ray = unit(4), unit(4, 1), torch.tensor([0, 0, 1, 1])
    unlit = AppearanceRender(app, torch.tensor([0, 1]), "albedo", photo_background=True)
    assert not unlit.needs_normals
    assert torch.equal(unlit.color(albedo, torch.zeros(4, 15), None, d, ray), albedo)
    lit = AppearanceRender(app, None, "radiance")
    assert lit.needs_normals
    out = lit.color(albedo, torch.zeros(4, 15), n, d, ray)
    assert (out[:, 0] > albedo[:, 0] + 0.05).all()  # red channel lit twice as bright
    bg = torch.full((2, 3), 0.5)
    assert torch.equal(AppearanceRender(app, torch.tensor([0, 1]), photo_background=False).background(bg), bg)
    adjusted = AppearanceRender(app, torch.tensor([0, 1]), photo_background=True).background(bg)
    assert adjusted[0, 0] > 0.5 and adjusted[1, 0] < 0.5  # photo 0 exposed brighter than the average


def test_invalid_combinations_are_refused_with_the_option_named():
    with pytest.raises(ConfigError, match="per_image: 'lighting' needs appearance.shading 'sh'"):
        Appearance(AppearanceConfig(per_image="lighting"), num_images=2)
    with pytest.raises(ConfigError, match="appearance.shading: invalid value 'phong'"):
        Appearance(AppearanceConfig(shading="phong"), num_images=2)  # type: ignore[arg-type]
    app = Appearance(AppearanceConfig(shading="sh"), num_images=1)
    with pytest.raises(ValueError, match="needs the normals"):
        app.radiance(torch.rand(2, 3), torch.zeros(2, 15), None, unit(2))


def test_local_codes_change_nothing_at_the_neutral_code_and_average_out_over_the_training_photos():
    """Linear in the centred code: the neutral code (held-out views, the asset) is exactly the field's
    colour, and at every point the training photos' log gains sum to zero."""
    app = Appearance(AppearanceConfig(local_codes=4), num_images=4, train_indices=[0, 1, 2])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        app.image_local.normal_(generator=g)  # type: ignore[union-attr]
    feats, color, dirs = torch.randn(5, 15, generator=g), torch.full((5, 3), 0.4), unit(5)
    assert torch.equal(app.radiance(color, feats, None, dirs), color)
    assert app.local_log_gains(feats, None) is None
    per_photo = torch.stack([app.local_log_gains(feats, torch.full((5,), i)) for i in range(3)])  # type: ignore[misc]
    assert per_photo.abs().mean() > 0.1  # the codes do change the photos...
    assert torch.allclose(per_photo.sum(0), torch.zeros(5, 3), atol=1e-5)  # ...around the neutral code
    lit = app.radiance(color, feats, None, dirs, torch.full((5,), 1))
    assert torch.allclose(lit, linear_to_srgb(srgb_to_linear(color) * per_photo[1].exp()), atol=1e-6)
    assert not torch.equal(app.radiance(color, feats, None, dirs, torch.full((5,), 3)), color)  # held out


def test_local_codes_fit_a_shadow_that_moves_between_photos_where_exposure_gains_cannot():
    """A surface seen in two photos whose shadow covers a different half in each (the half is a function
    of the points' features): per-photo gains can only split the difference, local codes learn it."""

    def fit(cfg: AppearanceConfig) -> float:
        torch.manual_seed(0)
        app = Appearance(cfg, num_images=2, generator=torch.Generator().manual_seed(1))
        opt = torch.optim.Adam(app.parameters(), lr=0.02)
        for it in range(400):
            g = torch.Generator().manual_seed(it)
            feats = torch.randn(512, 15, generator=g)
            ids = torch.randint(2, (512,), generator=g)
            color = 0.5 * torch.rand(512, 3, generator=g)
            shadowed = (feats[:, 0] > 0) == (ids == 0)  # photo 0: one half in shadow, photo 1: the other
            light = torch.where(shadowed, 0.5, 2.0)[:, None]  # the average log light is 0
            target = linear_to_srgb(srgb_to_linear(color) * light)
            loss = ((app.radiance(color, feats, None, unit(512, it), ids) - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.detach())

    gains_only = fit(AppearanceConfig(per_image="exposure"))
    local = fit(AppearanceConfig(per_image="exposure", local_codes=4))
    # measured: 0.0100 with per-photo gains only, 0.00037 with local codes
    assert gains_only > 0.005, gains_only
    assert local < 0.1 * gains_only, (local, gains_only)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"local_codes": -1}, "appearance.local_codes: invalid value -1; accepted: an integer >= 0"),
        ({"local_codes": 2.5}, "appearance.local_codes: invalid value 2.5; accepted: an integer >= 0"),
        ({"local_hidden_dim": 0}, "appearance.local_hidden_dim: invalid value 0; accepted: an integer >= 1"),
    ],
)
def test_bad_local_code_sizes_are_refused_by_name(change, message):
    with pytest.raises(ConfigError, match=message):
        Appearance(AppearanceConfig(**change), num_images=2)
