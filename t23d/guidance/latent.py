"""The linear map between Stable Diffusion's latent space and RGB (Latent-NeRF's latent <-> RGB approximation).

Stable Diffusion's VAE (SD 1.x and 2.x share its architecture and latent statistics) maps a 8x8 pixel
patch to 4 latent channels. Averaged over a patch, the latent is close to a linear function of the
colour: the community-fitted factors below (fitted on SD 1.4 decodes, used by Latent-NeRF to preview
latents) give ``rgb ~= latent @ LATENT_RGB_FACTORS`` in [-1, 1] for the *scaled* latents the UNet sees
(VAE posterior times ``scaling_factor``). t23d uses it for two things in latent mode: the target of the
RGB head that export and previews read, and the latent of the (RGB) background behind the object.
It is an approximation: fine detail and saturated colours are lost; it says nothing about other VAEs.
"""

from __future__ import annotations

import torch

LATENT_RGB_FACTORS = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
"""``[4, 3]``: row c gives the RGB (in [-1, 1]) contributed by one unit of latent channel c."""


def _factors(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(LATENT_RGB_FACTORS, dtype=like.dtype, device=like.device)  # [4, 3]


def latent_to_rgb(latent: torch.Tensor) -> torch.Tensor:
    """Approximate colour ``[..., 3]`` in [0, 1] (sRGB-encoded) of scaled SD latents ``[..., 4]``; clamped."""
    rgb = latent @ _factors(latent)  # [..., 3] in about [-1, 1]
    return ((rgb + 1.0) * 0.5).clamp(0.0, 1.0)


def rgb_to_latent(rgb: torch.Tensor) -> torch.Tensor:
    """The least-norm scaled latent ``[..., 4]`` whose :func:`latent_to_rgb` is ``rgb [..., 3]`` in [0, 1].

    The inverse of a 4 -> 3 map is not unique; the pseudo-inverse picks the latent with no component
    the colour cannot see (differentiable, so a background learnt in RGB gets SDS gradients through it).
    """
    pinv = torch.linalg.pinv(_factors(rgb))  # [3, 4]
    return (rgb * 2.0 - 1.0) @ pinv
