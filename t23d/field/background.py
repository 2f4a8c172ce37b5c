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


BackgroundConfig = ConstantBackground | RandomBackground | MLPBackground


class Background(nn.Module):
    """Background model built from a :data:`BackgroundConfig`."""

    def __init__(self, cfg: BackgroundConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        self.mlp = None
        if isinstance(cfg, MLPBackground):
            self.mlp = make_mlp(cfg.sh_degree**2, 3, cfg.hidden_dim, 1, generator, output_activation="sigmoid")

    def forward(
        self, directions: Tensor, image_ids: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Colour for rays ``directions`` [R, 3] -> [R, 3].

        ``image_ids`` [R] (which image each ray belongs to) and ``generator`` are used by
        :class:`RandomBackground` during training to draw one colour per image.
        """
        cfg = self.cfg
        if isinstance(cfg, MLPBackground):
            assert self.mlp is not None
            return self.mlp(spherical_harmonics(directions, cfg.sh_degree))
        if isinstance(cfg, RandomBackground) and self.training and generator is not None:
            n_images = int(image_ids.max().item()) + 1 if image_ids is not None and image_ids.numel() else 1
            colors = torch.rand(n_images, 3, generator=generator).to(directions.device)
            ids = image_ids if image_ids is not None else torch.zeros(len(directions), dtype=torch.long)
            return colors[ids.to(directions.device)]
        color = cfg.color if isinstance(cfg, ConstantBackground) else cfg.eval_color
        return torch.tensor(color, dtype=directions.dtype, device=directions.device).expand(len(directions), 3)
