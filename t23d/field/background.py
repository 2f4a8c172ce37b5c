"""Backgrounds: what a ray sees when it leaves the field's bounds.

Colours are sRGB-encoded values in [0, 1]. Directions are unit world-space ray directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from t23d.field.encoding import spherical_harmonics
from t23d.field.mlp import make_mlp


@dataclass
class ConstantBackground:
    """A fixed colour."""

    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """RGB in [0, 1]."""


@dataclass
class RandomBackground:
    """A random solid colour per image each training step (a constant at evaluation).

    Used for photos with alpha: the field cannot explain the background and must be transparent there.
    """

    eval_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Colour used outside training."""


@dataclass
class MLPBackground:
    """A small MLP of the view direction (DreamFusion's learned environment)."""

    hidden_dim: int = 32
    """Width of the hidden layer."""
    sh_degree: int = 3
    """Spherical-harmonics degree of the direction encoding (low = smooth background)."""


@dataclass
class HashEnvBackground:
    """A detailed environment map at infinity: a hash-grid encoding of the view direction and a small MLP.

    For photos of an object in its surroundings (no masks): what lies outside the field's cube is
    explained as a function of direction, so it does not turn into fog inside the cube.
    """

    n_levels: int = 8
    """Hash-grid levels of the direction encoding."""
    log2_hashmap_size: int = 16
    """log2 of the per-level table size."""
    max_resolution: int = 512
    """Finest grid resolution over the direction cube ``[-1, 1]^3``."""
    hidden_dim: int = 32
    """Width of the MLP's hidden layer."""


@dataclass
class ContractedBackground:
    """The surroundings as a coarse NeRF of everything beyond the field's box (:mod:`t23d.field.outer`):
    for photos of an object in its surroundings (no masks), where walls, floors and trees at finite
    distances shift with the camera and a direction-only environment cannot hold them. Never exported.
    """

    num_samples: int = 32
    """Samples per ray beyond the box, evenly spaced in 1 / distance."""
    far: float = 1000.0
    """Farthest sample, in radii of the sphere around the box; what lies beyond is a smooth sky."""
    n_levels: int = 8
    """Hash-grid levels over the contracted space."""
    log2_hashmap_size: int = 17
    """log2 of the per-level table size."""
    max_resolution: int = 256
    """Finest grid resolution over the contracted space ``[-2, 2]^3``."""
    hidden_dim: int = 32
    """Width of the MLPs' hidden layers."""


BackgroundConfig = (
    ConstantBackground | RandomBackground | MLPBackground | HashEnvBackground | ContractedBackground
)


class Background(nn.Module):
    """Background model built from a :data:`BackgroundConfig`."""

    def __init__(
        self,
        cfg: BackgroundConfig,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        aabb: Tensor | None = None,
    ):
        """``aabb`` [2, 3]: the field's box, needed by :class:`ContractedBackground` only."""
        super().__init__()
        self.cfg = cfg
        self.mlp: nn.Module | None = None
        self.encoding: nn.Module | None = None
        self.outer: nn.Module | None = None
        if isinstance(cfg, ContractedBackground):
            from t23d.field.outer import OuterField

            if aabb is None:
                raise ValueError("ContractedBackground needs the field's aabb")
            self.outer = OuterField(
                aabb, num_samples=cfg.num_samples, far=cfg.far, n_levels=cfg.n_levels,
                log2_hashmap_size=cfg.log2_hashmap_size, max_resolution=cfg.max_resolution,
                hidden_dim=cfg.hidden_dim, generator=generator, device=device,
            )  # fmt: skip
        if isinstance(cfg, MLPBackground):
            self.mlp = make_mlp(
                cfg.sh_degree**2, 3, cfg.hidden_dim, 1, generator, output_activation="sigmoid"
            )
        elif isinstance(cfg, HashEnvBackground):
            from t23d.field.hashgrid import HashGridConfig, HashGridEncoding

            grid = HashGridConfig(
                n_levels=cfg.n_levels,
                log2_hashmap_size=cfg.log2_hashmap_size,
                base_resolution=16,
                max_resolution=cfg.max_resolution,
            )
            self.encoding = HashGridEncoding(grid, device=device, generator=generator)
            self.mlp = make_mlp(grid.output_dim, 3, cfg.hidden_dim, 1, generator, output_activation="sigmoid")

    def forward(
        self,
        directions: Tensor,
        image_ids: Tensor | None = None,
        generator: torch.Generator | None = None,
        origins: Tensor | None = None,
    ) -> Tensor:
        """Colour for rays ``directions`` [R, 3] -> [R, 3].

        ``image_ids`` [R] and ``generator`` are used by :class:`RandomBackground` during training to draw
        one colour per distinct id (per image, or per ray when ids are unique). ``origins`` [R, 3] are
        required by :class:`ContractedBackground` (``generator`` then jitters its samples).
        """
        cfg = self.cfg
        if self.outer is not None:
            if origins is None:
                raise ValueError("ContractedBackground needs ray origins")
            return self.outer(origins, directions, generator if self.training else None)
        if isinstance(cfg, MLPBackground):
            assert self.mlp is not None
            return self.mlp(spherical_harmonics(directions, cfg.sh_degree))
        if isinstance(cfg, HashEnvBackground):
            assert self.mlp is not None and self.encoding is not None
            return self.mlp(self.encoding((directions + 1) * 0.5))
        if isinstance(cfg, RandomBackground) and self.training and generator is not None:
            n_images = int(image_ids.max().item()) + 1 if image_ids is not None and image_ids.numel() else 1
            colors = torch.rand(n_images, 3, generator=generator).to(directions.device)
            ids = image_ids if image_ids is not None else torch.zeros(len(directions), dtype=torch.long)
            return colors[ids.to(directions.device)]
        color = cfg.color if isinstance(cfg, ConstantBackground) else cfg.eval_color
        return torch.tensor(color, dtype=directions.dtype, device=directions.device).expand(
            len(directions), 3
        )
