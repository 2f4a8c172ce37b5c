"""Frozen 2D diffusion priors for score distillation: the only subpackage importing diffusers/transformers.

Importing this package is cheap (configs and the interface only); :func:`build_guidance` imports
torch, diffusers and transformers when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from t23d.guidance.base import Guidance, GuidanceOutput
from t23d.guidance.config import (
    DeepFloydGuidanceConfig,
    GuidanceConfig,
    MVDreamGuidanceConfig,
    StableDiffusionGuidanceConfig,
    Weighting,
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
    raise TypeError(f"unknown guidance config {type(cfg).__name__}; expected one of {GuidanceConfig}")


__all__ = [
    "DeepFloydGuidanceConfig",
    "Guidance",
    "GuidanceConfig",
    "GuidanceOutput",
    "MVDreamGuidanceConfig",
    "StableDiffusionGuidanceConfig",
    "Weighting",
    "build_guidance",
]
