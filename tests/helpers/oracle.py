"""Test helper (never a product prior): a guidance whose noise prediction is the analytic optimum for
a known target, so SDS reduces to pulling renders toward renders of that target.

For ``x_t = sqrt(a) x + sqrt(1 - a) eps``, the MMSE-optimal noise prediction when the clean image is
known to be ``x*`` is ``eps_hat = (x_t - sqrt(a) x*) / sqrt(1 - a)``; the SDS gradient
``w(t) (eps_hat - eps)`` is then ``w(t) sqrt(a / (1 - a)) (x - x*)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def oracle_run_config(
    cfg: Any, prompt: str, steps: int, distance: float, fov_deg: float, **changes: Any
) -> Any:
    """``cfg`` (a ``GenerateConfig``) set up for an oracle run on CPU: every view at ``distance`` with
    ``fov_deg`` (what the oracle assumes) in 32 px renders, a white background, the orientation and sparsity
    regularisers off, no end-of-run export, no periodic checkpoint; ``changes`` replace any field."""
    from t23d.common.schedule import Constant
    from t23d.field.background import ConstantBackground
    from t23d.optimise.regularisers import RegularisersConfig
    from t23d.render.cameras import RandomCameraConfig, WorldDistance

    fields: dict[str, Any] = {
        "prompt": prompt,
        "steps": steps,
        "device": "cpu",
        "export_at_end": False,
        "background": ConstantBackground((1.0, 1.0, 1.0)),
        "camera": RandomCameraConfig(
            resolution=32, distance=WorldDistance((distance, distance)), fov_range=(fov_deg, fov_deg)
        ),
        "regularisers": RegularisersConfig(orientation=Constant(0.0), sparsity=Constant(0.0)),
        "checkpoint_every": 1000,
    }
    return dataclasses.replace(cfg, **{**fields, **changes})


@dataclass
class HeldOutViews:
    """A trained oracle run seen from views off the training samples, beside the target sphere."""

    render: dict[str, Tensor]
    """The field's renders (``render_images``: ``rgb [V, R, R, 3]``, ``opacity [V, R, R]``, ...)."""
    target_rgb: Tensor
    """The target sphere's renders ``[V, R, R, 3]`` on white."""
    both: Tensor
    """``[V, R, R]`` bool: pixels inside both silhouettes (opacity > 0.5)."""
    iou: float
    """Silhouette IoU of the field (opacity > 0.5) and the target sphere."""

    def colour_error(self) -> float:
        """Mean absolute RGB error inside both silhouettes."""
        return float((self.render["rgb"] - self.target_rgb).abs()[self.both].mean())


def held_out_views(
    run_dir: Path, distance: float, fov_deg: float, num_views: int, resolution: int, radius: float = 0.5
) -> HeldOutViews:
    """Load a generate run's latest state and render it from ``num_views`` orbit views at 30 degrees of
    elevation starting at azimuth 17 (off the training distribution's samples), beside the sphere of
    ``radius``."""
    from t23d.optimise.generate import load_generate_state
    from t23d.render.cameras import orbit_cameras
    from t23d.render.volume import render_images

    cfg, state = load_generate_state(run_dir, torch.device("cpu"))
    views = orbit_cameras(
        num_views, resolution, distance, fov_deg, elevation_deg=30.0, start_azimuth_deg=17.0
    )
    out = render_images(state.field, state.background, views.cameras, cfg.render, state.occupancy)
    target_rgb, target_mask = sphere_target(views.cameras, radius=radius)
    pred, true = out["opacity"] > 0.5, target_mask > 0.5
    iou = float((pred & true).sum() / (pred | true).sum())
    return HeldOutViews(out, target_rgb, pred & true, iou)
