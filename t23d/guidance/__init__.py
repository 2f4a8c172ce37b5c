"""Frozen 2D diffusion priors for score distillation: the only subpackage importing diffusers/transformers.

Importing this package is cheap (configs and the interface only); :func:`build_guidance` imports
torch, diffusers and transformers when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from t23d.common.errors import ConfigError, T23dError
from t23d.guidance.base import Guidance, GuidanceOutput, ImageCondition
from t23d.guidance.config import (
    DeepFloydGuidanceConfig,
    GuidanceConfig,
    MVDreamGuidanceConfig,
    StableDiffusionGuidanceConfig,
    Weighting,
    Zero123GuidanceConfig,
)

if TYPE_CHECKING:
    import torch


def build_guidance(cfg: GuidanceConfig, prompt: str, negative_prompt: str, device: torch.device) -> Guidance:
    """Load the prior named by ``cfg`` and precompute the prompt embeddings.

    Args:
        cfg: a :class:`StableDiffusionGuidanceConfig`, :class:`DeepFloydGuidanceConfig` or
            :class:`MVDreamGuidanceConfig`.
        prompt: the text description; empty or whitespace-only raises :class:`T23dError`.
        negative_prompt: used as the unconditional prompt of classifier-free guidance ("" for none).
        device: where the prior runs.

    Raises:
        T23dError: missing/invalid local folder, weights not cached while offline, empty prompt, ...
    """
    if isinstance(cfg, StableDiffusionGuidanceConfig):
        from t23d.guidance.stable_diffusion import StableDiffusionGuidance

        return StableDiffusionGuidance(cfg, prompt, negative_prompt or "", device)
    if isinstance(cfg, DeepFloydGuidanceConfig):
        from t23d.guidance.deepfloyd import DeepFloydGuidance

        return DeepFloydGuidance(cfg, prompt, negative_prompt or "", device)
    if isinstance(cfg, MVDreamGuidanceConfig):
        from t23d.guidance.mvdream import MVDreamGuidance

        return MVDreamGuidance(cfg, prompt, negative_prompt or "", device)
    if isinstance(cfg, Zero123GuidanceConfig):
        raise T23dError(
            "the Zero123 prior is conditioned on an image, not a text prompt: run "
            "'t23d generate --image photo.png' (or choose a text prior with 'guidance.type')"
        )
    raise TypeError(f"unknown guidance config {type(cfg).__name__}; expected one of {GuidanceConfig}")


def build_image_guidance(cfg: GuidanceConfig, condition: ImageCondition, device: torch.device) -> Guidance:
    """Load the image-conditioned prior named by ``cfg`` and embed the input view ``condition``.

    Args:
        cfg: a :class:`Zero123GuidanceConfig` (text priors raise :class:`ConfigError`).
        condition: the input image over white and its camera (the run's reference view).
        device: where the prior runs.
    """
    if not isinstance(cfg, Zero123GuidanceConfig):
        raise ConfigError(
            f"the prior {cfg.pretrained!r} ({type(cfg).__name__}) is a text prior; an image run (--image) "
            "needs a Zero123 / Stable Zero123 prior (--prior, 'guidance.type: Zero123GuidanceConfig')"
        )
    from t23d.guidance.zero123 import Zero123Guidance

    return Zero123Guidance(cfg, condition, device)


__all__ = [
    "DeepFloydGuidanceConfig",
    "Guidance",
    "GuidanceConfig",
    "GuidanceOutput",
    "ImageCondition",
    "MVDreamGuidanceConfig",
    "StableDiffusionGuidanceConfig",
    "Weighting",
    "Zero123GuidanceConfig",
    "build_guidance",
    "build_image_guidance",
]
