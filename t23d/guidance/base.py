"""The guidance interface used by the optimisation loop, and the SDS maths shared by every prior.

Score distillation sampling (DreamFusion, Poole et al. 2022): for a differentiable render x, encode
it to z (VAE latents for Stable Diffusion, [-1, 1] pixels for DeepFloyd IF), draw t and eps, noise
z_t = sqrt(alpha_bar_t) z + sqrt(1 - alpha_bar_t) eps, predict eps_hat with classifier-free guidance
and push ``w(t) (eps_hat - eps)`` back through dz/dx, never through the UNet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from t23d.common.errors import ConfigError, T23dError
from t23d.common.schedule import Schedule

if TYPE_CHECKING:
    import torch


@dataclass
class GuidanceOutput:
    """Result of one guidance evaluation."""

    loss: torch.Tensor
    """Scalar; ``loss.backward()`` puts the SDS gradient w(t)(eps_hat - eps) (after clipping, divided by the
    batch size B) on the encoded images z and from there, through the encoder, on ``images``."""
    grad_norm: float
    """L2 norm over the whole batch of the SDS gradient w(t)(eps_hat - eps), before clipping."""
    timesteps: torch.Tensor
    """``[B]`` int64, the sampled diffusion timesteps t (on CPU)."""


class Guidance(Protocol):
    """A frozen 2D prior that scores renders of the 3D scene."""

    num_views: int
    """Views the prior denoises together: 1 for single-image priors; a multi-view prior (MVDream: 4) gets
    groups of ``num_views`` views at fixed relative azimuths (see ``sample_random_views``)."""

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
        """SDS loss for a batch of renders.

        Args:
            images: ``[B, H, W, 3]`` float in [0, 1], sRGB-encoded display values, requires grad. Any H, W.
            azimuth_deg: ``[B]`` camera azimuths in degrees (0 = front), selects the view prompt.
            elevation_deg: ``[B]`` camera elevations in degrees.
            step: optimisation step, evaluates the timestep-range schedules.
            generator: CPU generator; the only source of randomness (t, then noise), so runs resume
                bit-exactly.
            c2w: ``[B, 4, 4]`` camera-to-world matrices of the views (t23d's frame, OpenGL axes); camera-
                conditioned priors need them, others ignore them.
        """
        ...

    latent_channels: int
    """Channels of the prior's latent space that a field can render (Latent-NeRF; 4 for Stable Diffusion
    and MVDream), or 0 for pixel-space priors. Only when > 0 do the three methods below exist."""

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
        """As :meth:`compute` for renders of the latent itself, ``latents [B, h, w, latent_channels]``."""
        ...

    def latent_to_rgb(self, latent: torch.Tensor) -> torch.Tensor:
        """Approximate colour ``[..., 3]`` in [0, 1] of latents ``[..., latent_channels]`` (differentiable)."""
        ...

    def rgb_to_latent(self, rgb: torch.Tensor) -> torch.Tensor:
        """A latent ``[..., latent_channels]`` of colour ``[..., 3]`` (differentiable), e.g. for the background."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run.json: kind, model id/path, dtype, device, guidance scale, ..."""
        ...

    def release(self) -> None:
        """Free the prior's memory; the object is unusable afterwards."""
        ...


def combine_cfg(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance: ``eps_uncond + s * (eps_cond - eps_uncond)`` (any matching shapes)."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def perpendicular_component(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The part of each sample of ``x`` orthogonal to the same sample of ``y``: ``x - (<x, y> / <y, y>) y``.

    ``x``, ``y``: ``[B, ...]``; the inner products run over every dimension but the first. ``<y, y>`` is
    clamped to ``eps`` (y = 0 leaves x unchanged).
    """
    dims = tuple(range(1, x.ndim))
    dot = (x * y).sum(dim=dims, keepdim=True)  # [B, 1, ...]
    norm2 = (y * y).sum(dim=dims, keepdim=True).clamp(min=eps)
    return x - (dot / norm2) * y


def combine_perp_neg(
    eps_uncond: torch.Tensor,
    eps_pos: torch.Tensor,
    eps_neg: torch.Tensor,
    negative_weight: torch.Tensor,
    guidance_scale: float,
) -> torch.Tensor:
    """Perp-Neg guidance (Armandpour et al. 2023, eq. 7): the negatives' directions orthogonal to the positive's.

    ``eps = eps_uncond + s * (e_pos + sum_k w_k * perp(e_k, e_pos))`` with ``e_pos = eps_pos - eps_uncond``
    and ``e_k = eps_neg[:, k] - eps_uncond``; a negative weight ``w_k < 0`` pushes away from negative k
    without cancelling what it shares with the positive prompt.

    Args:
        eps_uncond, eps_pos: ``[B, C, h, w]`` predictions for the unconditional and positive prompts.
        eps_neg: ``[B, K, C, h, w]`` predictions for the K negative prompts.
        negative_weight: ``[B, K]`` weights w_k.
        guidance_scale: s.
    """
    e_pos = eps_pos - eps_uncond  # [B, C, h, w]
    guided = e_pos
    for k in range(eps_neg.shape[1]):
        e_neg = eps_neg[:, k] - eps_uncond
        w = negative_weight[:, k].view(-1, *([1] * (e_pos.ndim - 1))).to(e_pos.dtype)
        guided = guided + w * perpendicular_component(e_neg, e_pos)
    return eps_uncond + guidance_scale * guided


def rescale_cfg(eps_cfg: torch.Tensor, eps_cond: torch.Tensor, guidance_rescale: float) -> torch.Tensor:
    """CFG rescale (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", eq. 15-16).

    ``rescaled = eps_cfg * std(eps_cond) / std(eps_cfg)`` per sample (std over every dimension but the
    first), then ``phi * rescaled + (1 - phi) * eps_cfg`` with ``phi = guidance_rescale`` in [0, 1]:
    at phi = 1 the guided prediction has exactly the conditional prediction's std, undoing the
    over-exposure that large guidance scales cause; phi = 0 is plain CFG.
    """
    if guidance_rescale == 0.0:
        return eps_cfg
    dims = tuple(range(1, eps_cfg.ndim))
    std_cond = eps_cond.std(dim=dims, keepdim=True)
    std_cfg = eps_cfg.std(dim=dims, keepdim=True).clamp(min=1e-12)
    rescaled = eps_cfg * (std_cond / std_cfg)
    return guidance_rescale * rescaled + (1.0 - guidance_rescale) * eps_cfg


def timestep_weight(alpha_bar: torch.Tensor, weighting: str) -> torch.Tensor:
    """SDS weighting w(t) from ``alpha_bar = alphas_cumprod[t]`` (``[B] -> [B]``), see ``Weighting``."""
    if weighting == "sds":
        return 1.0 - alpha_bar
    if weighting == "uniform":
        return alpha_bar.new_ones(alpha_bar.shape)
    if weighting == "fantasia3d":
        return alpha_bar.sqrt() * (1.0 - alpha_bar)
    raise ConfigError(
        f"config key 'guidance.weighting': invalid value {weighting!r}; accepted: 'sds', 'uniform', 'fantasia3d'"
    )


def step_range(
    min_step_percent: Schedule, max_step_percent: Schedule, step: int, num_train_timesteps: int
) -> tuple[int, int]:
    """Inclusive timestep range ``[min_step, max_step]`` at optimisation ``step``.

    ``min_step = int(T * min_percent)``, ``max_step = min(int(T * max_percent), T - 1)`` as in threestudio.
    Raises :class:`ConfigError` unless ``0 <= min_percent <= max_percent <= 1``.
    """
    lo, hi = float(min_step_percent.at(step)), float(max_step_percent.at(step))
    if not (0.0 <= lo <= hi <= 1.0) or math.isnan(lo) or math.isnan(hi):
        raise ConfigError(
            f"config keys 'guidance.min_step_percent'/'guidance.max_step_percent' give {lo!r}/{hi!r} at step "
            f"{step}; accepted: 0 <= min_step_percent <= max_step_percent <= 1"
        )
    max_step = min(int(num_train_timesteps * hi), num_train_timesteps - 1)
    min_step = min(int(num_train_timesteps * lo), max_step)
    return min_step, max_step


def sample_timesteps(
    batch_size: int, min_step: int, max_step: int, generator: torch.Generator
) -> torch.Tensor:
    """``[B]`` int64 timesteps drawn uniformly from ``[min_step, max_step]`` (inclusive) on CPU."""
    import torch

    return torch.randint(min_step, max_step + 1, (batch_size,), generator=generator, dtype=torch.long)


def eps_from_v(v: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Noise from a v-prediction: ``eps = sqrt(a) v + sqrt(1 - a) x_t`` with ``a = alpha_bar`` ``[B,1,1,1]``."""
    return alpha_bar.sqrt() * v + (1.0 - alpha_bar).sqrt() * x_t


def sds_loss(z: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Reparametrised SDS loss: ``0.5 * ||z - sg(z - grad)||^2 / B``, whose gradient w.r.t. z is ``grad / B``.

    Args:
        z: ``[B, C, h, w]`` encoded images, differentiable.
        grad: ``[B, C, h, w]`` SDS gradient (no grad).
    """
    import torch.nn.functional as F

    z = z.float()
    target = (z - grad.float()).detach()
    return 0.5 * F.mse_loss(z, target, reduction="sum") / z.shape[0]


def score_distillation(
    z: torch.Tensor,
    t: torch.Tensor,
    generator: torch.Generator,
    alphas_cumprod: torch.Tensor,
    predict_noise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    weighting: str,
    grad_clip: float | None,
) -> GuidanceOutput:
    """The SDS step every prior shares, for encodings ``z [B, C, h, w]`` (differentiable) at timesteps
    ``t [B]`` (int64, CPU, drawn by the caller): draw eps from ``generator``, noise ``z`` to ``z_t``, ask
    ``predict_noise(z_t, t_on_device)`` for the guided eps_hat (no grad) and return the loss whose
    gradient on ``z`` is ``w(t) (eps_hat - eps)`` (clipped to ``grad_clip`` when set, divided by B)."""
    import torch

    batch = z.shape[0]
    noise = torch.randn(z.shape, generator=generator, dtype=torch.float32).to(z.device)  # [B, C, h, w]
    t_dev = t.to(z.device)
    alpha_bar = alphas_cumprod[t_dev].view(batch, 1, 1, 1)  # [B, 1, 1, 1]
    with torch.no_grad():
        z_t = alpha_bar.sqrt() * z.detach().float() + (1.0 - alpha_bar).sqrt() * noise  # [B, C, h, w]
        eps_hat = predict_noise(z_t, t_dev)
        w = timestep_weight(alpha_bar, weighting)  # [B, 1, 1, 1]
        grad = torch.nan_to_num(w * (eps_hat - noise))  # [B, C, h, w]
        grad_norm = float(torch.linalg.vector_norm(grad))
        if grad_clip is not None:
            grad = grad.clamp(-grad_clip, grad_clip)
    return GuidanceOutput(loss=sds_loss(z, grad), grad_norm=grad_norm, timesteps=t)


def check_inputs(images: torch.Tensor, azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor) -> None:
    """Raise :class:`T23dError` unless images is ``[B, H, W, 3]`` and both angles are ``[B]``."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise T23dError(
            f"guidance expects images of shape [B, H, W, 3] with B >= 1; got {tuple(images.shape)}"
        )
    b = images.shape[0]
    for name, value in (("azimuth_deg", azimuth_deg), ("elevation_deg", elevation_deg)):
        if tuple(value.shape) != (b,):
            raise T23dError(f"guidance expects {name} of shape [{b}]; got {tuple(value.shape)}")


@dataclass
class ImageCondition:
    """The input view of an image -> 3D run, as an image-conditioned prior (Zero123) needs it.

    The prior sees every rendered view relative to this camera (t23d's spherical convention, see
    :mod:`t23d.render.cameras`: azimuth 0 looks at the object's front from -Y, elevation above the XY
    plane, distance from the origin in world units).
    """

    image: torch.Tensor
    """``[H, W, 3]`` float in [0, 1], sRGB: the object composited over white (what Zero123 was trained on)."""
    elevation_deg: float
    """Elevation of the input view in degrees."""
    azimuth_deg: float
    """Azimuth of the input view in degrees (0 for the front)."""
    distance: float
    """Distance of the input view's camera from the origin, in world units."""
