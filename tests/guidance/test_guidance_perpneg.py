"""Perp-Neg and CFG rescale: the maths, and the options through a tiny prior's ``compute``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from t23d.common.errors import ConfigError
from t23d.guidance import StableDiffusionGuidanceConfig, build_guidance
from t23d.guidance.base import combine_cfg, combine_perp_neg, perpendicular_component, rescale_cfg
from t23d.prompt import PerpNegConfig, ViewPromptConfig, perp_neg_views

PROMPT = "a stone grotto"


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_perpendicular_component_is_orthogonal_to_the_positive_direction() -> None:
    x, y = _randn(3, 4, 5, 5, seed=1), _randn(3, 4, 5, 5, seed=2)
    perp = perpendicular_component(x, y)
    dot = (perp * y).flatten(1).sum(-1)
    assert dot.abs().max() < 1e-4 * (x.flatten(1).norm(dim=-1) * y.flatten(1).norm(dim=-1)).min()
    # what was removed is parallel to y, per sample
    removed = (x - perp).flatten(1)
    cos = torch.nn.functional.cosine_similarity(removed, y.flatten(1), dim=-1)
    torch.testing.assert_close(cos.abs(), torch.ones(3))
    torch.testing.assert_close(perpendicular_component(y, y), torch.zeros_like(y), atol=1e-5, rtol=0)
    torch.testing.assert_close(perpendicular_component(x, torch.zeros_like(y)), x)


def test_perp_neg_combination() -> None:
    uncond, pos = _randn(2, 4, 6, 6, seed=3), _randn(2, 4, 6, 6, seed=4)
    neg = _randn(2, 2, 4, 6, 6, seed=5)
    s = 7.5
    # zero weights: plain classifier-free guidance
    torch.testing.assert_close(
        combine_perp_neg(uncond, pos, neg, torch.zeros(2, 2), s), combine_cfg(uncond, pos, s)
    )
    # a negative parallel to the positive direction has no effect (only its perpendicular part counts)
    parallel = uncond[:, None] + 3.0 * (pos - uncond)[:, None]
    out = combine_perp_neg(uncond, pos, parallel.expand(-1, 2, -1, -1, -1), torch.full((2, 2), -1.5), s)
    torch.testing.assert_close(out, combine_cfg(uncond, pos, s), rtol=1e-4, atol=1e-4)
    # the general case, written out
    w = torch.tensor([[-1.0, -0.5], [0.0, -2.0]])
    e_pos = pos - uncond
    expected = uncond + s * (
        e_pos
        + w[:, 0].view(2, 1, 1, 1) * perpendicular_component(neg[:, 0] - uncond, e_pos)
        + w[:, 1].view(2, 1, 1, 1) * perpendicular_component(neg[:, 1] - uncond, e_pos)
    )
    got = combine_perp_neg(uncond, pos, neg, w, s)
    torch.testing.assert_close(got, expected)
    # the guided direction minus the positive one is orthogonal to the positive direction
    extra = (got - uncond) / s - e_pos
    assert (extra * e_pos).flatten(1).sum(-1).abs().max() < 1e-3


def test_rescale_preserves_the_conditional_std_at_phi_one() -> None:
    uncond, cond = _randn(3, 4, 8, 8, seed=6), 0.3 * _randn(3, 4, 8, 8, seed=7)
    cfg = combine_cfg(uncond, cond, 50.0)
    assert (cfg.flatten(1).std(-1) / cond.flatten(1).std(-1)).min() > 10  # CFG blows the scale up
    full = rescale_cfg(cfg, cond, 1.0)
    torch.testing.assert_close(full.flatten(1).std(-1), cond.flatten(1).std(-1))
    # direction per sample is the guided one
    cos = torch.nn.functional.cosine_similarity(full.flatten(1), cfg.flatten(1), dim=-1)
    torch.testing.assert_close(cos, torch.ones(3))
    torch.testing.assert_close(rescale_cfg(cfg, cond, 0.0), cfg)
    torch.testing.assert_close(rescale_cfg(cfg, cond, 0.7), 0.7 * full + 0.3 * cfg)


class RecordingUNet(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, sample, timestep, encoder_hidden_states):
        out = self.inner(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample
        self.calls.append({"sample": sample, "t": timestep, "emb": encoder_hidden_states, "out": out})
        return SimpleNamespace(sample=out)


@pytest.fixture(scope="module")
def sd_perp(tiny_sd_dir: Path):
    cfg = StableDiffusionGuidanceConfig(
        pretrained=str(tiny_sd_dir), vae_resolution=64, perp_neg=PerpNegConfig(), guidance_rescale=0.5
    )
    return build_guidance(cfg, PROMPT, "", "cpu")


def test_perp_neg_through_compute(sd_perp, monkeypatch: pytest.MonkeyPatch) -> None:
    unet = RecordingUNet(sd_perp.unet)
    monkeypatch.setattr(sd_perp, "unet", unet)
    monkeypatch.setattr(sd_perp.cfg, "weighting", "uniform")
    az, el = torch.tensor([45.0, 150.0, 0.0]), torch.tensor([0.0, 10.0, 80.0])
    images = torch.rand(3, 24, 24, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    noises = []
    real_randn = torch.randn

    def spy_randn(*args, **kwargs):
        out = real_randn(*args, **kwargs)
        if tuple(out.shape) == (3, 4, 8, 8):
            noises.append(out)
        return out

    monkeypatch.setattr(torch, "randn", spy_randn)
    out = sd_perp.compute(images, az, el, 0, torch.Generator().manual_seed(1))
    out.loss.backward()
    (call,) = unet.calls
    assert call["sample"].shape[0] == 12  # [positive; uncond; negative 1; negative 2] x 3 views
    emb = call["emb"].reshape(4, 3, *call["emb"].shape[1:])
    views = perp_neg_views(az, el, sd_perp.cfg.view_prompts, sd_perp.cfg.perp_neg)
    e = sd_perp.cond_embeddings
    torch.testing.assert_close(emb[0, 0], 0.5 * e[0] + 0.5 * e[1])  # 45 degrees: half front, half side
    torch.testing.assert_close(emb[0, 2], e[3])  # overhead
    torch.testing.assert_close(emb[1], sd_perp.uncond_embedding.expand(3, -1, -1))
    torch.testing.assert_close(emb[2], e[views.negative_index[:, 0]])
    torch.testing.assert_close(emb[3], e[views.negative_index[:, 1]])
    # the gradient is w * (eps_hat - eps) with eps_hat from the recorded predictions
    eps = call["out"].reshape(4, 3, 4, 8, 8)
    guided = combine_perp_neg(
        eps[1], eps[0], eps[2:].transpose(0, 1), views.negative_weight, sd_perp.cfg.guidance_scale
    )
    eps_hat = rescale_cfg(guided, eps[0], 0.5)
    noise = noises[-1]
    expected = (eps_hat - noise).norm()
    assert out.grad_norm == pytest.approx(float(expected), rel=1e-4)
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_option_validation(tiny_sd_dir: Path) -> None:
    with pytest.raises(ConfigError, match="'guidance.perp_neg' needs view prompts"):
        build_guidance(
            StableDiffusionGuidanceConfig(
                pretrained=str(tiny_sd_dir),
                perp_neg=PerpNegConfig(),
                view_prompts=ViewPromptConfig(enabled=False),
            ),
            PROMPT,
            "",
            "cpu",
        )
    with pytest.raises(
        ConfigError, match=r"'guidance.guidance_rescale': invalid value 1.5; accepted: 0 to 1"
    ):
        build_guidance(
            StableDiffusionGuidanceConfig(pretrained=str(tiny_sd_dir), guidance_rescale=1.5),
            PROMPT,
            "",
            "cpu",
        )
