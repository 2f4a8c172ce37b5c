"""Image -> 3D: the reference view of the input photo, its losses, and the image conditioning of SDS.

threestudio's zero123 recipe: every step the field is rendered at random cameras scored by the Zero123
prior (SDS conditioned on the input image and each view's camera relative to the input view, see
:mod:`t23d.guidance.zero123`), and at the **reference camera**, where it must reproduce the input:

- ``ref_rgb``: mean squared error between the render and the input composited over the render's own
  background (object pixels are compared with the object, background pixels with the background);
- ``ref_mask``: mean squared error between the rendered opacity and the input's alpha;
- ``ref_normal_smooth`` (optional): mean L1 difference between the field's normals at surface points of
  the reference render and at points jittered by ``normal_smooth_jitter`` (threestudio's 3D normal
  smoothness).

The reference camera looks at the origin from ``elevation_deg`` / ``azimuth_deg`` (0 = the front, on -Y;
the input photo shows the asset's front, which faces glTF +Z on export) at the distance and field of
view of the SDS cameras. The input photo is recentred and rescaled as threestudio does
(:mod:`t23d.prompt.image`). A run keeps its input in ``RUN_DIR/input/`` (the original files and the
processed ``reference.png`` it trains on), so ``--resume`` and ``t23d export`` never need the original.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from t23d.common.errors import ConfigError, T23dError
from t23d.common.schedule import Constant, Linear, Schedule
from t23d.prompt.image import (
    ImagePrompt,
    ImagePromptConfig,
    load_image_prompt,
    read_image_prompt,
    save_image_prompt,
)
from t23d.render.cameras import (
    Cameras,
    RandomCameraConfig,
    WorldDistance,
    fit_sphere_distance,
    orbit_cameras,
)
from t23d.render.rays import camera_rays
from t23d.render.volume import RenderConfig, render_rays

if TYPE_CHECKING:
    from t23d.guidance.base import ImageCondition
    from t23d.run.state import TrainingState

logger = logging.getLogger(__name__)

INPUT_DIR = "input"
"""Folder of a run directory holding the input photo, its mask and the processed reference image."""
REFERENCE_PNG = "reference.png"
"""The processed square RGBA image an image run trains on (in :data:`INPUT_DIR`)."""


@dataclass
class ReferenceLossConfig:
    """Weights of the reference-view losses, relative to the SDS loss (weight 1).

    The defaults are threestudio's zero123 recipe (``lambda_rgb`` 500 -> 1000, ``lambda_mask`` 50) divided
    by its ``lambda_sds`` = 0.1, t23d's SDS loss having the same normalisation as threestudio's.
    """

    rgb: Schedule = field(default_factory=lambda: Linear(5000.0, 10000.0, 100, 400))
    """Weight of the RGB mean squared error at the reference camera."""
    mask: Schedule = field(default_factory=lambda: Constant(500.0))
    """Weight of the opacity-vs-alpha mean squared error at the reference camera."""
    normal_smooth: Schedule = field(default_factory=lambda: Constant(0.0))
    """Weight of the 3D normal smoothness at the reference render's surface points (0 disables it; it
    costs 8 extra density evaluations per point)."""
    normal_smooth_jitter: float = 0.01
    """Std-dev (world units) of the jitter of the points whose normals are compared."""
    normal_smooth_points: int = 1024
    """At most this many surface points (drawn at random each step) enter the normal smoothness."""


@dataclass
class ReferenceViewConfig:
    """The input photo of an image -> 3D run and its camera (``t23d generate --image``)."""

    image: str = ""
    """The input photo as given by ``--image`` (recorded for provenance; the run trains on its copy in
    ``RUN_DIR/input/``)."""
    mask: Optional[str] = None
    """The object mask as given by ``--mask`` (white = object), or None to use the image's alpha channel."""
    elevation_deg: float = 0.0
    """Elevation of the input view in degrees above the horizon (``--elevation``)."""
    azimuth_deg: float = 0.0
    """Azimuth of the input view in degrees; 0 makes the photo the asset's front."""
    distance: Optional[float] = None
    """Camera distance of the input view (world units); None = the SDS cameras' distance
    (``camera.distance``: a ``WorldDistance`` with one ``distance_range`` value, or a
    ``SphereFitDistance`` with one ``scale_range`` value, fitted at the reference field of view)."""
    fov_deg: Optional[float] = None
    """Vertical field of view of the input view in degrees; None = the SDS cameras'
    (``camera.fov_range``, which must then be a single value)."""
    resolution: int = 64
    """Side in pixels of the reference render (the input is resampled to it)."""
    image_prompt: ImagePromptConfig = field(default_factory=ImagePromptConfig)
    """How the photo is recentred and rescaled into the square reference image."""
    losses: ReferenceLossConfig = field(default_factory=ReferenceLossConfig)
    """Weights of the reference-view losses."""


def _single(value: Optional[float], rng: tuple[float, float], key: str, range_key: str) -> float:
    if value is not None:
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(
                f"config key 'reference.{key}': invalid value {value!r}; accepted: a positive number"
            )
        return float(value)
    lo, hi = rng
    if lo != hi:
        raise ConfigError(
            f"config key 'reference.{key}' is unset and '{range_key}' is {list(rng)}, not one value; set "
            f"'reference.{key}' or a fixed '{range_key}: [x, x]' (Zero123 assumes one {key} for every view)"
        )
    return float(lo)


def reference_distance_fov(cfg: ReferenceViewConfig, camera: RandomCameraConfig) -> tuple[float, float]:
    """``(distance, fov_deg)`` of the reference camera (see :class:`ReferenceViewConfig`)."""
    fov = _single(cfg.fov_deg, camera.fov_range, "fov_deg", "camera.fov_range")
    if cfg.distance is not None:
        distance = _single(cfg.distance, (0.0, 0.0), "distance", "")
    elif isinstance(camera.distance, WorldDistance):
        distance = _single(None, camera.distance.distance_range, "distance", "camera.distance.distance_range")
    else:  # SphereFitDistance: the distance that frames its sphere at the reference field of view
        scale = _single(None, camera.distance.scale_range, "distance", "camera.distance.scale_range")
        distance = float(fit_sphere_distance(camera.distance.radius, torch.tensor(fov))) * scale
    if not fov < 180.0:
        raise ConfigError(
            f"config key 'reference.fov_deg': invalid value {fov!r}; accepted: 0 to 180 (exclusive)"
        )
    if camera.fov_range[0] != camera.fov_range[1]:
        logger.warning(
            "camera.fov_range %s varies; Zero123 was trained with one field of view per object",
            camera.fov_range,
        )
    return distance, fov


def check_reference_config(cfg: ReferenceViewConfig) -> None:
    """Raise :class:`ConfigError` for out-of-range reference settings (before anything is loaded)."""
    if cfg.resolution < 8:
        raise ConfigError(
            f"config key 'reference.resolution': invalid value {cfg.resolution!r}; accepted: an integer >= 8"
        )
    if not -90.0 < cfg.elevation_deg < 90.0:
        raise T23dError(
            f"--elevation {cfg.elevation_deg!r} is out of range; accepted: between -90 and 90 degrees"
        )
    if cfg.losses.normal_smooth_points < 1 or cfg.losses.normal_smooth_jitter <= 0:
        raise ConfigError(
            "config keys 'reference.losses.normal_smooth_points' / 'normal_smooth_jitter' must be positive"
        )


def quantise(prompt: ImagePrompt) -> ImagePrompt:
    """The prompt exactly as its 8-bit PNG reads back, so a new run and its resume train on the same values."""

    def q(x: np.ndarray) -> np.ndarray:
        return ((np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)).astype(np.float32) / 255.0

    return ImagePrompt(q(prompt.rgb), q(prompt.alpha))


def load_reference_prompt(cfg: ReferenceViewConfig) -> ImagePrompt:
    """Validate and process the user's ``--image`` / ``--mask`` (a new run)."""
    check_reference_config(cfg)
    if not cfg.image:
        raise T23dError("an image run needs --image PATH (a photo of the object with alpha, or with --mask)")
    return quantise(
        load_image_prompt(Path(cfg.image), None if cfg.mask is None else Path(cfg.mask), cfg.image_prompt)
    )


def write_reference_inputs(run_dir: Path, cfg: ReferenceViewConfig, prompt: ImagePrompt) -> None:
    """Copy the input photo (and mask) into ``run_dir/input/`` and write the processed ``reference.png``."""
    folder = run_dir / INPUT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in (("image", cfg.image), ("mask", cfg.mask)):
        if src:
            shutil.copyfile(src, folder / f"{name}{Path(src).suffix.lower()}")
    save_image_prompt(prompt, folder / REFERENCE_PNG)


def read_reference_prompt(run_dir: Path) -> ImagePrompt:
    """The processed reference image of an existing image run (for ``--resume`` and export)."""
    return read_image_prompt(Path(run_dir) / INPUT_DIR / REFERENCE_PNG)


def run_name(prompt: str, reference: Optional[ReferenceViewConfig]) -> str:
    """Name of a run (folder and asset): the text prompt, or the input photo's file name for image runs."""
    if reference is not None and not prompt:
        return Path(reference.image).stem or "image"
    return prompt


class ReferenceView:
    """The reference camera and target of an image run, and the losses that tie the field to them."""

    def __init__(
        self, cfg: ReferenceViewConfig, prompt: ImagePrompt, camera: RandomCameraConfig, device: torch.device
    ) -> None:
        check_reference_config(cfg)
        self.cfg = cfg
        self.prompt = prompt
        self.distance, self.fov_deg = reference_distance_fov(cfg, camera)
        views = orbit_cameras(
            1,
            cfg.resolution,
            self.distance,
            self.fov_deg,
            cfg.elevation_deg,
            start_azimuth_deg=cfg.azimuth_deg,
        )
        self.cameras: Cameras = views.cameras.to(device)
        self.rays = camera_rays(self.cameras)  # [R] rays, R = resolution^2, row-major
        target = prompt.resized(cfg.resolution)
        self.target_rgb = torch.from_numpy(target.rgb).reshape(-1, 3).to(device)  # [R, 3]
        self.target_alpha = torch.from_numpy(target.alpha).reshape(-1).to(device)  # [R]

    def condition(self) -> ImageCondition:
        """The input view for an image-conditioned prior: the full-size input over white and its camera."""
        from t23d.guidance.base import ImageCondition

        return ImageCondition(
            image=torch.from_numpy(self.prompt.composite((1.0, 1.0, 1.0))),
            elevation_deg=float(self.cfg.elevation_deg),
            azimuth_deg=float(self.cfg.azimuth_deg),
            distance=self.distance,
        )

    def losses(self, state: TrainingState, render_cfg: RenderConfig, step: int) -> dict[str, Tensor]:
        """Weighted reference-view losses at ``step`` (random draws from ``state.generator``)."""
        w = self.cfg.losses
        w_rgb, w_mask, w_smooth = w.rgb.at(step), w.mask.at(step), w.normal_smooth.at(step)
        if w_rgb <= 0 and w_mask <= 0 and w_smooth <= 0:
            return {}
        gen = state.generator
        out = render_rays(
            state.field, state.background, self.rays, render_cfg, state.occupancy, generator=gen
        )
        a = self.target_alpha[:, None]
        target = self.target_rgb * a + out.background.detach() * (1.0 - a)  # [R, 3]
        losses: dict[str, Tensor] = {}
        if w_rgb > 0:
            losses["ref_rgb"] = w_rgb * F.mse_loss(out.rgb, target)
        if w_mask > 0:
            losses["ref_mask"] = w_mask * F.mse_loss(out.opacity, self.target_alpha)
        if w_smooth > 0 and out.points is not None and len(out.points):
            pts = out.points
            if len(pts) > w.normal_smooth_points:
                pts = pts[torch.randperm(len(pts), generator=gen)[: w.normal_smooth_points].to(pts.device)]
            jitter = torch.randn(pts.shape, generator=gen).to(pts.device) * w.normal_smooth_jitter
            eps = render_cfg.normal_eps
            n0, n1 = state.field.normals(pts, eps), state.field.normals(pts + jitter, eps)
            losses["ref_normal_smooth"] = w_smooth * (n0 - n1).abs().mean()
        return losses

    @torch.no_grad()
    def render(self, state: TrainingState, render_cfg: RenderConfig) -> dict[str, Tensor]:
        """The field at the reference camera without gradients: ``rgb`` ``[S, S, 3]``, ``opacity`` ``[S, S]``."""
        from t23d.render.volume import render_images

        state.field.eval()
        out = render_images(state.field, state.background, self.cameras, render_cfg, state.occupancy)
        return {"rgb": out["rgb"][0], "opacity": out["opacity"][0]}

    def metrics(self, state: TrainingState, render_cfg: RenderConfig) -> dict[str, float]:
        """How closely the field reproduces the input at the reference camera.

        ``psnr``: dB over the whole image, render vs input composited over the render's background
        (evaluation colour); ``psnr_object``: dB over the input's object pixels (alpha > 0.5);
        ``iou``: rendered opacity > 0.5 vs input alpha > 0.5. PSNRs are capped at 100 dB.
        """
        out = self.render(state, render_cfg)
        state.background.eval()
        res = self.cfg.resolution
        rgb, opacity = out["rgb"].reshape(-1, 3), out["opacity"].reshape(-1)
        background = state.background(self.rays.directions, None, None, origins=self.rays.origins).detach()
        a = self.target_alpha[:, None]
        target = self.target_rgb * a + background * (1.0 - a)
        inside = self.target_alpha > 0.5
        pred = opacity > 0.5

        def psnr(x: Tensor, y: Tensor) -> float:
            return -10.0 * math.log10(max(float(((x - y) ** 2).mean()), 1e-10))  # capped at 100 dB

        union = int((inside | pred).sum())
        return {
            "psnr": psnr(rgb, target),
            "psnr_object": psnr(rgb[inside], target[inside]),
            "iou": int((inside & pred).sum()) / union if union else 1.0,
            "resolution": res,
        }

    def preview(self, state: TrainingState, render_cfg: RenderConfig, path: Path) -> None:
        """``path``: the input (over white) beside the field's render at the reference camera."""
        from t23d.render.preview import save_png, to_uint8

        out = self.render(state, render_cfg)
        res = self.cfg.resolution
        target = self.prompt.resized(res).composite((1.0, 1.0, 1.0))
        pair = torch.cat([torch.from_numpy(target), out["rgb"].cpu()], dim=1)  # [S, 2S, 3]
        save_png(path, to_uint8(pair))


def describe_reference(cfg: ReferenceViewConfig, view: ReferenceView) -> dict[str, Any]:
    """JSON-able summary of an image run's input for run.json."""
    return {
        "image": cfg.image,
        "mask": cfg.mask,
        "elevation_deg": cfg.elevation_deg,
        "azimuth_deg": cfg.azimuth_deg,
        "distance": view.distance,
        "fov_deg": view.fov_deg,
        "resolution": cfg.resolution,
        "reference_png": f"{INPUT_DIR}/{REFERENCE_PNG}",
    }
