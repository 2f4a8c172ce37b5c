"""Differentiable renders of a textured mesh: rasterise, look the colour up at the surface points,
shade, composite over the background, anti-alias (used by the refine stage's loop, previews and
fidelity check).

Colours are sRGB-encoded values in [0, 1]; world frame +Z up; cameras as :mod:`t23d.render.cameras`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from t23d.render.cameras import Cameras
from t23d.render.diffrast import Rasterizer, interpolate
from t23d.render.rays import camera_rays
from t23d.render.shading import Shading, shade


@dataclass
class SurfaceRender:
    """Images of a mesh from ``B`` cameras."""

    rgb: Tensor
    """``[B, H, W, 3]`` colour composited over the background, anti-aliased; differentiable."""
    opacity: Tensor
    """``[B, H, W]`` anti-aliased coverage in [0, 1]; differentiable."""
    mask: Tensor
    """``[B, H, W]`` bool: pixel centres covered by the mesh."""
    points: Tensor
    """``[P, 3]`` surface points of the covered pixels (for regularisers), detached."""


def render_surface(
    rasterizer: Rasterizer,
    topology: Any,
    vertices: Tensor,
    faces: Tensor,
    color_fn: Callable[[Tensor], Tensor],
    cameras: Cameras,
    background_fn: Callable[[Tensor], Tensor],
    shading: Shading | None = None,
) -> SurfaceRender:
    """Render the mesh ``vertices`` [V, 3] / ``faces`` [F, 3] coloured by ``color_fn`` (points [P, 3] ->
    sRGB [P, 3]) over ``background_fn`` (unit ray directions [R, 3] -> sRGB [R, 3]).

    ``shading`` (``lambertian`` / ``textureless``) lights the surface with interpolated vertex normals
    and the shading's per-view point light, as the stage-1 renderer does; None or ``albedo`` is unlit.
    """
    from t23d.field.mesh_geometry import vertex_normals

    b, h, w = len(cameras), cameras.height, cameras.width
    rast = rasterizer.rasterize(vertices, faces, cameras)
    mask = rast.mask  # [B, H, W]
    idx = torch.nonzero(mask.reshape(-1)).reshape(-1)  # covered pixels, camera-major
    points = interpolate(vertices, rast, faces).reshape(-1, 3)[idx]  # [P, 3]
    albedo = color_fn(points)
    if shading is not None and shading.mode != "albedo":
        normals = interpolate(vertex_normals(vertices, faces), rast, faces).reshape(-1, 3)[idx]
        normals = torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)
        light = shading.light_positions[idx // (h * w)] if shading.light_positions is not None else None
        color = shade(albedo, normals, points, light, shading.mode, shading.ambient)
    else:
        color = albedo
    rays = camera_rays(cameras)
    bg = background_fn(rays.directions).to(color.dtype)  # [B*H*W, 3]
    covered = mask.reshape(-1, 1).to(color.dtype)
    fg = torch.zeros(b * h * w, 3, dtype=color.dtype, device=color.device).index_put((idx,), color)
    image = (covered * fg + (1.0 - covered) * bg).reshape(b, h, w, 3)
    stacked = torch.cat([image, mask[..., None].to(image.dtype)], -1)
    out = rasterizer.antialias(stacked, rast, faces, topology)
    return SurfaceRender(out[..., :3], out[..., 3].clamp(0.0, 1.0), mask, points.detach())
