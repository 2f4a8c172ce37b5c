"""Test helper (never a product prior): a guidance whose noise prediction is the analytic optimum for
a known target, so SDS reduces to pulling renders toward renders of that target.

For ``x_t = sqrt(a) x + sqrt(1 - a) eps``, the MMSE-optimal noise prediction when the clean image is
known to be ``x*`` is ``eps_hat = (x_t - sqrt(a) x*) / sqrt(1 - a)``; the SDS gradient
``w(t) (eps_hat - eps)`` is then ``w(t) sqrt(a / (1 - a)) (x - x*)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from t23d.render.cameras import Cameras, look_at, spherical_to_position
from t23d.render.rays import camera_rays


@dataclass
class OracleOutput:
    loss: Tensor
    grad_norm: float
    timesteps: Tensor


def sphere_target(cameras: Cameras, radius: float = 0.5, background: float = 1.0) -> tuple[Tensor, Tensor]:
    """Analytic renders of a coloured sphere at the origin: rgb [B, H, W, 3] on ``background``, mask [B, H, W]."""
    rays = camera_rays(cameras)
    o, d = rays.origins, rays.directions
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - radius**2
    disc = b * b - c
    hit = disc > 0
    t = -b - torch.sqrt(disc.clamp(min=0))
    p = o + t[:, None] * d
    n = p / radius
    # colour: red-ish on top (+z), blue-ish below, green varies with x
    rgb = torch.stack([0.5 + 0.4 * n[:, 2], 0.5 + 0.3 * n[:, 0], 0.5 - 0.4 * n[:, 2]], -1).clamp(0, 1)
    rgb = torch.where(hit[:, None], rgb, torch.full_like(rgb, background))
    shape = (len(cameras), cameras.height, cameras.width)
    return rgb.reshape(*shape, 3), hit.float().reshape(shape)


def fixed_cameras(azimuth: Tensor, elevation: Tensor, distance: float, fov_deg: float, res: int) -> Cameras:
    pos = spherical_to_position(azimuth, elevation, torch.full_like(azimuth, distance))
    c2w = look_at(pos, torch.zeros_like(pos))
    f = 0.5 * res / torch.tan(torch.deg2rad(torch.tensor(fov_deg)) / 2)
    intr = torch.tensor([float(f), float(f), res / 2, res / 2]).expand(len(azimuth), 4)
    return Cameras(c2w, intr, res, res)


class OracleGuidance:
    """Oracle prior for a sphere target; cameras must have a fixed distance and fov (given here)."""

    num_views = 1

    def __init__(self, distance: float, fov_deg: float, radius: float = 0.5, num_train_timesteps: int = 1000):
        self.distance, self.fov, self.radius = distance, fov_deg, radius
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, num_train_timesteps) ** 2
        self.alphas_cumprod = torch.cumprod(1 - betas, 0)
        self.num_train_timesteps = num_train_timesteps

    def compute(
        self,
        images: Tensor,
        azimuth_deg: Tensor,
        elevation_deg: Tensor,
        step: int,
        generator: torch.Generator,
        *,
        c2w: Tensor | None = None,
    ) -> OracleOutput:
        target = self.target(azimuth_deg, elevation_deg, images.shape[1])
        return self.sds(images * 2 - 1, target * 2 - 1, generator)

    def target(self, azimuth_deg: Tensor, elevation_deg: Tensor, res: int) -> Tensor:
        """The sphere seen from the given views at ``res`` px: rgb ``[B, res, res, 3]`` on white."""
        cams = fixed_cameras(azimuth_deg, elevation_deg, self.distance, self.fov, res)
        return sphere_target(cams, self.radius)[0]

    def sds(self, x: Tensor, x_star: Tensor, generator: torch.Generator) -> OracleOutput:
        """SDS pulling ``x`` toward ``x_star`` (same shape) with the optimal noise prediction (module doc),
        ``w(t) = 1 - a``, the gradient clamped to [-1, 1]. Draws t, then the noise, from ``generator``."""
        bsz = x.shape[0]
        t = torch.randint(20, 980, (bsz,), generator=generator)
        noise = torch.randn(x.shape, generator=generator)
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x.detach() + (1 - a).sqrt() * noise
        eps_hat = (x_t - a.sqrt() * x_star) / (1 - a).sqrt()
        grad = ((1 - a) * (eps_hat - noise)).clamp(-1, 1)
        loss = 0.5 * ((x - (x - grad).detach()) ** 2).sum() / bsz
        return OracleOutput(loss, float(grad.norm()), t)

    def describe(self) -> dict:
        return {"kind": "oracle-sphere (test helper)"}


class LatentOracleGuidance(OracleGuidance):
    """The oracle in Stable Diffusion's latent space (Latent-NeRF mode): the target is the latent of the
    sphere's colours under the linear latent <-> RGB map, so a field whose latent render converges there
    and whose RGB head learns the latent's colour reproduces the sphere in RGB."""

    latent_channels = 4

    def latent_to_rgb(self, latent: Tensor) -> Tensor:
        from t23d.guidance.latent import latent_to_rgb

        return latent_to_rgb(latent)

    def rgb_to_latent(self, rgb: Tensor) -> Tensor:
        from t23d.guidance.latent import rgb_to_latent

        return rgb_to_latent(rgb)

    def compute_latents(
        self,
        latents: Tensor,
        azimuth_deg: Tensor,
        elevation_deg: Tensor,
        step: int,
        generator: torch.Generator,
        *,
        c2w: Tensor | None = None,
    ) -> OracleOutput:
        z_star = self.rgb_to_latent(self.target(azimuth_deg, elevation_deg, latents.shape[1]))  # [B, H, W, 4]
        return self.sds(latents, z_star, generator)
