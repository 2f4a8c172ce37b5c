"""The SDS step shared by the latent (Stable Diffusion) and pixel (DeepFloyd IF) priors."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from t23d.common.config import to_dict
from t23d.guidance.base import (
    GuidanceOutput,
    check_inputs,
    combine_cfg,
    eps_from_v,
    sample_timesteps,
    sds_loss,
    step_range,
    timestep_weight,
)
from t23d.guidance.loading import free_device_memory
from t23d.prompt.view import view_index


class ScoreDistillationGuidance:
    """SDS against a frozen UNet with classifier-free guidance; subclasses define the image encoding.

    Attributes set by subclasses before use:
        unet: frozen ``UNet2DConditionModel``.
        cond_embeddings: ``[V, L, D]`` text embeddings of the V view prompts (V = 4, or 1 without views).
        uncond_embedding: ``[1, L, D]`` embedding of the negative prompt ("" when none).
        alphas_cumprod: ``[T]`` float32 on ``device``, the DDPM alpha_bar of every training timestep.
        prediction_type: "epsilon" or "v_prediction" (from the scheduler config).
    """

    kind: str = "sds"

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

    # --- subclass hooks -------------------------------------------------------------------------
    def encode(self, images_bchw: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``[B, C, h, w]`` differentiable encoding z."""
        raise NotImplementedError

    def predict_model_output(
        self, z_t: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor
    ) -> torch.Tensor:
        """UNet output for ``z_t [N, C, h, w]``, ``t [N]``, ``embeddings [N, L, D]`` -> ``[N, C, h, w]``."""
        return self.unet(z_t, t, encoder_hidden_states=embeddings).sample

    # --- shared maths ---------------------------------------------------------------------------
    def timestep_range(self, step: int) -> tuple[int, int]:
        """Inclusive ``[min_step, max_step]`` at optimisation ``step`` from the config schedules."""
        return step_range(
            self.cfg.min_step_percent, self.cfg.max_step_percent, step, self.num_train_timesteps
        )

    def predict_noise(
        self, z_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor
    ) -> torch.Tensor:
        """Classifier-free-guided noise prediction eps_hat ``[B, C, h, w]`` (float32), no grad.

        Args:
            z_t: ``[B, C, h, w]`` noisy encodings; t: ``[B]`` timesteps on the device;
            cond: ``[B, L, D]`` prompt embeddings; uncond: ``[B, L, D]`` negative-prompt embeddings.
        """
        with torch.no_grad():
            model_in = torch.cat([z_t, z_t], dim=0).to(self.dtype)  # [2B, C, h, w]
            out = self.predict_model_output(model_in, torch.cat([t, t]), torch.cat([cond, uncond], dim=0))
            out = out.float()
            if self.prediction_type == "v_prediction":
                alpha_bar = self.alphas_cumprod[torch.cat([t, t])].view(-1, 1, 1, 1)
                out = eps_from_v(out, torch.cat([z_t, z_t], dim=0).float(), alpha_bar)
            out_cond, out_uncond = out.chunk(2, dim=0)
            return combine_cfg(out_uncond, out_cond, self.cfg.guidance_scale)

    def compute(
        self,
        images: torch.Tensor,
        azimuth_deg: torch.Tensor,
        elevation_deg: torch.Tensor,
        step: int,
        generator: torch.Generator,
    ) -> GuidanceOutput:
        """SDS loss for ``images [B, H, W, 3]`` in [0, 1]; see :class:`t23d.guidance.base.Guidance`.

        Random draws from ``generator``, in order: encoder noise (VAE priors only), t ``[B]``, eps.
        """
        if self.unet is None:
            raise RuntimeError("guidance was released; build a new one")
        check_inputs(images, azimuth_deg, elevation_deg)
        batch = images.shape[0]
        x = images.permute(0, 3, 1, 2).to(self.device)  # [B, 3, H, W]
        z = self.encode(x, generator)  # [B, C, h, w], differentiable

        min_step, max_step = self.timestep_range(step)
        t = sample_timesteps(batch, min_step, max_step, generator)  # [B] CPU
        noise = torch.randn(z.shape, generator=generator, dtype=torch.float32).to(self.device)  # [B, C, h, w]
        t_dev = t.to(self.device)
        alpha_bar = self.alphas_cumprod[t_dev].view(batch, 1, 1, 1)  # [B, 1, 1, 1]

        idx = view_index(azimuth_deg.detach().cpu(), elevation_deg.detach().cpu(), self.cfg.view_prompts)
        cond = self.cond_embeddings[
            idx.clamp(max=self.cond_embeddings.shape[0] - 1).to(self.device)
        ]  # [B, L, D]
        uncond = self.uncond_embedding.expand(batch, -1, -1)  # [B, L, D]

        with torch.no_grad():
            z_t = alpha_bar.sqrt() * z.detach().float() + (1.0 - alpha_bar).sqrt() * noise  # [B, C, h, w]
            eps_hat = self.predict_noise(z_t, t_dev, cond, uncond)
            w = timestep_weight(alpha_bar, self.cfg.weighting)  # [B, 1, 1, 1]
            grad = torch.nan_to_num(w * (eps_hat - noise))  # [B, C, h, w]
            grad_norm = float(torch.linalg.vector_norm(grad))
            if self.cfg.grad_clip is not None:
                grad = grad.clamp(-self.cfg.grad_clip, self.cfg.grad_clip)
        return GuidanceOutput(loss=sds_loss(z, grad), grad_norm=grad_norm, timesteps=t)

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
