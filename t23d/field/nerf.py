"""The NeRF field: hash-grid encoding -> geometry MLP -> (density, features) -> colour head.

Two geometries share the encoding, the MLPs and every consumer (renderer, occupancy grid, export):

- ``density``: the MLP's first output is a raw volume density (instant-ngp / DreamFusion).
- ``sdf``: it is a signed distance ``s`` (negative inside; a sphere of ``sdf.init_radius`` at
  initialisation), and the volume density is NeuS's logistic density
  ``sigma = inv_s * sigmoid(-inv_s * s)`` with a learnt sharpness ``inv_s``. Along a ray entering a
  plane head-on this is exactly NeuS's opaque density, so the optical depth accumulated up to the zero
  level is ``ln 2``: renders terminate on the surface the mesh is extracted from (``s = 0``).
  Regularisers (eikonal, curvature) live in :mod:`t23d.field.sdf`.

World frame: +Z up; the field lives in the axis-aligned cube ``[-bound, bound]^3`` and is empty
outside it. Colours are sRGB-encoded values in [0, 1] (see ``t23d`` package docstring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from t23d.field.encoding import spherical_harmonics
from t23d.field.hashgrid import HashGridConfig, HashGridEncoding
from t23d.field.mlp import make_mlp

STEEP_SDF_SLOPE = 8.0
"""An SDF cell test measures the slope of cells whose centre value lies within this many unit-slope bands
of zero (see :meth:`NeRFField.occupancy_fn`); steeper SDFs than this are not expected."""


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
class SDFConfig:
    """Signed-distance geometry (``FieldConfig.geometry = "sdf"``)."""

    init_radius: float = 0.5
    """Radius (world units) of the sphere the SDF starts as: ``s(x) = |x| - init_radius + mlp(x)``."""
    init_inv_s: float = 20.0
    """Initial sharpness ``inv_s`` (1/length) of the logistic density; the surface is ~``4 / inv_s`` thick."""
    max_inv_s: float = 1000.0
    """Upper bound of the learnt sharpness (1/length). A few times ``1 / render step`` keeps one sample
    per ray inside the transition so geometry gradients stay dense."""


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
    """Initial density blob (DreamFusion / Magic3D); density geometry only."""
    geometry: Literal["density", "sdf"] = "density"
    """``density``: the MLP predicts volume density; ``sdf``: a signed distance rendered NeuS-style
    (clean zero level set for the asset; see the module docstring)."""
    sdf: SDFConfig = field(default_factory=SDFConfig)
    """Signed-distance settings (used when ``geometry == "sdf"``)."""
    ground_plane: list[float] | None = None
    """SDF geometry: ``(nx, ny, nz, d)``, a unit normal and offset (field frame) of a plane whose lower
    side ``n . x < d`` is solid. The field's SDF is then the union (minimum) of the learnt one and the
    plane's ``n . x - d``: the table or floor a photographed object stands on is part of the geometry
    exactly, so the learnt surface (the object, what is exported) does not have to bend into it at the
    contact. Set by ``t23d reconstruct`` from the support plane it finds (``ground: auto``); None: no
    plane."""


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


def _ground_plane(cfg: FieldConfig) -> Tensor:
    """``cfg.ground_plane`` as a ``[4]`` tensor, checked (SDF geometry, 4 finite numbers, unit normal)."""
    from t23d.common.errors import ConfigError

    g = torch.tensor([float(v) for v in cfg.ground_plane or []], dtype=torch.float32)
    if cfg.geometry != "sdf":
        raise ConfigError(
            "field.ground_plane needs geometry 'sdf' (a density field has no union with a plane)"
        )
    if g.shape != (4,) or not bool(torch.isfinite(g).all()) or abs(float(g[:3].norm()) - 1.0) > 1e-4:
        raise ConfigError(
            f"field.ground_plane must be 4 finite numbers (nx, ny, nz, d) with a unit normal; got {cfg.ground_plane}"
        )
    return g


class NeRFField(nn.Module):
    """Density and colour of points in ``[-bound, bound]^3``.

    With ``latent_channels > 0`` (Latent-NeRF, Metzer et al. 2023) the field also has a latent colour
    head (``latent_mlp``, unbounded outputs) beside the RGB one: SDS renders the latent for a latent
    prior, while previews and export keep reading :meth:`color`.
    """

    def __init__(
        self,
        cfg: FieldConfig,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
        latent_channels: int = 0,
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
        self.latent_channels = latent_channels
        if latent_channels:
            self.latent_mlp = make_mlp(
                color_in, latent_channels, cfg.color_hidden_dim, cfg.color_num_hidden_layers, generator
            )
        if cfg.geometry not in ("density", "sdf"):
            from t23d.common.errors import ConfigError

            raise ConfigError(f"field.geometry: invalid value {cfg.geometry!r}; accepted: 'density', 'sdf'")
        if cfg.geometry == "sdf":
            sd = cfg.sdf
            if not (sd.init_inv_s > 0 and sd.max_inv_s >= sd.init_inv_s and sd.init_radius > 0):
                from t23d.common.errors import ConfigError

                raise ConfigError(
                    "field.sdf: need init_radius > 0 and 0 < init_inv_s <= max_inv_s; got "
                    f"init_radius={sd.init_radius}, init_inv_s={sd.init_inv_s}, max_inv_s={sd.max_inv_s}"
                )
            # log-sharpness, learnt with the MLPs (NeuS's "variance network")
            self.log_inv_s = nn.Parameter(torch.tensor(math.log(sd.init_inv_s)))
        self.ground: Tensor | None = None
        """``[4]`` the ground plane ``(nx, ny, nz, d)`` (``cfg.ground_plane``), or None."""
        if cfg.ground_plane is not None:
            self.ground = _ground_plane(cfg)
        self.level_weights: Tensor | None = None
        """``[n_levels]`` weights of the hash grid's levels (coarse-to-fine training masks the finer
        ones), or None for all 1. Not saved: training loops set it from their schedule and step."""
        self.to(device)

    @property
    def is_sdf(self) -> bool:
        """Whether the geometry is a signed distance (``FieldConfig.geometry == "sdf"``)."""
        return self.cfg.geometry == "sdf"

    @property
    def inv_s(self) -> Tensor:
        """Sharpness of the logistic density (1/length), a scalar tensor; SDF geometry only."""
        return self.log_inv_s.exp().clamp(max=self.cfg.sdf.max_inv_s)

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

    def _geometry(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Raw MLP outputs of world points ``x`` [N, 3]: (first output [N], features [N, G], inside [N])."""
        b = self.cfg.bound
        unit = (x + b) / (2 * b)  # [N, 3] in [0, 1]
        inside = ((unit >= 0) & (unit <= 1)).all(-1)  # [N]
        enc = self.encoding(unit.clamp(0, 1))  # [N, L * F], level-major
        if self.level_weights is not None:
            enc = enc * self.level_weights.to(enc).repeat_interleave(self.cfg.grid.n_features_per_level)
        h = self.density_mlp(enc)  # [N, 1 + G]
        return h[:, 0], h[:, 1:], inside

    def sdf(
        self, x: Tensor, return_features: bool = False, ground: bool = True
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Signed distance ``s`` [N] (world units, negative inside) of world points ``x`` [N, 3].

        SDF geometry only. With ``return_features`` also returns the geometry features ``[N, G]``. With
        a ground plane (``cfg.ground_plane``) this is the union of the learnt SDF and the plane's; with
        ``ground=False`` the learnt SDF alone (what is regularised and exported).
        """
        if not self.is_sdf:
            raise ValueError("sdf() needs a field with geometry 'sdf'")
        raw, feats, _ = self._geometry(x)
        s = raw + x.norm(dim=-1) - self.cfg.sdf.init_radius  # [N]
        if ground and self.ground is not None:
            g = self.ground.to(x)
            s = torch.minimum(s, x @ g[:3] - g[3])
        return (s, feats) if return_features else s

    def density(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Density ``sigma`` [N] (1/world unit) of world points ``x`` [N, 3]; zero outside the cube.

        With ``return_features`` also returns the geometry features ``[N, geo_feat_dim]``. For SDF
        geometry this is the logistic density ``inv_s * sigmoid(-inv_s * s)`` of the signed distance.
        """
        if self.is_sdf:
            s, feats = self.sdf(x, return_features=True)  # type: ignore[misc]
            inv_s = self.inv_s
            inside = ((x.abs() <= self.cfg.bound).all(-1)).to(s.dtype)
            sigma = inv_s * torch.sigmoid(-inv_s * s) * inside
        else:
            raw, feats, inside_b = self._geometry(x)
            sigma = self._activate(raw + self._blob(x) + self.cfg.density_bias) * inside_b
        if return_features:
            return sigma, feats
        return sigma

    def occupancy_fn(self, cell_size: float):
        """``points [N, 3] -> density [N]`` for the occupancy grid. Density fields: the density itself.
        SDF fields: each point is moved to the centre of its grid cell (cells of ``cell_size`` tiling
        the field's cube) and gets a large density when the zero level set may cross the cell (0 outside
        and deep inside), so every cell it crosses stays occupied and the interior costs no samples: when
        ``|s| <= 1.5 * g * half-diagonal + 6 / inv_s`` at the centre, with ``g`` the SDF's slope across
        the cell (at least 1; 1.5: margin). An SDF trained by score distillation is often far from a
        distance (slopes of 2-5), so ``g`` is measured (central differences over the cell) for the
        cells a unit slope would free but a steeper one might not."""
        if not self.is_sdf:
            return self.density
        b = self.cfg.bound
        half_diagonal = 0.5 * math.sqrt(3.0) * cell_size

        def occupancy(x: Tensor) -> Tensor:
            centres = ((torch.floor((x + b) / cell_size) + 0.5) * cell_size - b).clamp(-b, b)
            s = self.sdf(centres)  # type: ignore[misc]
            soft = 6.0 / float(self.inv_s)
            band = 1.5 * half_diagonal + soft
            near = s.abs() <= band
            steep = ~near & (s.abs() <= STEEP_SDF_SLOPE * band)
            if bool(steep.any()):
                c = centres[steep]
                h = 0.5 * cell_size
                offsets = torch.eye(3, dtype=c.dtype, device=c.device) * h
                pairs = torch.cat([c[:, None] + offsets, c[:, None] - offsets], 1)  # [M, 6, 3]
                values = self.sdf(pairs.reshape(-1, 3)).reshape(-1, 2, 3)  # type: ignore[misc]
                slope = ((values[:, 0] - values[:, 1]) / (2 * h)).norm(dim=-1).clamp(min=1.0)
                near[steep] = s[steep].abs() <= 1.5 * slope * half_diagonal + soft
            return torch.where(near, torch.full_like(s, 1e6), torch.zeros_like(s))

        return occupancy

    def color(self, features: Tensor, directions: Tensor | None = None) -> Tensor:
        """Colour [N, 3] in [0, 1] from geometry features [N, G] and unit view directions [N, 3]."""
        if self.cfg.view_dependent:
            if directions is None:
                raise ValueError("this field is view-dependent: pass view directions")
            features = torch.cat([features, spherical_harmonics(directions, self.cfg.sh_degree)], dim=-1)
        return self.color_mlp(features)

    def latent(self, features: Tensor, directions: Tensor | None = None) -> Tensor:
        """Latent colour ``[N, latent_channels]`` (unbounded) from geometry features [N, G] (latent fields only)."""
        if not self.latent_channels:
            raise ValueError("this field has no latent head (latent_channels=0)")
        if self.cfg.view_dependent:
            if directions is None:
                raise ValueError("this field is view-dependent: pass view directions")
            features = torch.cat([features, spherical_harmonics(directions, self.cfg.sh_degree)], dim=-1)
        return self.latent_mlp(features)

    def mlp_parameters(self) -> list[nn.Parameter]:
        """Parameters of the MLPs (density, colour and, for latent fields, latent heads); not the grid."""
        heads = [self.density_mlp, self.color_mlp] + ([self.latent_mlp] if self.latent_channels else [])
        return [p for m in heads for p in m.parameters()]

    def forward(self, x: Tensor, directions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Density [N] and colour [N, 3] of points ``x`` [N, 3] seen along ``directions`` [N, 3]."""
        sigma, feats = self.density(x, return_features=True)  # type: ignore[misc]
        return sigma, self.color(feats, directions)

    def normals(self, x: Tensor, eps: float = 1e-2, ground: bool = True) -> Tensor:
        """Unit outward normals [N, 3] by finite differences: ``-grad(sigma)/|grad(sigma)|`` for density
        geometry, ``grad(s)/|grad(s)|`` for SDF geometry (``ground=False``: of the learnt SDF alone,
        without the ground plane).

        Uses the four-tap tetrahedron stencil (second-order accurate, 4 evaluations); it is
        differentiable, so orientation losses train the geometry.
        """
        k = torch.tensor(
            [[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], dtype=x.dtype, device=x.device
        )  # [4, 3]
        pts = (x[:, None, :] + eps * k[None]).reshape(-1, 3)  # [N*4, 3]
        if self.is_sdf:
            val = self.sdf(pts, ground=ground).reshape(-1, 4)  # type: ignore[union-attr]
            sign = 1.0
        else:
            val = self.density(pts).reshape(-1, 4)  # type: ignore[union-attr]
            sign = -1.0
        grad = (val[:, :, None] * k[None]).sum(1) / (4 * eps)  # [N, 3]
        return sign * F.normalize(grad, dim=-1, eps=1e-12)
