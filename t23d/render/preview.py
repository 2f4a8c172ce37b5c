"""Preview images: grids of views and turntable animations, written atomically."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from t23d.common.atomic import write_with_atomic


def to_uint8(images: Tensor) -> np.ndarray:
    """``[..., C]`` float in [0, 1] -> uint8 numpy."""
    return (images.detach().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def straight_rgba(rgb: Tensor, opacity: Tensor, background: Tensor, min_alpha: float = 1.0 / 255.0) -> Tensor:
    """The field's own colour with its opacity as alpha, ``[..., 4]`` in [0, 1] (straight, not premultiplied).

    ``rgb`` [..., 3] is composited over ``background`` [..., 3] with ``opacity`` [...]; the field's
    premultiplied colour is ``rgb - (1 - opacity) * background`` and dividing by the opacity gives the
    straight colour PNG and glTF expect. Pixels with ``opacity < min_alpha`` get colour 0 and alpha 0.
    """
    alpha = opacity.clamp(0.0, 1.0)[..., None]  # [..., 1]
    premultiplied = rgb - (1.0 - alpha) * background  # [..., 3]
    seen = alpha >= min_alpha
    color = torch.where(seen, premultiplied / alpha.clamp(min=min_alpha), torch.zeros_like(rgb))
    return torch.cat([color.clamp(0.0, 1.0), torch.where(seen, alpha, torch.zeros_like(alpha))], dim=-1)


def image_grid(images: Tensor, columns: int | None = None) -> np.ndarray:
    """Tile ``images`` [B, H, W, C] (C = 3 for RGB, 4 for RGBA) into one uint8 image."""
    b, h, w, c = images.shape
    cols = columns or int(math.ceil(math.sqrt(b)))
    rows = int(math.ceil(b / cols))
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    arr = to_uint8(images)
    for i in range(b):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = arr[i]
    return grid


def save_png(path: Path, image: np.ndarray) -> None:
    """Write a uint8 image ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA) as PNG atomically."""
    from PIL import Image

    write_with_atomic(path, lambda p: Image.fromarray(image).save(p, format="PNG"))


def save_gif(path: Path, frames: Tensor, fps: int = 12) -> None:
    """Write frames [T, H, W, 3] in [0, 1] as a looping GIF atomically."""
    from PIL import Image

    arr = to_uint8(frames)
    imgs = [Image.fromarray(a) for a in arr]

    def _write(p: Path) -> None:
        imgs[0].save(p, format="GIF", save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)

    write_with_atomic(path, _write)


_ = torch
