"""The SDS step shared by the latent (Stable Diffusion) and pixel (DeepFloyd IF) priors."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from t23d.common.config import to_dict
from t23d.common.errors import ConfigError, T23dError
from t23d.guidance.base import (
    GuidanceOutput,
    check_inputs,
    combine_cfg,
    combine_perp_neg,
    eps_from_v,
    rescale_cfg,
    sample_timesteps,
    score_distillation,
    step_range,
)
from t23d.guidance.loading import free_device_memory
from t23d.prompt.perpneg import perp_neg_views
from t23d.prompt.view import view_index

logger = logging.getLogger(__name__)


@dataclass
class Conditioning:
    """What the UNet is conditioned on for a batch of B views (all on the guidance's device)."""

    positive: torch.Tensor
    """``[B, L, D]`` prompt embedding of each view (its view prompt, or Perp-Neg's interpolation)."""
    uncond: torch.Tensor
    """``[B, L, D]`` unconditional (negative-prompt) embedding."""
    negatives: torch.Tensor | None = None
    """``[B, K, L, D]`` Perp-Neg negative prompt embeddings, or None for plain CFG."""
    negative_weight: torch.Tensor | None = None
    """``[B, K]`` Perp-Neg weights of the negatives."""
    unet_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    """Extra per-view UNet keyword inputs ``[B, ...]`` (MVDream: ``camera``), repeated like the batch."""


def check_guidance_options(cfg: Any) -> None:
    """Raise :class:`ConfigError` for options that cannot work together (checked before loading)."""
    rescale = getattr(cfg, "guidance_rescale", 0.0)
    if not 0.0 <= rescale <= 1.0:
        raise ConfigError(
            f"config key 'guidance.guidance_rescale': invalid value {rescale!r}; accepted: 0 to 1"
        )
    if getattr(cfg, "perp_neg", None) is not None and not cfg.view_prompts.enabled:
        raise ConfigError(
            "config key 'guidance.perp_neg' needs view prompts: set 'guidance.view_prompts.enabled: true' "
            "or 'guidance.perp_neg: null'"
        )


class ScoreDistillationGuidance:
    """SDS against a frozen UNet with classifier-free guidance; subclasses define the image encoding.

    Attributes set by subclasses before use:
        unet: frozen ``UNet2DConditionModel``.
        cond_embeddings: ``[V, L, D]`` text embeddings of the V view prompts (V = 4, or 1 without views).
        uncond_embedding: ``[1, L, D]`` embedding of the negative prompt ("" when none).
        alphas_cumprod: ``[T]`` float32 on ``device``, the DDPM alpha_bar of every training timestep.
        prediction_type: "epsilon" or "v_prediction" (from the scheduler config).
        num_views: views denoised together (1; MVDream: 4).
        latent_channels: channels of the latent the field can render for :meth:`compute_latents` (0: none).
    """

    kind: str = "sds"
    input_size_key: str = ""
    """Config key of the pixel size renders are resized to (named in the log), set by subclasses."""

    def __init__(self, cfg: Any, prompt: str, negative_prompt: str, device: torch.device) -> None:
        self.cfg = cfg
        self.prompt = prompt
        self.negative_prompt = negative_prompt
        self.device = torch.device(device)
        self.dtype = torch.float32
        self.source = ""
        self.is_local = False
        self.view_prompt_list: list[str] = []
        self.unet: Any = None
        self.cond_embeddings: torch.Tensor | None = None
        self.uncond_embedding: torch.Tensor | None = None
        self.alphas_cumprod: torch.Tensor | None = None
        self.num_train_timesteps = 1000
        self.prediction_type = "epsilon"
        self.num_views = 1
        self.latent_channels = 0
        self._logged_input_size = False
        check_guidance_options(cfg)

    # --- subclass hooks -------------------------------------------------------------------------
    def encode(self, images_bchw: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``[B, C, h, w]`` differentiable encoding z."""
        raise NotImplementedError

    def input_size(self) -> int:
        """Side in pixels that renders are resized to before :meth:`encode` (the prior's own size)."""
        raise NotImplementedError

    def predict_model_output(
        self, z_t: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor, **unet_inputs: torch.Tensor
    ) -> torch.Tensor:
        """UNet output for ``z_t [N, C, h, w]``, ``t [N]``, ``embeddings [N, L, D]`` -> ``[N, C, h, w]``.

        ``unet_inputs`` are a prior's extra per-sample inputs (:attr:`Conditioning.unet_inputs`, e.g.
        MVDream's cameras); the text-only priors take none.
        """
        return self.unet(z_t, t, encoder_hidden_states=embeddings, **unet_inputs).sample

    def conditioning(
        self, azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor, c2w: torch.Tensor | None
    ) -> Conditioning:
        """The prompt embeddings of each camera: its view prompt, or Perp-Neg's mix and negatives.

        Args:
            azimuth_deg, elevation_deg: ``[B]`` on CPU; c2w: ``[B, 4, 4]`` or None (unused by text priors).
        """
        batch = azimuth_deg.shape[0]
        uncond = self.uncond_embedding.expand(batch, -1, -1)  # [B, L, D]
        if self.cfg.perp_neg is not None:
            views = perp_neg_views(azimuth_deg, elevation_deg, self.cfg.view_prompts, self.cfg.perp_neg)
            emb = self.cond_embeddings  # [4, L, D]
            positive = torch.einsum("bv,vld->bld", views.positive.to(self.device, emb.dtype), emb)
            negatives = emb[views.negative_index.to(self.device)]  # [B, 2, L, D]
            return Conditioning(positive, uncond, negatives, views.negative_weight.to(self.device))
        idx = view_index(azimuth_deg, elevation_deg, self.cfg.view_prompts)
        positive = self.cond_embeddings[idx.clamp(max=self.cond_embeddings.shape[0] - 1).to(self.device)]
        return Conditioning(positive, uncond)

    def sample_t(self, batch: int, step: int, generator: torch.Generator) -> torch.Tensor:
        """``[B]`` int64 timesteps on CPU, drawn independently per view from the step's range."""
        min_step, max_step = self.timestep_range(step)
        return sample_timesteps(batch, min_step, max_step, generator)

    # --- shared maths ---------------------------------------------------------------------------
    def timestep_range(self, step: int) -> tuple[int, int]:
        """Inclusive ``[min_step, max_step]`` at optimisation ``step`` from the config schedules."""
        return step_range(
            self.cfg.min_step_percent, self.cfg.max_step_percent, step, self.num_train_timesteps
        )

    def predict_noise(self, z_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Guided noise prediction eps_hat ``[B, C, h, w]`` (float32), no grad.

        One UNet call on the batch ``[positive; uncond; negative 1; ...; negative K]`` (each B long), then
        classifier-free guidance (or Perp-Neg when ``cond`` has negatives) and CFG rescale.

        Args:
            z_t: ``[B, C, h, w]`` noisy encodings; t: ``[B]`` timesteps on the device; cond: the embeddings.
        """
        num_neg = 0 if cond.negatives is None else cond.negatives.shape[1]
        n = 2 + num_neg
        with torch.no_grad():
            embeddings = [cond.positive, cond.uncond]
            embeddings += [cond.negatives[:, k] for k in range(num_neg)]  # type: ignore[index]
            extra = {k: v.repeat(n, *([1] * (v.ndim - 1))) for k, v in cond.unet_inputs.items()}
            z_rep, t_rep = z_t.repeat(n, 1, 1, 1), t.repeat(n)  # [nB, C, h, w], [nB]
            out = self.predict_model_output(
                z_rep.to(self.dtype), t_rep, torch.cat(embeddings, dim=0).to(self.dtype), **extra
            ).float()
            if self.prediction_type == "v_prediction":
                out = eps_from_v(out, z_rep.float(), self.alphas_cumprod[t_rep].view(-1, 1, 1, 1))
            chunks = out.chunk(n, dim=0)
            eps_pos, eps_uncond = chunks[0], chunks[1]
            if num_neg:
                eps = combine_perp_neg(
                    eps_uncond,
                    eps_pos,
                    torch.stack(chunks[2:], dim=1),
                    cond.negative_weight,
                    self.cfg.guidance_scale,
                )
            else:
                eps = combine_cfg(eps_uncond, eps_pos, self.cfg.guidance_scale)
            return rescale_cfg(eps, eps_pos, self.cfg.guidance_rescale)

    def compute(
        self,
        images: torch.Tensor,
        azimuth_deg: torch.Tensor,
        elevation_deg: torch.Tensor,
        step: int,
        generator: torch.Generator,
        *,
        c2w: torch.Tensor | None = None,
    ) -> GuidanceOutput:
        """SDS loss for ``images [B, H, W, 3]`` in [0, 1]; see :class:`t23d.guidance.base.Guidance`.

        Random draws from ``generator``, in order: encoder noise (VAE priors only), t, eps.
        """
        if self.unet is None:
            raise RuntimeError("guidance was released; build a new one")
        check_inputs(images, azimuth_deg, elevation_deg)
        self._log_input_size(images.shape[1], images.shape[2])
        x = images.permute(0, 3, 1, 2).to(self.device)  # [B, 3, H, W]
        z = self.encode(x, generator)  # [B, C, h, w], differentiable
        return self.score(z, azimuth_deg, elevation_deg, step, generator, c2w)

    def compute_latents(
        self,
        latents: torch.Tensor,
        azimuth_deg: torch.Tensor,
        elevation_deg: torch.Tensor,
        step: int,
        generator: torch.Generator,
        *,
        c2w: torch.Tensor | None = None,
    ) -> GuidanceOutput:
        """SDS loss for renders of the prior's own latent, ``latents [B, h, w, C]`` (Latent-NeRF), no encoder.

        The gradient lands on ``latents``; random draws: t, then eps. Only for latent priors
        (``latent_channels > 0``).
        """
        if self.unet is None:
            raise RuntimeError("guidance was released; build a new one")
        if not self.latent_channels:
            raise T23dError(f"{self.kind} guidance scores pixels; it has no latent space to render into")
        if latents.ndim != 4 or latents.shape[-1] != self.latent_channels or latents.shape[0] == 0:
            raise T23dError(
                f"guidance expects latents of shape [B, h, w, {self.latent_channels}] with B >= 1; got "
                f"{tuple(latents.shape)}"
            )
        check_inputs(latents[..., :3], azimuth_deg, elevation_deg)
        if not self._logged_input_size:
            self._logged_input_size = True
            h, w = latents.shape[1:3]
            logger.info(
                "%s: renders of %dx%d latents go to the UNet directly (latent mode, no VAE)", self.kind, w, h
            )
        z = latents.permute(0, 3, 1, 2).to(self.device)  # [B, C, h, w]
        return self.score(z, azimuth_deg, elevation_deg, step, generator, c2w)

    def score(
        self,
        z: torch.Tensor,
        azimuth_deg: torch.Tensor,
        elevation_deg: torch.Tensor,
        step: int,
        generator: torch.Generator,
        c2w: torch.Tensor | None,
    ) -> GuidanceOutput:
        """The SDS loss of encodings ``z [B, C, h, w]`` (differentiable): draws t then eps from ``generator``."""
        t = self.sample_t(z.shape[0], step, generator)  # [B] CPU
        cond = self.conditioning(azimuth_deg.detach().cpu(), elevation_deg.detach().cpu(), c2w)
        return score_distillation(
            z,
            t,
            generator,
            self.alphas_cumprod,
            lambda z_t, t_dev: self.predict_noise(z_t, t_dev, cond),
            self.cfg.weighting,
            self.cfg.grad_clip,
        )

    def _log_input_size(self, height: int, width: int) -> None:
        """Say once how renders are resized for the prior (the render resolution is the preset's)."""
        if self._logged_input_size:
            return
        self._logged_input_size = True
        size = self.input_size()
        if (height, width) == (size, size):
            logger.info("%s: renders of %dx%d px go to the prior unresized", self.kind, width, height)
        else:
            logger.info(
                "%s: renders of %dx%d px (camera.resolution) are resized (bilinear) to %dx%d px (%s) for the prior",
                self.kind,
                width,
                height,
                size,
                size,
                self.input_size_key,
            )

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run.json."""
        cfg = to_dict(self.cfg)
        return {
            "kind": self.kind,
            "pretrained": self.source,
            "is_local_folder": self.is_local,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "guidance_scale": self.cfg.guidance_scale,
            "weighting": self.cfg.weighting,
            "grad_clip": self.cfg.grad_clip,
            "perp_neg": getattr(self.cfg, "perp_neg", None) is not None,
            "guidance_rescale": getattr(self.cfg, "guidance_rescale", 0.0),
            "prediction_type": self.prediction_type,
            "num_train_timesteps": self.num_train_timesteps,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "view_prompts": list(self.view_prompt_list),
            "config": cfg,
        }

    def release(self) -> None:
        """Drop the models and embeddings and free device memory."""
        self.unet = None
        self.cond_embeddings = None
        self.uncond_embedding = None
        free_device_memory(self.device)


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize ``[B, 3, H, W] -> [B, 3, size, size]`` (no-op when already that size).

    Shrinking is anti-aliased (each output pixel averages the input pixels it covers), so a render larger
    than the prior's input (the refine stage's 512 px for a 64 px pixel-space prior) passes every pixel's
    gradient, not one pixel in (H / size)^2 as plain bilinear sampling would."""
    if x.shape[-2:] == (size, size):
        return x
    shrink = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
