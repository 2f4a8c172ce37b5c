"""Zero123 guidance on tiny random priors in both diffusers layouts: loading, conditioning maths, errors."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from t23d.common.errors import ConfigError, T23dError
from t23d.guidance import (
    ImageCondition,
    StableDiffusionGuidanceConfig,
    Zero123GuidanceConfig,
    build_guidance,
    build_image_guidance,
)
from t23d.guidance.zero123 import zero123_pose
from t23d.render.cameras import look_at, spherical_to_position

CPU = torch.device("cpu")


def _condition(elevation: float = 0.0, distance: float = 2.5, seed: int = 0) -> ImageCondition:
    g = torch.Generator().manual_seed(seed)
    return ImageCondition(torch.rand(48, 48, 3, generator=g), elevation, 0.0, distance)


def _cameras(azimuth: torch.Tensor, elevation: torch.Tensor, distance: float) -> torch.Tensor:
    pos = spherical_to_position(azimuth, elevation, torch.full_like(azimuth, distance))
    return look_at(pos, torch.zeros_like(pos))  # [B, 4, 4]


def _cfg(folder, **kw) -> Zero123GuidanceConfig:
    kw.setdefault("vae_resolution", 64)
    return Zero123GuidanceConfig(pretrained=str(folder), **kw)


@pytest.fixture(scope="module")
def zero123(tiny_zero123_dir):
    return build_image_guidance(_cfg(tiny_zero123_dir), _condition(), CPU)


def test_loads_through_the_product_loader(zero123, tiny_zero123_dir):
    info = zero123.describe()
    assert (
        info["kind"] == "zero123" and info["pretrained"] == str(tiny_zero123_dir) and info["is_local_folder"]
    )
    assert info["layout"] == "clip_camera_projection" and info["pose_encoding"] == "zero123"
    assert info["input_view"] == {"elevation_deg": 0.0, "azimuth_deg": 0.0, "distance": 2.5}
    assert zero123.unet.config.in_channels == 8
    assert zero123.image_embedding.shape == (1, 1, 16) and zero123.image_latent.shape == (1, 4, 8, 8)
    json.dumps(info)


def test_input_latent_is_the_unscaled_posterior_mode(zero123):
    image = zero123.condition.image.permute(2, 0, 1)[None]
    x = torch.nn.functional.interpolate(image, size=(64, 64), mode="bilinear", align_corners=False)
    with torch.no_grad():
        expected = zero123.vae.encode(x * 2 - 1).latent_dist.mode()
    assert torch.allclose(zero123.image_latent, expected)


def test_pose_encoding_maths():
    cond = ImageCondition(torch.zeros(4, 4, 3), elevation_deg=10.0, azimuth_deg=0.0, distance=2.0)
    el = torch.tensor([10.0, 40.0, 10.0, 10.0])
    az = torch.tensor([0.0, 0.0, 90.0, -180.0])
    dist = torch.tensor([2.0, 2.0, 2.0, 2.5])
    pose = zero123_pose(el, az, dist, cond, "zero123")
    expected = torch.tensor(
        [
            [0.0, 0.0, 1.0, 0.0],  # the input view itself
            [math.radians(-30.0), 0.0, 1.0, 0.0],  # 30 degrees higher: polar angle 30 degrees smaller
            [0.0, 1.0, 0.0, 0.0],  # a quarter turn counter-clockwise seen from above
            [0.0, 0.0, -1.0, 0.5],  # the back, 0.5 farther away
        ]
    )
    assert torch.allclose(pose, expected, atol=1e-6)
    stable = zero123_pose(el, az, dist, cond, "stable-zero123")
    assert torch.allclose(stable[:, :3], expected[:, :3], atol=1e-6)
    assert torch.allclose(stable[:, 3], torch.full((4,), math.radians(80.0)))  # the input view's polar angle


def test_compute_gives_finite_loss_whose_gradient_reaches_the_images(zero123):
    images = torch.rand(2, 32, 32, 3, requires_grad=True)
    az, el = torch.tensor([30.0, -120.0]), torch.tensor([10.0, 45.0])
    out = zero123.compute(images, az, el, 0, torch.Generator().manual_seed(0), c2w=_cameras(az, el, 2.5))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and out.grad_norm > 0
    out.loss.backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    lo, hi = 700, 980  # the default schedule at step 0: 0.7 .. 0.98 of 1000
    assert ((out.timesteps >= lo) & (out.timesteps <= hi)).all()


def test_compute_is_deterministic_given_the_generator(zero123):
    images = torch.rand(1, 32, 32, 3)
    az, el = torch.tensor([45.0]), torch.tensor([20.0])
    c2w = _cameras(az, el, 2.5)
    a = zero123.compute(images, az, el, 3, torch.Generator().manual_seed(5), c2w=c2w)
    b = zero123.compute(images, az, el, 3, torch.Generator().manual_seed(5), c2w=c2w)
    assert torch.equal(a.loss, b.loss) and torch.equal(a.timesteps, b.timesteps)


def test_pose_conditioning_changes_the_prediction(zero123):
    z_t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([500])
    front = zero123.pose(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([2.5]))
    side = zero123.pose(torch.tensor([0.0]), torch.tensor([90.0]), torch.tensor([2.5]))
    assert not torch.allclose(zero123.context(front), zero123.context(side))
    eps_front = zero123.predict_noise(z_t, t, front)
    assert torch.equal(eps_front, zero123.predict_noise(z_t, t, front))
    assert (eps_front - zero123.predict_noise(z_t, t, side)).abs().max() > 1e-6
    # the same view through compute: a different camera gives a different loss for the same noise
    images = torch.rand(1, 32, 32, 3)
    losses = []
    for azimuth in (0.0, 90.0):
        az, el = torch.tensor([azimuth]), torch.tensor([0.0])
        out = zero123.compute(images, az, el, 0, torch.Generator().manual_seed(2), c2w=_cameras(az, el, 2.5))
        losses.append(float(out.loss))
    assert losses[0] != losses[1]


def test_unconditional_branch_ignores_pose_and_image(tiny_zero123_dir):
    """Guidance scale 0 leaves the unconditional prediction: zeroed context and image latent."""
    a = build_image_guidance(_cfg(tiny_zero123_dir, guidance_scale=0.0), _condition(seed=0), CPU)
    b = build_image_guidance(_cfg(tiny_zero123_dir, guidance_scale=0.0), _condition(seed=1), CPU)
    z_t, t = torch.randn(1, 4, 8, 8), torch.tensor([300])
    p0 = a.pose(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([2.5]))
    p1 = a.pose(torch.tensor([30.0]), torch.tensor([120.0]), torch.tensor([2.5]))
    ref = a.predict_noise(z_t, t, p0)
    assert torch.allclose(ref, a.predict_noise(z_t, t, p1)) and torch.allclose(
        ref, b.predict_noise(z_t, t, p0)
    )
    c = build_image_guidance(_cfg(tiny_zero123_dir, guidance_scale=1.0), _condition(seed=0), CPU)
    d = build_image_guidance(_cfg(tiny_zero123_dir, guidance_scale=1.0), _condition(seed=1), CPU)
    assert not torch.allclose(c.predict_noise(z_t, t, p0), d.predict_noise(z_t, t, p0))  # the image matters


def test_zero1to3_layout_and_stable_name(tmp_path):
    from fixtures.tiny_zero123 import build_tiny_zero123

    folder = build_tiny_zero123(tmp_path / "stable-zero123-tiny", layout="zero1to3")
    g = build_image_guidance(_cfg(folder), _condition(), CPU)
    info = g.describe()
    assert info["layout"] == "cc_projection" and info["pose_encoding"] == "stable-zero123"
    forced = build_image_guidance(_cfg(folder, pose_encoding="zero123"), _condition(), CPU)
    assert forced.describe()["pose_encoding"] == "zero123"
    az, el = torch.tensor([60.0]), torch.tensor([15.0])
    out = g.compute(torch.rand(1, 32, 32, 3), az, el, 0, torch.Generator(), c2w=_cameras(az, el, 2.5))
    assert torch.isfinite(out.loss)


# --- errors ---------------------------------------------------------------------------------------


def test_a_stable_diffusion_folder_is_refused(tiny_sd_dir):
    with pytest.raises(
        T23dError, match=r"is not a diffusers Zero123 pipeline folder: missing image_encoder/"
    ):
        build_image_guidance(_cfg(tiny_sd_dir), _condition(), CPU)


def test_a_text_prior_config_is_refused_for_an_image_run(tiny_sd_dir):
    with pytest.raises(ConfigError, match=r"\(StableDiffusionGuidanceConfig\) is a text prior; an image run"):
        build_image_guidance(StableDiffusionGuidanceConfig(pretrained=str(tiny_sd_dir)), _condition(), CPU)


def test_zero123_folders_are_detected_by_their_pipeline_class(tiny_zero123_dir, tmp_path):
    """``--prior`` with a Zero123 folder (either layout) switches any preset's guidance to Zero123."""
    from fixtures.tiny_zero123 import build_tiny_zero123

    from t23d.guidance.detect import guidance_config_for_prior

    other = build_tiny_zero123(tmp_path / "z1to3", layout="zero1to3")
    for folder in (tiny_zero123_dir, other):
        cfg = guidance_config_for_prior(StableDiffusionGuidanceConfig(), str(folder))
        assert isinstance(cfg, Zero123GuidanceConfig) and cfg.pretrained == str(folder)


def test_a_text_run_with_zero123_is_refused(tiny_zero123_dir):
    with pytest.raises(
        T23dError, match=r"conditioned on an image, not a text prompt: run 't23d generate --image"
    ):
        build_guidance(_cfg(tiny_zero123_dir), "a red ball", "", CPU)


def test_a_four_channel_unet_is_refused(tiny_zero123_dir, tiny_sd_dir, tmp_path):
    folder = tmp_path / "z"
    shutil.copytree(tiny_zero123_dir, folder)
    shutil.rmtree(folder / "unet")
    shutil.copytree(tiny_sd_dir / "unet", folder / "unet")
    with pytest.raises(T23dError, match=r"the UNet takes 4 input channels; a Zero123 UNet takes 8"):
        build_image_guidance(_cfg(folder), _condition(), CPU)


def test_a_pipeline_without_camera_projection_is_refused(tiny_zero123_dir, tmp_path):
    folder = tmp_path / "z"
    shutil.copytree(tiny_zero123_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    del index["clip_camera_projection"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(
        T23dError, match=r"is not a Zero123 pipeline: its model_index.json .* names no camera projection"
    ):
        build_image_guidance(_cfg(folder), _condition(), CPU)


def test_offline_hub_id_names_the_cache_and_prior_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(T23dError, match=r"not in the Hugging Face cache .* --prior /path/to/folder"):
        build_image_guidance(
            Zero123GuidanceConfig(pretrained="someone/zero123-not-cached"), _condition(), CPU
        )


def test_compute_needs_the_cameras(zero123):
    with pytest.raises(
        T23dError, match=r"needs the views' camera-to-world matrices c2w of shape \[1, 4, 4\]"
    ):
        zero123.compute(torch.rand(1, 32, 32, 3), torch.zeros(1), torch.zeros(1), 0, torch.Generator())


def test_bad_vae_resolution_and_pose_encoding(tiny_zero123_dir):
    with pytest.raises(ConfigError, match=r"'guidance.vae_resolution': invalid value 60"):
        build_image_guidance(_cfg(tiny_zero123_dir, vae_resolution=60), _condition(), CPU)
    with pytest.raises(ConfigError, match=r"'guidance.pose_encoding': invalid value 'zero-123'"):
        build_image_guidance(
            Zero123GuidanceConfig(pretrained=str(tiny_zero123_dir), pose_encoding="zero-123"),  # type: ignore[arg-type]
            _condition(),
            CPU,
        )
