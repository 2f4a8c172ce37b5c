"""The NeRF field: hash-grid encoding -> density MLP -> (density, features) -> colour head.

World frame: +Z up; the field lives in the axis-aligned cube ``[-bound, bound]^3`` and is empty
outside it. Colours are sRGB-encoded values in [0, 1] (see ``t23d`` package docstring).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from t23d.field.encoding import spherical_harmonics
from t23d.field.hashgrid import HashGridConfig, HashGridEncoding
from t23d.field.mlp import make_mlp


@dataclass
class DensityBlobConfig:
    """Density added at initialisation-independent positions so optimisation starts from a centred blob.

    Magic3D's form: ``blob(x) = density * exp(-|x|^2 / (2 * radius^2))`` (in pre-activation units).
    """

    kind: Literal["none", "gaussian"] = "gaussian"
    """``gaussian`` adds the blob; ``none`` disables it (photo reconstruction)."""
    density: float = 10.0
    """Peak pre-activation density at the centre."""
    radius: float = 0.3
    """Standard deviation of the blob in world units."""


@dataclass
class FieldConfig:
    """Hash-grid NeRF field."""

    bound: float = 1.0
    """Half-size of the field's cube ``[-bound, bound]^3`` in world units."""
    grid: HashGridConfig = field(default_factory=HashGridConfig)
    """The multi-resolution hash-grid encoding."""
    hidden_dim: int = 64
    """Width of the density MLP's hidden layers."""
    num_hidden_layers: int = 1
    """Hidden layers of the density MLP."""
    geo_feat_dim: int = 15
    """Features passed from the density MLP to the colour head."""
    color_hidden_dim: int = 64
    """Width of the colour head's hidden layers."""
    color_num_hidden_layers: int = 2
    """Hidden layers of the colour head."""
    view_dependent: bool = False
    """Condition colour on the view direction (photos); ``False`` gives an albedo field (SDS)."""
    sh_degree: int = 4
    """Spherical-harmonics degree of the view-direction encoding when ``view_dependent``."""
    density_activation: Literal["softplus", "exp"] = "exp"
    """Activation turning the raw MLP output into density (``exp`` is truncated: gradient clamped)."""
    density_bias: float = -1.0
    """Added to the raw density before activation (negative = start mostly empty)."""
    blob: DensityBlobConfig = field(default_factory=DensityBlobConfig)
    """Initial density blob (DreamFusion / Magic3D)."""


class _TruncExp(torch.autograd.Function):
    """``exp`` whose backward clamps its input to 15, as instant-ngp, to avoid overflowing gradients."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15))


class NeRFField(nn.Module):
    """Density and colour of points in ``[-bound, bound]^3``."""

    def __init__(
        self, cfg: FieldConfig, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ):
        super().__init__()
        self.cfg = cfg
        self.encoding = HashGridEncoding(cfg.grid, device=device, generator=generator)
        self.density_mlp = make_mlp(
            self.encoding.output_dim, 1 + cfg.geo_feat_dim, cfg.hidden_dim, cfg.num_hidden_layers, generator
        )
        color_in = cfg.geo_feat_dim + (cfg.sh_degree**2 if cfg.view_dependent else 0)
        self.color_mlp = make_mlp(
            color_in,
            3,
            cfg.color_hidden_dim,
            cfg.color_num_hidden_layers,
            generator,
            output_activation="sigmoid",
        )
        self.to(device)

    @property
    def implementation(self) -> str:
        """Hash-grid implementation in use (``tcnn``, ``cpp`` or ``torch``)."""
        return self.encoding.implementation

    def aabb(self) -> Tensor:
        """Bounds ``[2, 3]``: min and max corners of the field's cube."""
        b = self.cfg.bound
        return torch.tensor([[-b, -b, -b], [b, b, b]], dtype=torch.float32)

    def _blob(self, x: Tensor) -> Tensor:
        blob = self.cfg.blob
        if blob.kind == "none":
            return torch.zeros_like(x[..., 0])
        return blob.density * torch.exp(-(x * x).sum(-1) / (2 * blob.radius**2))

    def _activate(self, raw: Tensor) -> Tensor:
        if self.cfg.density_activation == "exp":
            return _TruncExp.apply(raw)
        return F.softplus(raw)

    def density(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Density ``sigma`` [N] (1/world unit) of world points ``x`` [N, 3]; zero outside the cube.

        With ``return_features`` also returns the geometry features ``[N, geo_feat_dim]``.
        """
        b = self.cfg.bound
        unit = (x + b) / (2 * b)  # [N, 3] in [0, 1]
        inside = ((unit >= 0) & (unit <= 1)).all(-1)  # [N]
        h = self.density_mlp(self.encoding(unit.clamp(0, 1)))  # [N, 1 + G]
        raw = h[:, 0] + self._blob(x) + self.cfg.density_bias
        sigma = self._activate(raw) * inside
        if return_features:
            return sigma, h[:, 1:]
        return sigma

    def color(self, features: Tensor, directions: Tensor | None = None) -> Tensor:
        """Colour [N, 3] in [0, 1] from geometry features [N, G] and unit view directions [N, 3]."""
        if self.cfg.view_dependent:
            if directions is None:
                raise ValueError("this field is view-dependent: pass view directions")
            features = torch.cat([features, spherical_harmonics(directions, self.cfg.sh_degree)], dim=-1)
        return self.color_mlp(features)

    def forward(self, x: Tensor, directions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Density [N] and colour [N, 3] of points ``x`` [N, 3] seen along ``directions`` [N, 3]."""
        sigma, feats = self.density(x, return_features=True)  # type: ignore[misc]
        return sigma, self.color(feats, directions)

    def normals(self, x: Tensor, eps: float = 1e-2) -> Tensor:
        """Unit outward normals [N, 3] ``-grad(sigma)/|grad(sigma)|`` by finite differences.

        Uses the four-tap tetrahedron stencil (second-order accurate, 4 density evaluations); it is
        differentiable, so orientation losses train the density.
        """
        k = torch.tensor(
            [[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], dtype=x.dtype, device=x.device
        )  # [4, 3]
        pts = (x[:, None, :] + eps * k[None]).reshape(-1, 3)  # [N*4, 3]
        sig = self.density(pts).reshape(-1, 4)  # [N, 4]
        grad = (sig[:, :, None] * k[None]).sum(1) / (4 * eps)  # [N, 3]
        return -F.normalize(grad, dim=-1, eps=1e-12)
