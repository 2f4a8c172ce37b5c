"""Image metrics: PSNR and SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
"""Side of SSIM's Gaussian window in pixels: images must be at least this large."""


def psnr(a: Tensor, b: Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (any matching shapes)."""
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else -10.0 * torch.log10(torch.tensor(mse)).item()


def ssim(a: Tensor, b: Tensor) -> float:
    """Mean SSIM of two images [H, W, 3] in [0, 1]."""
    x = a.permute(2, 0, 1)[None].float()
    y = b.permute(2, 0, 1)[None].float()
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float32) - SSIM_WINDOW // 2
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(3, 1, SSIM_WINDOW, SSIM_WINDOW)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, window, groups=3)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.mean())
