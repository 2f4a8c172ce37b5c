"""DreamFusion's shading modes: albedo, Lambertian with a random point light, and textureless.

Per step a mode is drawn with configurable probabilities; the light sits near the camera
(DreamFusion samples it around the camera position) so that the lit side is visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

ShadingMode = Literal["albedo", "lambertian", "textureless"]


@dataclass
class ShadingConfig:
    """Random shading per optimisation step (DreamFusion Sec. 3.1)."""

    albedo_probability: float = 0.2
    """Probability of rendering plain albedo."""
    lambertian_probability: float = 0.4
    """Probability of Lambertian shading with a random point light."""
    textureless_probability: float = 0.4
    """Probability of shading a white (textureless) surface, which forces geometry to carry the shape."""
    albedo_only_steps: int = 1000
    """Use albedo only before this step (lets colour form before shading kicks in)."""
    ambient: float = 0.1
    """Ambient light fraction."""
    light_distance_range: tuple[float, float] = (0.8, 1.5)
    """Light distance as a fraction of the camera's distance."""
    light_jitter: float = 0.3
    """Std-dev (world units, relative to camera distance) of the light's offset around the camera direction."""


@dataclass
class Shading:
    """What one rendered view is shaded with."""

    mode: ShadingMode
    light_positions: Tensor | None = None
    """[B, 3] world positions of the point lights (for lambertian/textureless)."""
    ambient: float = 0.1


def sample_shading(
    cfg: ShadingConfig, step: int, camera_positions: Tensor, generator: torch.Generator
) -> Shading:
    """Draw the shading mode and light positions for a batch of cameras at ``camera_positions`` [B, 3]."""
    u = float(torch.rand((), generator=generator))
    n = camera_positions.shape[0]
    dist_u = torch.rand(n, 1, generator=generator)
    jitter = torch.randn(n, 3, generator=generator)
    if step < cfg.albedo_only_steps:
        return Shading("albedo", ambient=cfg.ambient)
    total = cfg.albedo_probability + cfg.lambertian_probability + cfg.textureless_probability
    if total <= 0:
        return Shading("albedo", ambient=cfg.ambient)
    if u < cfg.albedo_probability / total:
        return Shading("albedo", ambient=cfg.ambient)
    mode: ShadingMode = (
        "lambertian" if u < (cfg.albedo_probability + cfg.lambertian_probability) / total else "textureless"
    )
    cam = camera_positions.cpu()
    cam_dist = cam.norm(dim=-1, keepdim=True)
    lo, hi = cfg.light_distance_range
    direction = torch.nn.functional.normalize(cam / cam_dist + cfg.light_jitter * jitter, dim=-1)
    light = direction * cam_dist * (lo + (hi - lo) * dist_u)
    return Shading(mode, light.to(camera_positions.device), cfg.ambient)


def shade(
    albedo: Tensor,
    normals: Tensor | None,
    points: Tensor,
    light_positions: Tensor | None,
    mode: ShadingMode,
    ambient: float,
) -> Tensor:
    """Colour [N, 3] of samples with ``albedo`` [N, 3], unit ``normals`` [N, 3] at ``points`` [N, 3].

    ``light_positions`` is per sample [N, 3]. Lambertian: ``albedo * (ambient + (1-ambient) max(0, n.l))``;
    textureless: the same with a white albedo.
    """
    if mode == "albedo":
        return albedo
    assert normals is not None and light_positions is not None
    to_light = torch.nn.functional.normalize(light_positions - points, dim=-1)
    diffuse = (normals * to_light).sum(-1, keepdim=True).clamp(min=0.0)
    light = ambient + (1.0 - ambient) * diffuse  # [N, 1]
    if mode == "lambertian":
        return albedo * light
    return light.expand(-1, 3)
