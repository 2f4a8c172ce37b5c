"""How a photographed surface looks: albedo lit by a learnt environment, and what changes per photo.

A photo records radiance: the surface colour (albedo) times the light reaching the surface, through the
camera's exposure and white balance. :class:`Appearance` sits beside the field and models that, so the
exported texture can hold the albedo (relightable in an engine) instead of the capture's lighting:

- ``shading = "sh"``: the field's colour head predicts the **albedo** (sRGB, view-independent) and
  ``radiance_lin = linear(albedo) * E(n) + specular``, shown as ``srgb(gain * radiance_lin)``. ``E`` is the
  irradiance of a distant environment, a 2nd-order spherical-harmonic function of the unit outward normal
  ``n`` (9 learnt coefficients per colour channel; Ramamoorthi & Hanrahan 2001), clamped at 0; ``n`` is the
  field's finite-difference normal (:meth:`~t23d.field.nerf.NeRFField.normals`: the SDF's gradient, or
  minus the density's), so shading cues train the geometry too. The optional specular term is a
  view-dependent residual, ``k(x) * tint(r, n.v)`` with ``r`` the reflected view direction and ``k`` a
  per-point strength from the geometry features: it explains highlights and is **never baked**.
- ``shading = "none"``: the colour head is the radiance itself (view-dependent when the field is).
- ``per_image = "exposure"``: a per-photo, per-channel gain in linear colour (exposure and white balance;
  the simplest physical form of NeRF-W / nerfacto appearance embeddings), applied to everything the photo
  shows (the object, and the surroundings when they are part of the photo). ``"lighting"``: the same plus
  a per-photo change of the SH environment (needs ``shading = "sh"``): lighting that differs between photos.
- ``local_codes = D > 0``: light that changes *across the surface* from photo to photo (moving shadows,
  which neither a gain nor a distant environment can explain; NeRF-W's appearance embedding, in a form
  that keeps the neutral code exact). Each photo has a code ``c`` [D] and the linear radiance is
  multiplied by ``exp(A(f) c)``, where ``A(f)`` [3, D] comes from a small MLP of the sample's geometry
  features ``f``. Without it the field explains such changes with geometry (floaters and skirts in front
  of the surfaces whose shading varies). It is linear in the code, so the zero code changes nothing and
  is, at every point, the training photos' average log-radiance; it is never baked.

Per-photo codes are constrained to zero mean over the training photos, so the **zero code** (used for
held-out views, previews and the exported asset) is the training photos' average appearance.

Albedo and light have a global scale ambiguity (``albedo * k`` under ``E / k`` renders the same photos);
the albedo is kept in [0, 1] and ``E`` starts at 1 (radiance = albedo), which fixes the scale only up to
what the photos allow: compare albedos after one global scale fit as well as raw.

Colours: sRGB-encoded in [0, 1] at the interfaces; shading is done in linear colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from t23d.field.encoding import spherical_harmonics
from t23d.field.mlp import make_mlp

SH_C0 = 0.28209479177387814
"""The constant real spherical harmonic ``Y_00``."""


def srgb_to_linear(c: Tensor) -> Tensor:
    """sRGB-encoded values in [0, 1] -> linear (IEC 61966-2-1)."""
    c = c.clamp(0.0, 1.0)
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: Tensor) -> Tensor:
    """Linear values (clamped to [0, 1]) -> sRGB-encoded (IEC 61966-2-1)."""
    c = c.clamp(0.0, 1.0)
    return torch.where(c <= 0.0031308, 12.92 * c, 1.055 * c.clamp(min=1e-8) ** (1.0 / 2.4) - 0.055)


@dataclass
class AppearanceConfig:
    """Shading model and per-photo appearance of photo reconstructions (see the module docstring)."""

    shading: Literal["none", "sh"] = "none"
    """``none``: the field's colour is the photos' radiance; ``sh``: the field's colour is the albedo, lit
    by a learnt 2nd-order spherical-harmonic environment of the field's normals (relightable textures)."""
    specular: bool = True
    """With ``shading = "sh"``: add a view-dependent residual (highlights) that is never baked."""
    per_image: Literal["none", "exposure", "lighting"] = "none"
    """Per-photo appearance: ``exposure`` (gain per colour channel: exposure and white balance) or
    ``lighting`` (that plus a per-photo SH environment; needs ``shading = "sh"``)."""
    shading_trains_geometry: bool = True
    """Let the shading loss move the geometry through the normals (shape from shading: pins plain-coloured
    surfaces); ``False`` detaches the normals."""
    specular_hidden_dim: int = 32
    """Width of the specular tint's hidden layer."""
    local_codes: int | Literal["auto"] = 0
    """Size of each photo's code for light that varies across the surface from photo to photo (moving
    shadows): a per-photo, per-point gain on the radiance (see the module docstring). 0: off. ``auto``
    is for the run to resolve from its capture before the model is built
    (:func:`t23d.reconstruct.capture.resolve_for_capture`)."""
    local_hidden_dim: int = 32
    """Width of the hidden layer of the MLP that turns geometry features into the local gains' basis."""


def _check(cfg: AppearanceConfig) -> None:
    from t23d.common.errors import ConfigError

    if cfg.shading not in ("none", "sh"):
        raise ConfigError(f"appearance.shading: invalid value {cfg.shading!r}; accepted: 'none', 'sh'")
    if cfg.per_image not in ("none", "exposure", "lighting"):
        raise ConfigError(
            f"appearance.per_image: invalid value {cfg.per_image!r}; accepted: 'none', 'exposure', 'lighting'"
        )
    if cfg.per_image == "lighting" and cfg.shading != "sh":
        raise ConfigError(
            "appearance.per_image: 'lighting' needs appearance.shading 'sh' (a per-photo environment "
            f"lights the albedo); got shading {cfg.shading!r}. Use per_image 'exposure' instead"
        )
    if cfg.local_codes == "auto":
        raise ConfigError(
            "appearance.local_codes: 'auto' must be resolved from the capture before the model is built "
            "(reconstruct does this); give a size (an integer >= 0) here"
        )
    for key, least in (("local_codes", 0), ("local_hidden_dim", 1)):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"appearance.{key}: invalid value {value!r}; accepted: an integer >= {least}")


class Appearance(nn.Module):
    """Environment lighting, specular residual and per-photo codes of ``num_images`` photos.

    ``train_indices`` are the photos whose codes are learnt: codes are centred on their mean.
    """

    def __init__(
        self,
        cfg: AppearanceConfig,
        num_images: int,
        train_indices: list[int] | None = None,
        geo_feat_dim: int = 15,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        _check(cfg)
        self.cfg = cfg
        self.num_images = num_images
        ids = torch.tensor(
            train_indices if train_indices is not None else range(num_images), dtype=torch.long
        )
        self.register_buffer("train_ids", ids, persistent=False)
        # irradiance E(n) = sum_k sh[k] Y_k(n), per channel; starts as a uniform white environment (E = 1)
        sh = torch.zeros(9, 3)
        sh[0] = 1.0 / SH_C0
        self.sh = nn.Parameter(sh)
        self.image_log_gain = nn.Parameter(torch.zeros(num_images, 3))
        self.image_sh = nn.Parameter(torch.zeros(num_images, 9, 3)) if cfg.per_image == "lighting" else None
        self.specular_strength = None
        self.specular_tint = None
        if cfg.shading == "sh" and cfg.specular:
            self.specular_strength = nn.Linear(geo_feat_dim, 1)
            with torch.no_grad():
                self.specular_strength.weight.normal_(0.0, 0.01, generator=generator)
                self.specular_strength.bias.fill_(-7.0)  # k ~ 0.001: highlights start off
            self.specular_tint = make_mlp(17, 3, cfg.specular_hidden_dim, 1, generator)
        self.image_local = None
        self.local_basis = None
        if cfg.local_codes:  # codes start at zero: no local change until the photos ask for one
            self.image_local = nn.Parameter(torch.zeros(num_images, cfg.local_codes))
            self.local_basis = make_mlp(geo_feat_dim, 3 * cfg.local_codes, cfg.local_hidden_dim, 1, generator)

    @property
    def shaded(self) -> bool:
        """Whether the field's colour is an albedo lit by the environment (``shading == "sh"``)."""
        return self.cfg.shading == "sh"

    def _centred(self, codes: Tensor) -> Tensor:
        """Codes minus their mean over the training photos (the zero code is the average appearance)."""
        return codes - codes[self.train_ids].mean(0, keepdim=True)

    def gains(self, image_ids: Tensor | None) -> Tensor | None:
        """Per-channel linear gains ``[R, 3]`` of photos ``image_ids`` [R]; None for the neutral code."""
        if image_ids is None or self.cfg.per_image == "none":
            return None
        return self._centred(self.image_log_gain)[image_ids].exp()

    def local_log_gains(self, features: Tensor, image_ids: Tensor | None) -> Tensor | None:
        """Per-point log gains ``A(features) c`` [N, 3] of the photos ``image_ids`` [N] (one per sample)
        with geometry ``features`` [N, G]; None without local codes or for the neutral code."""
        if image_ids is None or self.image_local is None or self.local_basis is None:
            return None
        codes = self._centred(self.image_local)[image_ids]  # [N, D]
        basis = self.local_basis(features).view(len(features), 3, -1)  # [N, 3, D]
        return (basis * codes[:, None, :]).sum(-1)

    def irradiance(self, normals: Tensor, image_ids: Tensor | None = None) -> Tensor:
        """Linear irradiance ``E(n)`` [N, 3] >= 0 at unit ``normals`` [N, 3] (per-photo when ``image_ids``
        [N] is given and codes include lighting)."""
        basis = spherical_harmonics(normals, 3)  # [N, 9]
        e = basis @ self.sh  # [N, 3]
        if image_ids is not None and self.image_sh is not None:
            delta = self._centred(self.image_sh)[image_ids]  # [N, 9, 3]
            e = e + (basis[:, :, None] * delta).sum(1)
        return e.clamp(min=0.0)

    def specular(self, features: Tensor, normals: Tensor, directions: Tensor) -> Tensor | None:
        """Linear specular residual [N, 3] >= 0 (or None when disabled), from geometry ``features`` [N, G],
        unit ``normals`` and unit view ``directions`` (camera to point) [N, 3]."""
        if self.specular_strength is None or self.specular_tint is None:
            return None
        cos = (normals * directions).sum(-1, keepdim=True)  # [N, 1], < 0 when facing the camera
        reflected = directions - 2.0 * cos * normals  # [N, 3]
        tint_in = torch.cat([spherical_harmonics(reflected, 4), -cos], -1)  # [N, 17]
        tint = torch.nn.functional.softplus(self.specular_tint(tint_in))  # [N, 3]
        strength = torch.sigmoid(self.specular_strength(features))  # [N, 1]
        return strength * tint

    def radiance(
        self,
        color: Tensor,
        features: Tensor,
        normals: Tensor | None,
        directions: Tensor,
        image_ids: Tensor | None = None,
    ) -> Tensor:
        """sRGB radiance [N, 3] of samples whose field colour is ``color`` [N, 3] (the albedo when
        shaded), with geometry ``features`` [N, G], unit ``normals`` [N, 3] (needed when shaded), view
        ``directions`` [N, 3], seen in photos ``image_ids`` [N] (None: the neutral, average appearance)."""
        gains = self.gains(image_ids)
        local = self.local_log_gains(features, image_ids)
        if local is not None:
            gains = local.exp() if gains is None else gains * local.exp()
        if not self.shaded:
            if gains is None:
                return color
            return linear_to_srgb(srgb_to_linear(color) * gains)
        if normals is None:
            raise ValueError("shading 'sh' needs the normals of the samples")
        if not self.cfg.shading_trains_geometry:
            normals = normals.detach()
        lin = srgb_to_linear(color) * self.irradiance(normals, image_ids)
        spec = self.specular(features, normals, directions)
        if spec is not None:
            lin = lin + spec
        if gains is not None:
            lin = lin * gains
        return linear_to_srgb(lin)

    def adjust_background(self, colors: Tensor, image_ids: Tensor | None) -> Tensor:
        """The photo's surroundings ``colors`` [R, 3] (sRGB) through the exposure of photos ``image_ids``."""
        gains = self.gains(image_ids)
        if gains is None:
            return colors
        return linear_to_srgb(srgb_to_linear(colors) * gains)


@dataclass
class AppearanceRender:
    """What one render asks of an :class:`Appearance`: the photo of each ray and what to output."""

    model: Appearance
    """The appearance model."""
    image_ids: Tensor | None = None
    """``[R]`` long: the photo each ray belongs to (its code); None renders with the neutral code."""
    output: Literal["radiance", "albedo"] = "radiance"
    """``radiance``: what a photo shows; ``albedo``: the field's surface colour, unlit (what an albedo
    texture holds)."""
    photo_background: bool = False
    """The background is part of the photos (surroundings), so the photo's exposure applies to it too;
    False for synthetic backgrounds (random colours behind masked photos)."""
    albedo_gain: Tensor | None = None
    """``[3]`` linear gain per colour channel applied to the ``albedo`` output (the calibration to a
    surface of known reflectance, :mod:`t23d.reconstruct.calibrate`); None: the albedo as learnt."""

    @property
    def needs_normals(self) -> bool:
        """Whether :meth:`color` needs the samples' normals."""
        return self.output == "radiance" and self.model.shaded

    def color(
        self, color: Tensor, features: Tensor, normals: Tensor | None, directions: Tensor, ray: Tensor
    ) -> Tensor:
        """Colours [K, 3] of samples with field colour ``color`` [K, 3], ``features`` [K, G], ``normals``,
        view ``directions`` [K, 3], belonging to rays ``ray`` [K] (long)."""
        if self.output == "albedo":
            if self.albedo_gain is None:
                return color
            return linear_to_srgb(srgb_to_linear(color) * self.albedo_gain.to(color))
        ids = None if self.image_ids is None else self.image_ids[ray]
        return self.model.radiance(color, features, normals, directions, ids)

    def background(self, colors: Tensor) -> Tensor:
        """Background colours [R, 3] of the rays as the photos show them."""
        if not self.photo_background or self.output == "albedo":
            return colors
        return self.model.adjust_background(colors, self.image_ids)
