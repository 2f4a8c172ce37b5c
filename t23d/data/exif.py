"""Focal length of a photo from its EXIF metadata, in pixels of the photo as stored.

Two sources, in order:

1. ``FocalLengthIn35mmFilm`` (what phones write): the focal length a 36 x 24 mm frame would need for
   the same field of view, taken along the diagonal (the crop-factor definition), so
   ``f_px = f35 * hypot(W, H) / hypot(36, 24)`` for a ``W x H`` photo.
2. ``FocalLength`` (mm) with the sensor's pixel density ``FocalPlaneXResolution`` (pixels per
   ``FocalPlaneResolutionUnit``), scaled from the sensor's full width (``ExifImageWidth``) to the
   photo's width when the photo was resized.

Photos without either (or with nonsense values) give ``None``; SfM then starts from a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

#: EXIF tags (numbers from the EXIF 2.3 standard).
_EXIF_IFD = 0x8769
_FOCAL_LENGTH = 0x920A
_FOCAL_35MM = 0xA405
_FOCAL_PLANE_X_RES = 0xA20E
_FOCAL_PLANE_UNIT = 0xA210
_EXIF_IMAGE_WIDTH = 0xA002
#: FocalPlaneResolutionUnit -> millimetres per unit (2: inch, 3: centimetre, 4: millimetre).
_MM_PER_UNIT = {2: 25.4, 3: 10.0, 4: 1.0}


@dataclass(frozen=True)
class ExifFocal:
    """A focal length read from EXIF."""

    focal_px: float
    """Focal length in pixels of the photo as stored."""
    source: str
    """Which tags gave it, e.g. ``35 mm-equivalent 28 mm``."""


def _number(value: object) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]  # PIL gives IFDRational, int or float
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def exif_focal_length(path: Path) -> ExifFocal | None:
    """The focal length of the photo at ``path`` from EXIF (module docstring), or None."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
            exif = im.getexif()
            ifd = dict(exif.get_ifd(_EXIF_IFD))
    except Exception:  # unreadable metadata is not an error: the image itself is checked elsewhere
        return None
    f35 = _number(ifd.get(_FOCAL_35MM))
    if f35 is not None:
        return ExifFocal(
            f35 * math.hypot(width, height) / math.hypot(36.0, 24.0), f"35 mm-equivalent {f35:g} mm"
        )
    f_mm = _number(ifd.get(_FOCAL_LENGTH))
    res = _number(ifd.get(_FOCAL_PLANE_X_RES))
    unit = _MM_PER_UNIT.get(int(ifd.get(_FOCAL_PLANE_UNIT, 2) or 2))
    if f_mm is None or res is None or unit is None:
        return None
    px_per_mm = res / unit
    sensor_width_px = _number(ifd.get(_EXIF_IMAGE_WIDTH)) or float(width)
    return ExifFocal(
        f_mm * px_per_mm * width / sensor_width_px,
        f"{f_mm:g} mm at {px_per_mm:g} px/mm on the sensor",
    )
