"""Image file helpers: listing photos, reading them as sRGB float arrays, resizing.

Images are returned as float32 ``[H, W, C]`` in ``[0, 1]`` (sRGB values, no linearisation),
``C = 3`` (RGB) or ``4`` (RGBA, straight / un-premultiplied alpha). 16-bit PNGs keep their precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from t23d.common.errors import T23dError

#: File extensions treated as photos (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, reading only its header."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:  # PIL raises many types for bad files
        raise T23dError(f"cannot read image {path}: {e}") from e


def load_image(path: Path) -> np.ndarray:
    """Read an image as float32 ``[H, W, 3|4]`` in ``[0, 1]``; a corrupt file raises naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32) / 65535.0
                return np.repeat(arr[..., None], 3, axis=2)
            if im.mode not in ("RGB", "RGBA"):
                has_alpha = "A" in im.getbands() or "transparency" in im.info
                im = im.convert("RGBA" if has_alpha else "RGB")
            arr = np.asarray(im)
    except Exception as e:
        raise T23dError(f"cannot read image {path}: {e}") from e
    return arr.astype(np.float32) / 255.0


def load_mask(path: Path) -> np.ndarray:
    """Read a mask image as float32 ``[H, W]`` in ``[0, 1]`` (first channel, or alpha when RGBA)."""
    img = load_image(path)
    return img[..., 3] if img.shape[2] == 4 else img[..., 0]


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize float ``[H, W, C]`` to ``[height, width, C]``.

    Exact integer shrink factors use a box filter (a mean over blocks); anything else uses PIL's
    antialiased bicubic filter per channel in float.
    """
    from PIL import Image

    h, w, c = image.shape
    if (width, height) == (w, h):
        return image
    if w % width == 0 and h % height == 0 and w // width == h // height:
        f = w // width
        return image.reshape(height, f, width, f, c).mean(axis=(1, 3)).astype(np.float32)
    chans = [
        np.asarray(
            Image.fromarray(image[..., i].astype(np.float32), mode="F").resize((width, height), Image.BICUBIC)
        )
        for i in range(c)
    ]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0).astype(np.float32)
