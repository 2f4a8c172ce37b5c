"""A colour field for textured meshes: hash-grid encoding of a 3D point -> small MLP -> sRGB.

The refine stage queries it at the rasterised surface points of the mesh (Magic3D's "neural colour
field"), so texture detail is not limited by a UV atlas while optimising, and it is baked into a UV
texture only at export. It lives in the same cube ``[-bound, bound]^3`` as the stage-1 field and is
initialised by distilling that field's colours (:func:`t23d.optimise.refine.distill_colors`).
Colours are sRGB-encoded values in [0, 1]; world frame +Z up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from t23d.field.hashgrid import HashGridConfig, HashGridEncoding
from t23d.field.mlp import make_mlp


@dataclass
class ColorFieldConfig:
    """Hash-grid colour field of the refine stage."""

    grid: HashGridConfig = field(
        default_factory=lambda: HashGridConfig(n_levels=16, log2_hashmap_size=19, max_resolution=4096)
    )
    """The multi-resolution hash-grid encoding (finer than stage 1's: the refine stage renders at 512 px)."""
    hidden_dim: int = 64
    """Width of the MLP's hidden layers."""
    num_hidden_layers: int = 1
    """Hidden layers of the MLP."""


class ColorField(nn.Module):
    """sRGB colour [N, 3] of world points [N, 3] inside ``[-bound, bound]^3`` (clamped to it)."""

    def __init__(
        self,
        cfg: ColorFieldConfig,
        bound: float,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.bound = float(bound)
        self.encoding = HashGridEncoding(cfg.grid, device=device, generator=generator)
        self.mlp = make_mlp(
            self.encoding.output_dim,
            3,
            cfg.hidden_dim,
            cfg.num_hidden_layers,
            generator,
            output_activation="sigmoid",
        )
        self.to(device)

    @property
    def implementation(self) -> str:
        """Hash-grid implementation in use (``tcnn``, ``cpp`` or ``torch``)."""
        return self.encoding.implementation

    def forward(self, points: Tensor) -> Tensor:
        """Colour [N, 3] in [0, 1] of ``points`` [N, 3]."""
        unit = ((points + self.bound) / (2.0 * self.bound)).clamp(0.0, 1.0)  # [N, 3]
        return self.mlp(self.encoding(unit))
