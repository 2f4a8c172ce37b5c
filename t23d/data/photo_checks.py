"""Photos that are blurred or badly exposed, found with two cheap measures and listed (never dropped).

* **Blur**: the variance of the Laplacian of the luminance (Pech-Pacheco et al. 2000), a measure of
  how much fine detail a photo has. Its scale depends on the scene, so a photo is *blurred* when its
  value is below :data:`BLUR_RATIO` x the capture's median (captures of at least
  :data:`MIN_PHOTOS_FOR_BLUR` photos; a shaken or misfocused shot among sharp ones stands out).
* **Exposure**: the share of clipped pixels (luminance >= 0.98: *overexposed*, <= 0.02: *underexposed*)
  above :data:`CLIPPED_FRACTION`, or a mean luminance outside [:data:`DARK_MEAN`, :data:`BRIGHT_MEAN`].

Luminance is Rec. 601 luma of the sRGB values in [0, 1]. Photos are measured at most
:data:`MEASURE_SIZE` pixels on the long side (box-filtered), so the numbers are comparable across
captures of different resolutions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: A photo is blurred below this fraction of the capture's median sharpness.
BLUR_RATIO = 0.35
#: Fewest photos for the relative blur test.
MIN_PHOTOS_FOR_BLUR = 5
#: Share of clipped pixels above which a photo is over- or underexposed.
CLIPPED_FRACTION = 0.25
#: Mean luminance below which a photo is underexposed.
DARK_MEAN = 0.08
#: Mean luminance above which a photo is overexposed.
BRIGHT_MEAN = 0.92
#: Long side (pixels) photos are measured at.
MEASURE_SIZE = 512


@dataclass(frozen=True)
class PhotoStats:
    """The measures of one photo."""

    sharpness: float
    """Variance of the Laplacian of the luminance (at most :data:`MEASURE_SIZE` px), in luminance^2."""
    brightness: float
    """Mean luminance in [0, 1]."""
    dark_fraction: float
    """Share of pixels with luminance <= 0.02."""
    bright_fraction: float
    """Share of pixels with luminance >= 0.98."""


def photo_stats(image: np.ndarray) -> PhotoStats:
    """Measure a float ``[H, W, C]`` sRGB image in [0, 1] (RGB or RGBA; alpha ignored)."""
    rgb = image[..., :3].astype(np.float32)
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)  # [H, W]
    f = int(np.ceil(max(luma.shape) / MEASURE_SIZE))
    if f > 1:
        h, w = (luma.shape[0] // f) * f, (luma.shape[1] // f) * f
        luma = luma[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    lap = (
        4 * luma[1:-1, 1:-1] - luma[:-2, 1:-1] - luma[2:, 1:-1] - luma[1:-1, :-2] - luma[1:-1, 2:]
    )  # [H-2, W-2]
    return PhotoStats(
        sharpness=float(lap.var()) if lap.size else 0.0,
        brightness=float(luma.mean()),
        dark_fraction=float((luma <= 0.02).mean()),
        bright_fraction=float((luma >= 0.98).mean()),
    )


def flag_photos(stats: dict[str, PhotoStats]) -> list[dict]:
    """Photos with problems: ``[{"image", "issues": [...], **measures}]`` in name order (module docstring)."""
    median_sharpness = float(np.median([s.sharpness for s in stats.values()])) if stats else 0.0
    out = []
    for name in sorted(stats):
        s = stats[name]
        issues = []
        if len(stats) >= MIN_PHOTOS_FOR_BLUR and s.sharpness < BLUR_RATIO * median_sharpness:
            issues.append(
                f"blurred (sharpness {s.sharpness:.2g}, {s.sharpness / median_sharpness:.0%} of the capture's median)"
            )
        if s.bright_fraction > CLIPPED_FRACTION or s.brightness > BRIGHT_MEAN:
            issues.append(
                f"overexposed ({s.bright_fraction:.0%} of pixels clipped white, mean {s.brightness:.2f})"
            )
        if s.dark_fraction > CLIPPED_FRACTION or s.brightness < DARK_MEAN:
            issues.append(
                f"underexposed ({s.dark_fraction:.0%} of pixels clipped black, mean {s.brightness:.2f})"
            )
        if issues:
            out.append({"image": name, "issues": issues, **{k: round(v, 6) for k, v in asdict(s).items()}})
    return out
