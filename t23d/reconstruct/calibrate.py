"""Calibrate a photo run's albedo to a surface of known reflectance (a grey card marked in one photo).

The shading model leaves one gain per colour channel open (:mod:`t23d.data.albedo_reference`). Here the
field's albedo is rendered through the marked box from that photo's camera; the gain that brings its mean
(in linear colour) to the card's reflectance is then applied to everything the asset's albedo texture
bakes, and reported in ``export.json``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from t23d.common.errors import T23dError
from t23d.data.albedo_reference import AlbedoReference, box_pixels, reference_photo_index
from t23d.field.appearance import AppearanceRender, srgb_to_linear
from t23d.field.background import Background, ConstantBackground
from t23d.render.occupancy import OccupancyGrid
from t23d.render.volume import RenderConfig, render_pixels

log = logging.getLogger(__name__)

MIN_OPACITY = 0.95
"""Pixels of the box whose rendered opacity is below this (the card's edge, background) are not used."""
MIN_PIXELS = 4
"""Fewer usable pixels than this in the box is an error: the box misses the reconstructed card."""


def _stored_width(path: str, width: int) -> int:
    """Width in pixels of the photo as stored (the marks' pixels); the run's width when it is not there."""
    from pathlib import Path

    from t23d.data.images import image_size

    try:
        return int(image_size(Path(path))[0])
    except T23dError:
        log.warning("%s is not readable: taking the albedo reference's box in the run's pixels", path)
        return width


@torch.no_grad()
def albedo_gain(
    field_: torch.nn.Module,
    model: Any,
    occupancy: OccupancyGrid | None,
    render_cfg: RenderConfig,
    scene: dict[str, Any],
    ref: AlbedoReference,
) -> tuple[Tensor, dict[str, Any]]:
    """The per-channel linear gain ``[3]`` that makes the field's albedo inside ``ref``'s box equal the
    card's reflectance, and a report (photo, pixels used, the card's albedo before, the gain, the card's
    spread). ``model`` is the run's shading :class:`~t23d.field.appearance.Appearance`."""
    i = reference_photo_index(ref, scene["image_paths"])
    width, height = int(scene["width"]), int(scene["height"])
    scale = width / _stored_width(scene["image_paths"][i], width)
    rows, cols = box_pixels(ref.box, scale, width, height)
    if not len(rows) or not len(cols):
        raise T23dError(
            f"--albedo-reference: the box {ref.box} holds no pixel centre of {ref.photo} "
            f"({width / scale:.0f} x {height / scale:.0f} pixels as stored); draw it inside the photo"
        )
    device = next(field_.parameters()).device
    rr, cc = torch.meshgrid(torch.tensor(list(rows)), torch.tensor(list(cols)), indexing="ij")
    pixels = torch.stack([torch.zeros_like(rr), rr, cc], -1).reshape(-1, 3).to(device)
    from t23d.reconstruct.run import cameras_of  # the run's scene record -> cameras (run imports us lazily)

    cams = cameras_of(scene, [i]).to(device)
    black = Background(ConstantBackground((0.0, 0.0, 0.0))).to(device)
    out = render_pixels(
        field_, black, cams, render_cfg, pixels, occupancy, appearance=AppearanceRender(model, None, "albedo")
    )
    keep = out["opacity"] >= MIN_OPACITY
    if int(keep.sum()) < MIN_PIXELS:
        raise T23dError(
            f"--albedo-reference: only {int(keep.sum())} of the {len(pixels)} pixels in the box {ref.box} of "
            f"{ref.photo} show the reconstructed surface; the card must be part of what the run "
            "reconstructs (inside the object's box and masks), and the box well inside the card"
        )
    albedo = out["rgb"][keep] / out["opacity"][keep, None]  # [K, 3] sRGB (black background removed)
    linear = srgb_to_linear(albedo).double()
    mean = linear.mean(0)
    if bool((mean <= 1e-4).any()):
        raise T23dError(
            f"--albedo-reference: the field's albedo in the box is black ({mean.tolist()}); the box "
            "shows no lit surface of the card"
        )
    target = torch.tensor(ref.reflectance, dtype=torch.float64, device=mean.device)
    gain = target / mean
    spread = float((linear.std(0) / mean).mean()) if len(linear) > 1 else 0.0
    report = {
        "method": "albedo_reference",
        "photo": ref.photo,
        "box_px": list(ref.box),
        "reflectance": list(ref.reflectance),
        "pixels": int(keep.sum()),
        "albedo_before_linear": [round(float(v), 5) for v in mean],
        "gain": [round(float(v), 5) for v in gain],
        "relative_spread": round(spread, 4),
    }
    if spread > 0.25:
        log.warning(
            "the albedo in the reference box varies by %.0f %% (relative): the box may stray off the card",
            100 * spread,
        )
    log.info("albedo calibrated to the reference in %s: gain %s (R, G, B)", ref.photo, report["gain"])
    return gain.float(), report
