"""Differentiable rasterisation of triangle meshes: nvdiffrast on CUDA, plain PyTorch everywhere.

Used by the refine stage (:mod:`t23d.optimise.refine`), which optimises an explicit textured mesh.
(:mod:`t23d.render.raster` is the numpy rasteriser of texture baking; :mod:`t23d.render.mesh` casts
meshes for previews and fidelity renders, with open3d or with this module's torch z-buffer.)

Backends (``RasterizerConfig.backend``):

- ``"torch"``: :mod:`t23d.render.diffrast_torch`, hard-edged z-buffer visibility, differentiable
  perspective-correct barycentrics, and nvdiffrast's analytic edge anti-aliasing for silhouette
  gradients. Runs on any device; this is the specification.
- ``"nvdiffrast"``: NVIDIA's ``nvdiffrast.torch`` (``RasterizeCudaContext``, ``rasterize``,
  ``antialias`` with a topology hash) on a CUDA device. Optional: detected at run time.
- ``"auto"``: nvdiffrast when the device is CUDA and it imports, else torch; the choice is logged once.
  An explicit ``"nvdiffrast"`` that is unavailable raises :class:`ConfigError` with the cause.

Both backends return the same :class:`Rasterized` (visible triangle, barycentrics, depth), so
:func:`interpolate` is shared; only visibility and anti-aliasing differ.

Conventions: world +Z up; cameras are :class:`~t23d.render.cameras.Cameras` (OpenGL camera-to-world,
intrinsics ``[fx, fy, cx, cy]`` in pixels, pixel centres at +0.5). Image row 0 is the top, as in every
t23d image. No back-face culling (the z-buffer resolves visibility).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from t23d.common.errors import ConfigError
from t23d.render.cameras import Cameras

log = logging.getLogger(__name__)

RasterBackend = Literal["auto", "nvdiffrast", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "nvdiffrast", "torch")


@dataclass
class RasterizerConfig:
    """How meshes are rasterised in the refine stage."""

    backend: RasterBackend = "auto"
    """``"torch"`` (any device), ``"nvdiffrast"`` (CUDA, optional install) or ``"auto"`` (nvdiffrast on
    a CUDA device when it imports, else torch)."""
    near: float = 0.05
    """Near plane (world units): the torch backend drops triangles with a corner closer than this;
    nvdiffrast clips them."""
    far: float = 100.0
    """Far plane (world units) of nvdiffrast's clip-space depth."""
    max_candidates: int = 2_000_000
    """Torch backend: (pixel, triangle) candidates evaluated at once (bounds memory, ~100 B each)."""


@dataclass
class Rasterized:
    """What a rasterisation pass produced for ``B`` views of one mesh."""

    tri: Tensor
    """``[B, H, W]`` int64 index of the visible triangle, -1 for background."""
    bary: Tensor
    """``[B, H, W, 3]`` perspective-correct barycentrics of the visible triangle at each pixel centre;
    differentiable w.r.t. the vertex positions; 0 on background."""
    depth: Tensor
    """``[B, H, W]`` view depth of the visible surface (distance along the viewing axis); 0 on background."""
    screen: Tensor
    """``[B, V, 3]`` per-view vertex ``(x, y, depth)`` in pixels (torch backend), or ``[B, V, 4]`` clip-space
    positions (nvdiffrast); differentiable."""
    raw: Any = None
    """Backend-specific data (nvdiffrast's ``rast`` tensor)."""

    @property
    def mask(self) -> Tensor:
        """``[B, H, W]`` bool: pixels covered by a triangle."""
        return self.tri >= 0


def project(vertices: Tensor, cameras: Cameras) -> Tensor:
    """Per-view screen positions ``[B, V, 3]``: pixel ``x`` (column), pixel ``y`` (row, from the top),
    view depth ``d`` (> 0 in front). Differentiable w.r.t. ``vertices`` [V, 3] or [B, V, 3]."""
    c2w = cameras.c2w.to(vertices.dtype)  # [B, 4, 4]
    rot, t = c2w[:, :3, :3], c2w[:, :3, 3]
    v = vertices if vertices.dim() == 3 else vertices[None].expand(len(cameras), -1, -1)
    p_cam = torch.einsum("bvi,bij->bvj", v - t[:, None, :], rot)  # R^T (p - t): [B, V, 3]
    depth = -p_cam[..., 2]
    d = depth.clamp(min=1e-8)
    intr = cameras.intrinsics.to(vertices.dtype)
    fx, fy, cx, cy = (intr[:, k, None] for k in range(4))
    x = fx * p_cam[..., 0] / d + cx
    y = -fy * p_cam[..., 1] / d + cy
    return torch.stack([x, y, depth], -1)


def _clip_positions(vertices: Tensor, cameras: Cameras, near: float, far: float) -> Tensor:
    """Clip-space ``[B, V, 4]`` for nvdiffrast: its pixel ``(c, r)`` (row 0 at y_ndc = -1) is t23d's."""
    c2w = cameras.c2w.to(vertices.dtype)
    rot, t = c2w[:, :3, :3], c2w[:, :3, 3]
    v = vertices if vertices.dim() == 3 else vertices[None].expand(len(cameras), -1, -1)
    p_cam = torch.einsum("bvi,bij->bvj", v - t[:, None, :], rot)
    d = -p_cam[..., 2]
    intr = cameras.intrinsics.to(vertices.dtype)
    fx, fy, cx, cy = (intr[:, k, None] for k in range(4))
    w_img, h_img = float(cameras.width), float(cameras.height)
    x = 2.0 * (fx * p_cam[..., 0] + cx * d) / w_img - d  # = x_ndc * d, x_ndc = 2 x_pix / W - 1
    y = 2.0 * (-fy * p_cam[..., 1] + cy * d) / h_img - d
    z = (far + near) / (far - near) * d - 2.0 * far * near / (far - near)
    return torch.stack([x, y, z, d], -1).contiguous()


def nvdiffrast_available() -> tuple[bool, str]:
    """Whether ``nvdiffrast.torch`` imports and CUDA is available, and why not."""
    if not torch.cuda.is_available():
        return False, "no CUDA device is available"
    try:
        import nvdiffrast.torch  # noqa: F401
    except Exception as e:  # ImportError, or a failed extension build
        return False, f"nvdiffrast does not import ({type(e).__name__}: {e})"
    return True, ""


def resolve_backend(backend: str, device: torch.device) -> str:
    """Map ``auto`` to a concrete backend for ``device``; check that an explicit choice can run."""
    if backend not in BACKENDS:
        raise ConfigError(f"rasterizer.backend: invalid value {backend!r}; accepted: {', '.join(BACKENDS)}")
    if backend == "torch":
        return backend
    ok, why = nvdiffrast_available() if torch.device(device).type == "cuda" else (False, "the device is CPU")
    if backend == "nvdiffrast" and not ok:
        raise ConfigError(
            f"rasterizer.backend='nvdiffrast' but it cannot run here: {why}. Install nvdiffrast "
            "(pip install git+https://github.com/NVlabs/nvdiffrast) on a CUDA machine, or use backend 'torch'"
        )
    chosen = "nvdiffrast" if ok else "torch"
    if backend == "auto":
        log.info("rasterizer: %s%s", chosen, "" if ok else f" (nvdiffrast not used: {why})")
    return chosen


class Rasterizer:
    """Rasterise a mesh into ``B`` views; see the module docstring for the backends."""

    def __init__(self, cfg: RasterizerConfig, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.backend = resolve_backend(cfg.backend, self.device)
        self._ctx: Any = None
        if self.backend == "nvdiffrast":
            import nvdiffrast.torch as dr

            self._ctx = dr.RasterizeCudaContext(device=self.device)

    def topology(self, faces: Tensor, num_vertices: int) -> Any:
        """What :meth:`antialias` needs about the mesh's connectivity (compute once per mesh)."""
        if self.backend == "nvdiffrast":
            import nvdiffrast.torch as dr

            return dr.antialias_construct_topology_hash(faces.int().contiguous())
        from t23d.render.diffrast_torch import edge_wings

        return edge_wings(faces, num_vertices)

    def rasterize(self, vertices: Tensor, faces: Tensor, cameras: Cameras) -> Rasterized:
        """Visible triangle, barycentrics and depth per pixel of every camera.

        Args:
            vertices: ``[V, 3]`` world positions (or ``[B, V, 3]``, one set per view), differentiable.
            faces: ``[F, 3]`` vertex indices.
            cameras: ``B`` cameras of one image size.
        """
        h, w = cameras.height, cameras.width
        if self.backend == "nvdiffrast":
            import nvdiffrast.torch as dr

            clip = _clip_positions(vertices.float(), cameras, self.cfg.near, self.cfg.far)
            rast, _ = dr.rasterize(self._ctx, clip, faces.int().contiguous(), resolution=[h, w])
            tri = rast[..., 3].long() - 1
            u, v = rast[..., 0], rast[..., 1]
            covered = (tri >= 0).to(u.dtype)
            bary = torch.stack([u, v, 1.0 - u - v], -1) * covered[..., None]
            depth_v = clip[..., 3:4]  # [B, V, 1] view depth per vertex
            depth, _ = dr.interpolate(depth_v.contiguous(), rast, faces.int().contiguous())
            return Rasterized(tri, bary, depth[..., 0] * covered, clip, raw=rast)
        from t23d.render.diffrast_torch import barycentrics, rasterize_screen

        screen = project(vertices, cameras)
        tri = rasterize_screen(screen, faces, h, w, self.cfg.near, self.cfg.max_candidates)
        bary, depth = barycentrics(screen, faces, tri)
        return Rasterized(tri, bary, depth, screen)

    def antialias(self, color: Tensor, rast: Rasterized, faces: Tensor, topology: Any) -> Tensor:
        """Anti-alias silhouette edges of ``color`` [B, H, W, C] (composite the background first);
        gradients reach the silhouette vertices."""
        if self.backend == "nvdiffrast":
            import nvdiffrast.torch as dr

            return dr.antialias(
                color.contiguous(), rast.raw, rast.screen, faces.int().contiguous(), topology_hash=topology
            )
        from t23d.render.diffrast_torch import antialias

        return antialias(color, rast.tri, rast.depth, rast.screen, faces, topology)


def interpolate(attributes: Tensor, rast: Rasterized, faces: Tensor) -> Tensor:
    """Per-pixel ``[B, H, W, C]`` of per-vertex ``attributes`` [V, C], 0 on background; differentiable
    w.r.t. the attributes and (through the barycentrics) the vertex positions."""
    tri = rast.tri.clamp(min=0)  # [B, H, W]
    corners = faces.long()[tri]  # [B, H, W, 3]
    values = attributes[corners]  # [B, H, W, 3, C]
    out = (rast.bary[..., None].to(values.dtype) * values).sum(-2)
    return out * rast.mask[..., None].to(out.dtype)
