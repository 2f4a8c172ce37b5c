"""Albedo calibration to a surface of known reflectance: the gain read through a box in a photo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from t23d.common.errors import ConfigError, T23dError
from t23d.data.albedo_reference import parse_albedo_reference
from t23d.export.config import ExportConfig, validate_export_config
from t23d.field.appearance import Appearance, AppearanceConfig, AppearanceRender, srgb_to_linear
from t23d.field.nerf import DensityBlobConfig, FieldConfig, NeRFField
from t23d.reconstruct.calibrate import albedo_gain
from t23d.render.cameras import focal_from_fov, look_at
from t23d.render.volume import RenderConfig

ALBEDO = (0.6, 0.45, 0.3)
"""The test field's constant albedo, sRGB."""


def plain_sphere() -> NeRFField:
    """An SDF sphere of radius 0.5, opaque, whose albedo is :data:`ALBEDO` everywhere."""
    field_ = NeRFField(
        FieldConfig(geometry="sdf", blob=DensityBlobConfig(kind="none")),
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        field_.log_inv_s.fill_(math.log(800.0))
        head = [m for m in field_.color_mlp if isinstance(m, torch.nn.Linear)][-1]
        head.weight.zero_()
        head.bias.copy_(torch.logit(torch.tensor(ALBEDO)))
        last = [m for m in field_.density_mlp if isinstance(m, torch.nn.Linear)][-1]
        last.weight.zero_()
        last.bias.zero_()  # s(x) = |x| - 0.5 exactly
    return field_.eval()


def scene_record(tmp_path, stored: int = 64, size: int = 32) -> dict:
    """One camera 3 units away looking at the sphere, its photo stored at ``stored`` pixels."""
    photo = tmp_path / "card.png"
    Image.fromarray(np.zeros((stored, stored, 3), np.uint8)).save(photo)
    c2w = look_at(torch.tensor([[0.0, -3.0, 0.0]]), torch.zeros(1, 3))[0]
    f = float(focal_from_fov(torch.tensor(40.0), size))
    return {
        "width": size,
        "height": size,
        "c2w": [c2w.tolist()],
        "intrinsics": [[f, f, size / 2, size / 2]],
        "image_paths": [str(photo)],
    }


def test_the_gain_brings_the_card_to_its_reflectance_and_the_albedo_output_applies_it(tmp_path):
    field_ = plain_sphere()
    model = Appearance(AppearanceConfig(shading="sh"), num_images=1)
    scene = scene_record(tmp_path)
    # the centre of the 64-px stored photo, i.e. pixels 14..17 of the run's 32-px image
    ref = parse_albedo_reference("card.png:28,28,36,36=0.18")
    gain, report = albedo_gain(field_, model, None, RenderConfig(num_samples=256), scene, ref)
    before = srgb_to_linear(torch.tensor(ALBEDO))
    assert torch.allclose(gain, 0.18 / before, rtol=0.02), (gain, 0.18 / before)
    assert report["pixels"] == 16 and report["relative_spread"] < 0.01
    assert report["albedo_before_linear"] == pytest.approx(before.tolist(), rel=0.02)
    # what the albedo texture then bakes: the card at its reflectance, on every channel
    app = AppearanceRender(model, None, "albedo", albedo_gain=gain)
    color = torch.tensor([ALBEDO])
    out = app.color(color, torch.zeros(1, 15), None, torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))
    assert torch.allclose(srgb_to_linear(out), torch.full((1, 3), 0.18), atol=2e-3)
    # radiance renders (what photos show) are not touched by the calibration
    radiance = AppearanceRender(model, None, "radiance", albedo_gain=gain)
    n = torch.tensor([[0.0, 0.0, 1.0]])
    ray = torch.zeros(1, dtype=torch.long)
    plain = AppearanceRender(model, None, "radiance")
    assert torch.equal(
        radiance.color(color, torch.zeros(1, 15), n, -n, ray),
        plain.color(color, torch.zeros(1, 15), n, -n, ray),
    )


def test_a_box_off_the_reconstructed_surface_is_refused(tmp_path):
    field_ = plain_sphere()
    model = Appearance(AppearanceConfig(shading="sh"), num_images=1)
    scene = scene_record(tmp_path)
    corner = parse_albedo_reference("card.png:0,0,8,8=0.18")  # background only
    with pytest.raises(T23dError, match="only 0 of the 16 pixels .* show the reconstructed surface"):
        albedo_gain(field_, model, None, RenderConfig(num_samples=256), scene, corner)
    outside = parse_albedo_reference("card.png:100,100,120,120=0.18")
    with pytest.raises(T23dError, match="holds no pixel centre of card.png .64 x 64 pixels as stored"):
        albedo_gain(field_, model, None, RenderConfig(num_samples=256), scene, outside)


def test_the_reference_is_for_albedo_textures_only():
    validate_export_config(ExportConfig(texture="albedo", albedo_reference="a.jpg:0,0,4,4=0.18"))
    with pytest.raises(ConfigError, match="add --texture albedo"):
        validate_export_config(ExportConfig(texture="radiance", albedo_reference="a.jpg:0,0,4,4=0.18"))
    with pytest.raises(ConfigError, match="--albedo-reference"):
        validate_export_config(ExportConfig(texture="albedo", albedo_reference="a.jpg:0,0,4,4"))
