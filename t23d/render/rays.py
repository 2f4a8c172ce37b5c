"""Rays from pinhole cameras (OpenGL convention, pixel centres at +0.5) and ray/box intersection."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from t23d.render.cameras import Cameras


@dataclass
class Rays:
    """A flat batch of rays."""

    origins: Tensor
    """[R, 3] world-space origins."""
    directions: Tensor
    """[R, 3] unit world-space directions."""
    image_ids: Tensor
    """[R] index of the camera each ray comes from."""


def camera_rays(cameras: Cameras, pixels: Tensor | None = None) -> Rays:
    """Rays through pixel centres.

    Args:
        cameras: B cameras.
        pixels: optional ``[R, 3]`` long tensor of ``(camera index, row, column)``; by default every
            pixel of every camera, ordered camera-major then row-major (``[B * H * W]``).
    """
    device = cameras.c2w.device
    if pixels is None:
        b = torch.arange(len(cameras), device=device)
        v = torch.arange(cameras.height, device=device)
        u = torch.arange(cameras.width, device=device)
        bb, vv, uu = torch.meshgrid(b, v, u, indexing="ij")
        cam, row, col = bb.reshape(-1), vv.reshape(-1), uu.reshape(-1)
    else:
        cam, row, col = pixels.unbind(-1)
    intr = cameras.intrinsics[cam]  # [R, 4]
    x = (col.to(intr.dtype) + 0.5 - intr[:, 2]) / intr[:, 0]
    y = -(row.to(intr.dtype) + 0.5 - intr[:, 3]) / intr[:, 1]
    d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # [R, 3]
    c2w = cameras.c2w[cam]  # [R, 4, 4]
    d_world = (c2w[:, :3, :3] @ d_cam[..., None])[..., 0]
    d_world = torch.nn.functional.normalize(d_world, dim=-1)
    origins = c2w[:, :3, 3]
    return Rays(origins.contiguous(), d_world.contiguous(), cam)
