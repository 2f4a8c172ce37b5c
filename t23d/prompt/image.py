"""The image prompt of an image -> 3D run: the photo, its object mask, and the recentred square image.

An image run is conditioned on one photo of an object, the way a text run is conditioned on its prompt,
so the photo is handled here beside the text prompt: it is validated before anything is created
(a bad input never leaves a half-made run directory) and turned into what the downstream stages use:
the conditioning image of the prior (``guidance/``) and the target of the reference-view losses
(``optimise/``). Decoding files reuses :mod:`t23d.data.images`.

The object's silhouette comes from the image's alpha channel or from an explicit mask file: t23d does
not remove backgrounds itself (segmentation models need weight downloads). As threestudio's and
stable-dreamfusion's image preprocessing does, the object is cropped to its bounding box, rescaled so
that its longer side fills ``1 - border_ratio`` of a square image and centred in it.

Colours are sRGB display values in [0, 1]; alpha is straight (not premultiplied).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t23d.common.errors import ConfigError, T23dError

logger = logging.getLogger(__name__)

MIN_IMAGE_SIDE = 32
"""Smallest accepted width/height of an input image, in pixels."""

_NO_MASK_HELP = (
    "pass the object's mask with --mask MASK.png (white = object, black = background, the image's size), "
    "or an RGBA image whose background is transparent; t23d does not remove backgrounds itself (that needs "
    "segmentation model weights)"
)


@dataclass
class ImagePromptConfig:
    """How the input photo is turned into the square reference image."""

    size: int = 256
    """Side in pixels of the processed square image (kept in the run directory as ``input/reference.png``);
    Zero123 is trained on 256 px images."""
    border_ratio: float = 0.2
    """Fraction of the image side left empty around the object's longer side when recentring (0-0.9);
    threestudio and stable-dreamfusion use 0.2."""
    recenter: bool = True
    """Crop the object to its mask's bounding box, rescale it to fill ``1 - border_ratio`` of the image and
    centre it. ``False`` keeps the photo's framing (padded to a square around its centre)."""
    mask_threshold: float = 0.5
    """Mask (or alpha) values above this mark object pixels, for the bounding box and the checks (0-1)."""


@dataclass
class ImagePrompt:
    """A processed input image: the object's straight colours and its alpha on a square canvas."""

    rgb: np.ndarray
    """``[S, S, 3]`` float32 straight sRGB colour in [0, 1] (meaningful where ``alpha > 0``)."""
    alpha: np.ndarray
    """``[S, S]`` float32 object coverage in [0, 1]."""

    @property
    def size(self) -> int:
        """Side of the square image in pixels."""
        return int(self.alpha.shape[0])

    def composite(self, background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
        """``[S, S, 3]`` the object over a solid ``background`` (white: what Zero123 was trained on)."""
        a = self.alpha[..., None]
        return (self.rgb * a + np.asarray(background, np.float32) * (1.0 - a)).astype(np.float32)

    def resized(self, size: int) -> ImagePrompt:
        """The prompt at ``size`` x ``size`` (resampled premultiplied, so no background fringe)."""
        if size == self.size:
            return self
        from t23d.data.images import resize

        rgba = np.concatenate([self.rgb * self.alpha[..., None], self.alpha[..., None]], axis=-1)
        return _unpremultiply(resize(rgba.astype(np.float32), size, size))


def _unpremultiply(rgba_premultiplied: np.ndarray) -> ImagePrompt:
    alpha = np.clip(rgba_premultiplied[..., 3], 0.0, 1.0)
    rgb = np.where(
        alpha[..., None] > 1e-4, rgba_premultiplied[..., :3] / np.maximum(alpha[..., None], 1e-4), 0.0
    )
    return ImagePrompt(np.clip(rgb, 0.0, 1.0).astype(np.float32), alpha.astype(np.float32))


def check_image_prompt_config(cfg: ImagePromptConfig, key: str = "reference.image_prompt") -> None:
    """Raise :class:`ConfigError` naming the key for values outside their ranges."""
    if cfg.size < MIN_IMAGE_SIDE:
        raise ConfigError(
            f"config key '{key}.size': invalid value {cfg.size!r}; accepted: an integer >= {MIN_IMAGE_SIDE}"
        )
    if not 0.0 <= cfg.border_ratio <= 0.9:
        raise ConfigError(
            f"config key '{key}.border_ratio': invalid value {cfg.border_ratio!r}; accepted: 0 to 0.9"
        )
    if not 0.0 < cfg.mask_threshold < 1.0:
        raise ConfigError(
            f"config key '{key}.mask_threshold': invalid value {cfg.mask_threshold!r}; accepted: between 0 and 1"
        )


def _read(path: Path, option: str) -> np.ndarray:
    from t23d.data.images import load_image

    if not path.exists():
        raise T23dError(f"{option} {path}: no such file")
    if not path.is_file():
        raise T23dError(f"{option} {path} is not a file; pass an image file (PNG, JPEG, ...)")
    try:
        return load_image(path)
    except T23dError as e:
        raise T23dError(f"{option} {path}: {e}") from e


def read_input_mask(
    image_path: Path, mask_path: Path | None, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate the input photo and its mask; returns ``(rgb [H, W, 3], mask [H, W])`` in [0, 1].

    The mask is ``mask_path`` when given (its first channel, or its alpha when it is RGBA), else the
    image's alpha channel. Raises :class:`T23dError` with the option to fix for: a missing or unreadable
    file, an image smaller than :data:`MIN_IMAGE_SIDE`, no mask at all (RGB without ``--mask``, or an
    alpha channel that is fully opaque), a mask of another size than the image, a mask with no object
    pixel, or a mask with no background pixel.
    """
    image_path = Path(image_path)
    img = _read(image_path, "--image")
    h, w = img.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise T23dError(
            f"--image {image_path} is {w}x{h} px; t23d needs at least {MIN_IMAGE_SIDE} px on each side"
        )
    rgb = img[..., :3]
    if mask_path is not None:
        mask_path = Path(mask_path)
        raw = _read(mask_path, "--mask")
        mask = raw[..., 3] if raw.shape[2] == 4 else raw[..., 0]
        if mask.shape != (h, w):
            raise T23dError(
                f"--mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} px but --image {image_path} is "
                f"{w}x{h} px; the mask must have the image's size"
            )
        source = f"--mask {mask_path}"
    elif img.shape[2] == 4:
        mask = img[..., 3]
        if bool((mask > threshold).all()):
            raise T23dError(
                f"--image {image_path} has an alpha channel but it is fully opaque, so it does not say which "
                f"pixels are the object; {_NO_MASK_HELP}"
            )
        source = f"the alpha channel of --image {image_path}"
    else:
        raise T23dError(f"--image {image_path} has no alpha channel and no --mask was given; {_NO_MASK_HELP}")
    inside = mask > threshold
    if not bool(inside.any()):
        raise T23dError(
            f"{source} marks no object pixel (no value above {threshold}); the object must be white (or "
            "opaque) in the mask"
        )
    if bool(inside.all()):
        raise T23dError(
            f"{source} marks every pixel as the object; the mask must separate the object (white) from its "
            "background (black)"
        )
    count = int(inside.sum())
    if count < 64:
        logger.warning("%s marks only %d object pixels; the reference will be blurry", source, count)
    ys, xs = np.nonzero(inside)
    if ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1:
        logger.warning(
            "the object touches the border of --image %s; it may be cut off in the input", image_path
        )
    return rgb.astype(np.float32), np.clip(mask, 0.0, 1.0).astype(np.float32)


def frame_object(rgb: np.ndarray, mask: np.ndarray, cfg: ImagePromptConfig) -> ImagePrompt:
    """Place the object on a square ``cfg.size`` canvas (recentred and rescaled when ``cfg.recenter``).

    Recentring crops the premultiplied image to the bounding box of ``mask > cfg.mask_threshold``,
    scales it so that its longer side is ``round(size * (1 - border_ratio))`` pixels and pastes it in the
    centre. Without recentring, the photo is padded (transparent) to a square around its centre.
    """
    from t23d.data.images import resize

    rgba = np.concatenate([rgb * mask[..., None], mask[..., None]], axis=-1).astype(np.float32)
    size = cfg.size
    if cfg.recenter:
        ys, xs = np.nonzero(mask > cfg.mask_threshold)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        crop = rgba[y0:y1, x0:x1]
        bh, bw = crop.shape[:2]
        target = max(1, int(round(size * (1.0 - cfg.border_ratio))))
        scale = target / max(bh, bw)
        nh, nw = max(1, int(round(bh * scale))), max(1, int(round(bw * scale)))
        crop = resize(crop, nw, nh)
        canvas = np.zeros((size, size, 4), np.float32)
        top, left = (size - nh) // 2, (size - nw) // 2
        canvas[top : top + nh, left : left + nw] = crop
    else:
        h, w = rgba.shape[:2]
        side = max(h, w)
        square = np.zeros((side, side, 4), np.float32)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = rgba
        canvas = resize(square, size, size)
    return _unpremultiply(canvas)


def load_image_prompt(image_path: Path, mask_path: Path | None, cfg: ImagePromptConfig) -> ImagePrompt:
    """Read, validate (see :func:`read_input_mask`) and frame (see :func:`frame_object`) an input photo."""
    check_image_prompt_config(cfg)
    rgb, mask = read_input_mask(
        Path(image_path), None if mask_path is None else Path(mask_path), cfg.mask_threshold
    )
    return frame_object(rgb, mask, cfg)


def save_image_prompt(prompt: ImagePrompt, path: Path) -> None:
    """Write ``prompt`` as an 8-bit RGBA PNG (straight alpha), atomically."""
    from PIL import Image

    from t23d.common.atomic import write_with_atomic

    rgba = np.concatenate([prompt.rgb, prompt.alpha[..., None]], axis=-1)
    arr = (np.clip(rgba, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    write_with_atomic(path, lambda p: Image.fromarray(arr, mode="RGBA").save(p, format="PNG"))


def read_image_prompt(path: Path) -> ImagePrompt:
    """Read an image prompt written by :func:`save_image_prompt` (a square RGBA PNG)."""
    from t23d.data.images import load_image

    path = Path(path)
    if not path.is_file():
        raise T23dError(f"the run's reference image {path} is missing; the run directory is incomplete")
    img = load_image(path)
    if img.shape[2] != 4 or img.shape[0] != img.shape[1]:
        raise T23dError(f"{path} is not a square RGBA image written by t23d")
    return ImagePrompt(img[..., :3].copy(), img[..., 3].copy())
