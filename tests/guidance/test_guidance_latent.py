"""Latent mode on the guidance side: the linear latent <-> RGB map, and SDS on rendered latents (no VAE)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from t23d.common.errors import T23dError
from t23d.guidance import StableDiffusionGuidanceConfig, build_guidance
from t23d.guidance.latent import LATENT_RGB_FACTORS, latent_to_rgb, rgb_to_latent


def test_rgb_to_latent_inverts_latent_to_rgb() -> None:
    rgb = torch.rand(50, 3, generator=torch.Generator().manual_seed(0))
    z = rgb_to_latent(rgb)
    assert z.shape == (50, 4)
    torch.testing.assert_close(latent_to_rgb(z), rgb, atol=1e-5, rtol=0)
    # the least-norm latent: no component in the factors' null space
    null = torch.linalg.svd(torch.tensor(LATENT_RGB_FACTORS).T).Vh[-1]  # [4], the direction colour ignores
    assert (z @ null).abs().max() < 1e-5
    # a known case: one unit of latent channel 0 is (0.298, 0.207, 0.208) in [-1, 1]
    torch.testing.assert_close(
        latent_to_rgb(torch.tensor([1.0, 0, 0, 0])), torch.tensor([0.649, 0.6035, 0.604])
    )


@pytest.fixture(scope="module")
def latent_sd(tiny_sd_dir: Path):
    cfg = StableDiffusionGuidanceConfig(pretrained=str(tiny_sd_dir), input_space="latent")
    return build_guidance(cfg, "a stone grotto", "", "cpu")


def test_latent_guidance_skips_the_vae_and_scores_latents(latent_sd, caplog) -> None:
    assert latent_sd.vae is None and latent_sd.latent_channels == 4
    latents = torch.randn(2, 8, 8, 4, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    with caplog.at_level(logging.INFO, logger="t23d.guidance.sds"):
        out = latent_sd.compute_latents(
            latents, torch.tensor([0.0, 90.0]), torch.zeros(2), 0, torch.Generator().manual_seed(2)
        )
    out.loss.backward()
    assert torch.isfinite(latents.grad).all() and latents.grad.abs().sum() > 0
    # uniform weighting aside, the gradient on the latents is w (eps_hat - eps) / B: its norm is grad_norm / B
    assert float(latents.grad.norm()) == pytest.approx(out.grad_norm / 2, rel=1e-4)
    assert "renders of 8x8 latents go to the UNet directly" in caplog.text
    assert latent_sd.describe()["input_space"] == "latent"


def test_latent_guidance_refuses_rgb_and_bad_shapes(latent_sd, tiny_if_dir: Path) -> None:
    with pytest.raises(T23dError, match="no VAE to encode RGB images; call compute_latents"):
        latent_sd.compute(torch.rand(1, 16, 16, 3), torch.zeros(1), torch.zeros(1), 0, torch.Generator())
    with pytest.raises(T23dError, match=r"expects latents of shape \[B, h, w, 4\]"):
        latent_sd.compute_latents(
            torch.rand(1, 8, 8, 3), torch.zeros(1), torch.zeros(1), 0, torch.Generator()
        )
    from t23d.guidance import DeepFloydGuidanceConfig

    pixel = build_guidance(
        DeepFloydGuidanceConfig(pretrained=str(tiny_if_dir), resolution=16), "a grotto", "", "cpu"
    )
    with pytest.raises(T23dError, match="deepfloyd-if guidance scores pixels; it has no latent space"):
        pixel.compute_latents(torch.rand(1, 8, 8, 4), torch.zeros(1), torch.zeros(1), 0, torch.Generator())


def test_bfloat16_on_cpu_runs_the_unet_in_bfloat16_and_returns_float32_gradients(tiny_sd_dir: Path) -> None:
    cfg = StableDiffusionGuidanceConfig(
        pretrained=str(tiny_sd_dir), input_space="latent", cpu_dtype="bfloat16"
    )
    guidance = build_guidance(cfg, "a stone grotto", "", "cpu")
    assert guidance.dtype == torch.bfloat16 and next(guidance.unet.parameters()).dtype == torch.bfloat16
    assert guidance.describe()["dtype"] == "bfloat16"
    latents = torch.randn(1, 8, 8, 4, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    out = guidance.compute_latents(
        latents, torch.zeros(1), torch.zeros(1), 0, torch.Generator().manual_seed(2)
    )
    out.loss.backward()
    assert latents.grad.dtype == torch.float32 and torch.isfinite(latents.grad).all()
    assert latents.grad.abs().sum() > 0


def test_select_dtype_names_the_accepted_cpu_dtypes() -> None:
    from t23d.common.errors import ConfigError
    from t23d.guidance.loading import select_dtype

    assert select_dtype(True, "cpu") == torch.float32
    with pytest.raises(
        ConfigError, match=r"guidance.cpu_dtype.*'float16'.*accepted: 'float32', 'bfloat16', 'auto'"
    ):
        select_dtype(True, "cpu", "float16")


@pytest.mark.parametrize("native", [True, False])
def test_auto_cpu_dtype_takes_bfloat16_only_where_the_cpu_has_it(native: bool, monkeypatch, caplog) -> None:
    """``auto`` (the latent preset's): bfloat16 on a CPU with native bfloat16 dot products, float32 where
    bfloat16 would be emulated (35x slower for an SD-sized UNet on a 2-core EPYC without them); the log
    says which and why. CUDA is unaffected (float16 when half precision)."""
    from t23d.guidance import loading

    monkeypatch.setattr(loading, "cpu_has_native_bfloat16", lambda: native)
    with caplog.at_level(logging.INFO, logger="t23d.guidance.loading"):
        dtype = loading.select_dtype(True, "cpu", "auto")
    assert dtype == (torch.bfloat16 if native else torch.float32)
    assert any(
        m.startswith(f"guidance.cpu_dtype auto: {'bfloat16' if native else 'float32'} (this CPU has")
        for m in (r.getMessage() for r in caplog.records)
    )


def test_loading_log_names_the_weights_precision(tiny_sd_dir: Path, caplog) -> None:
    """The log says in which precision each weighted component was loaded (float16 on CUDA by default)."""
    cfg = StableDiffusionGuidanceConfig(pretrained=str(tiny_sd_dir), cpu_dtype="bfloat16")
    with caplog.at_level(logging.INFO, logger="t23d.guidance.loading"):
        build_guidance(cfg, "a stone grotto", "", "cpu")
    lines = [r.getMessage() for r in caplog.records]
    assert f"loading unet from {tiny_sd_dir} (bfloat16)" in lines
    assert f"loading tokenizer from {tiny_sd_dir}" in lines  # no weights, no precision
