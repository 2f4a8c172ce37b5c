"""Analytic fields for the export tests: a smooth sphere, colour fields and an exact sphere renderer."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (gltf_validate); conftest does it too

RADIUS, WIDTH = 0.5, 0.02
RES = 64
PEAK = RES * math.log(2)  # twice the automatic threshold (ln 2 / voxel) at RES over [-1, 1]^3
AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def sphere_density(
    points: torch.Tensor, center: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> torch.Tensor:
    """PEAK * sigmoid((RADIUS - |x - c|) / WIDTH); its automatic iso-surface at RES is |x - c| = RADIUS."""
    return PEAK * torch.sigmoid((RADIUS - (points - torch.tensor(center)).norm(dim=-1)) / WIDTH)


def constant_color(points: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    return torch.tensor([0.8, 0.4, 0.1]).expand(len(points), 3)


def octant_color(points: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """R = x > 0, G = z > 0 (up), B = y > 0 (field +Y, which is glTF -Z)."""
    return torch.stack([(points[:, 0] > 0), (points[:, 2] > 0), (points[:, 1] > 0)], dim=-1).float()


def smooth_color(points: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """A smooth colour over the sphere (texture-resolution friendly), view independent."""
    return (0.5 + 0.45 * torch.sin(3.0 * points + torch.tensor([0.0, 1.0, 2.0]))).clamp(0, 1)


def sphere_render_fn(color_fn, radius: float = RADIUS, supersample: int = 1):
    """render_field_fn of an opaque sphere at the origin: exact ray-sphere hits, colour from color_fn.

    OpenGL cameras; pixel (i, j) centre at (i + 0.5, j + 0.5); rgb composited on black. ``supersample``
    s casts s x s rays per pixel and averages them (fractional opacity at the silhouette, as a volume
    render has).
    """

    def render(c2w: torch.Tensor, intr: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = supersample
        fx, fy, cx, cy = (float(x) * s for x in intr)
        hs, ws = h * s, w * s
        j, i = torch.meshgrid(torch.arange(hs) + 0.5, torch.arange(ws) + 0.5, indexing="ij")
        d = torch.stack([(i - cx) / fx, -(j - cy) / fy, -torch.ones_like(i)], dim=-1).reshape(-1, 3)
        d = d @ c2w[:3, :3].T
        d = d / d.norm(dim=-1, keepdim=True)
        o = c2w[:3, 3].expand_as(d)
        b = (o * d).sum(-1)
        disc = b**2 - ((o * o).sum(-1) - radius**2)
        hit = disc > 0
        t = -b - disc.clamp(min=0).sqrt()
        p = o + t[:, None] * d
        rgb = torch.zeros(hs * ws, 3)
        if hit.any():
            rgb[hit] = color_fn(p[hit], d[hit])
        rgb = rgb.reshape(h, s, w, s, 3).mean(dim=(1, 3))
        return rgb, hit.float().reshape(h, s, w, s).mean(dim=(1, 3))

    return render
