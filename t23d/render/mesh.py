"""CPU mesh rendering for previews and the fidelity check.

Backends (``ExportConfig.render_backend``):
- ``"open3d"``: ``open3d.t.geometry.RaycastingScene`` (Embree BVH ray casting, multi-threaded, exact
  ray-triangle hits; ~0.1 s for 50k triangles at 256^2). Preferred: it is the fastest CPU option here
  and needs no rasterisation approximations.
- ``"raster"``: t23d's PyTorch z-buffer rasteriser, the torch backend of the differentiable rasteriser
  (:func:`t23d.render.diffrast_torch.rasterize_screen`, in float64), with perspective-correct
  barycentrics. No extra dependency; used when open3d does not import (open3d is an optional extra and
  needs libusb on Linux). About as fast as open3d here (24 views at 512² of a 200k-face mesh: 1.8 s
  against open3d's 1.9 s and 12.9 s for the numpy rasteriser it replaced). trimesh's ray casting is not
  used: without embree it is orders of magnitude slower.
- ``"auto"``: open3d if it imports, else raster.

Cameras: camera-to-world 4x4 in the OpenGL convention (camera looks down -Z, +Y up, +X right);
intrinsics ``[fx, fy, cx, cy]`` in pixels with pixel (column i, row j) centred at (i + 0.5, j + 0.5),
row 0 at the top. World frame +Z up. Colours sRGB in [0, 1], composited on black (premultiplied).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from t23d.common.errors import ConfigError

log = logging.getLogger(__name__)

Camera = tuple[np.ndarray, np.ndarray, int, int]
"""(c2w [4, 4] OpenGL camera-to-world, intrinsics [fx, fy, cx, cy], H, W)."""


@dataclass
class MeshAppearance:
    """Surface colour of a mesh: a texture with per-vertex UVs, or per-vertex colours."""

    uvs: np.ndarray | None = None
    """[V, 2] texture coordinates in [0, 1], v up (image row 0 = v 1)."""
    texture: np.ndarray | None = None
    """[S, S, 3] uint8 sRGB texture."""
    vertex_colors: np.ndarray | None = None
    """[V, 3] uint8 sRGB colours, used when there is no texture."""


def resolve_backend(backend: str) -> str:
    """Map "auto" to "open3d" or "raster"; check an explicit "open3d" imports."""
    return resolve_open3d_option(
        "render_backend", backend, "raster", "rendering meshes with the PyTorch rasteriser"
    )


def resolve_open3d_option(option: str, backend: str, fallback: str, fallback_action: str) -> str:
    """An ``auto | open3d | <fallback>`` option: "auto" becomes "open3d" when open3d imports, else
    ``fallback`` (logged as ``fallback_action``); an explicit "open3d" must import (else ConfigError)."""
    if backend not in ("auto", "open3d", fallback):
        raise ConfigError(f"{option}: invalid value {backend!r}; accepted: 'auto', 'open3d', '{fallback}'")
    if backend == fallback:
        return backend
    try:
        import open3d  # noqa: F401
    except (ImportError, OSError) as e:
        if backend == "open3d":
            raise ConfigError(
                f"{option}='open3d' but open3d does not import ({e}); pip install open3d-cpu (and "
                f"apt-get install libusb-1.0-0), or use {option}='{fallback}'"
            ) from e
        log.info("open3d unavailable (%s); %s", e, fallback_action)
        return fallback
    return "open3d"


def look_at(
    eye: np.ndarray, target: np.ndarray, up: tuple[float, float, float] = (0.0, 0.0, 1.0)
) -> np.ndarray:
    """OpenGL camera-to-world [4, 4] at ``eye`` looking at ``target`` with ``up`` (+Z) roughly up on screen."""
    up = np.asarray(up, dtype=np.float64)
    back = eye - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-8:
        right = np.cross(np.array([0.0, 1.0, 0.0]), back)
    right = right / np.linalg.norm(right)
    cam_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, cam_up, back, eye
    return c2w


def orbit_cameras(
    aabb: np.ndarray, num_views: int, size: int, fov_deg: float = 40.0, elevation_deg: float = 20.0
) -> list[Camera]:
    """``num_views`` cameras evenly spaced in azimuth around the aabb centre, all seeing the whole aabb.

    +Z is up; the cameras sit at ``elevation_deg`` above the horizon at a distance where the aabb's
    bounding sphere fills the field of view (with a 5 % margin).
    """
    box = np.asarray(aabb, dtype=np.float64)
    center = box.mean(axis=0)
    radius = 0.5 * np.linalg.norm(box[1] - box[0])
    dist = 1.05 * radius / np.sin(np.radians(fov_deg) / 2.0)
    focal = 0.5 * size / np.tan(np.radians(fov_deg) / 2.0)
    intr = np.array([focal, focal, size / 2.0, size / 2.0])
    el = np.radians(elevation_deg)
    cams = []
    for k in range(num_views):
        az = 2.0 * np.pi * k / max(num_views, 1) + np.radians(30.0)
        eye = center + dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        cams.append((look_at(eye, center), intr.copy(), int(size), int(size)))
    return cams


def camera_rays(
    c2w: np.ndarray, intrinsics: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """World ray origins and unit directions, each [H*W, 3] float64, row-major from the top-left pixel."""
    fx, fy, cx, cy = (float(x) for x in np.asarray(intrinsics).reshape(-1)[:4])
    j, i = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    d_cam = np.stack([(i - cx) / fx, -(j - cy) / fy, -np.ones_like(i)], axis=-1).reshape(-1, 3)
    d = d_cam @ np.asarray(c2w, dtype=np.float64)[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.broadcast_to(np.asarray(c2w, dtype=np.float64)[:3, 3], d.shape)
    return o, d


def _open3d_scene(vertices: np.ndarray, faces: np.ndarray):
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32)),
    )
    return scene


def _cast_open3d(vertices: np.ndarray, faces: np.ndarray, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    return _cast_open3d_scene(_open3d_scene(vertices, faces), cam)


def _cast_open3d_scene(scene, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d

    c2w, intr, h, w = cam
    o, d = camera_rays(c2w, intr, h, w)
    rays = o3d.core.Tensor(np.concatenate([o, d], axis=1).astype(np.float32))
    hit = scene.cast_rays(rays)
    ids = hit["primitive_ids"].numpy().astype(np.int64)
    uv = hit["primitive_uvs"].numpy().astype(np.float64)  # hit = (1-u-v) v0 + u v1 + v v2
    tri = np.where(ids == o3d.t.geometry.RaycastingScene.INVALID_ID, -1, ids)
    bary = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
    return tri, bary


def _cast_raster(vertices: np.ndarray, faces: np.ndarray, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from t23d.render.cameras import Cameras
    from t23d.render.diffrast import project
    from t23d.render.diffrast_torch import barycentrics, rasterize_screen

    c2w, intr, h, w = cam
    cams = Cameras(
        torch.as_tensor(np.asarray(c2w, dtype=np.float64))[None],
        torch.as_tensor(np.asarray(intr, dtype=np.float64).reshape(-1)[:4])[None],
        int(w),
        int(h),
    )
    f = torch.as_tensor(np.asarray(faces, dtype=np.int64))
    with torch.no_grad():
        screen = project(torch.as_tensor(np.asarray(vertices, dtype=np.float64)), cams)  # [1, V, 3]
        # no clipping: faces with a corner behind the near plane are not drawn
        tri = rasterize_screen(screen, f, int(h), int(w), near=1e-6)
        bary, _ = barycentrics(screen, f, tri)
    return tri.reshape(-1).numpy(), bary.reshape(-1, 3).numpy()


def cast(vertices: np.ndarray, faces: np.ndarray, cam: Camera, backend: str) -> tuple[np.ndarray, np.ndarray]:
    """First hit per pixel: (triangle [H*W] int64, -1 = miss; barycentrics [H*W, 3])."""
    if resolve_backend(backend) == "open3d":
        return _cast_open3d(vertices, faces, cam)
    return _cast_raster(vertices, faces, cam)


def cast_views(
    vertices: np.ndarray, faces: np.ndarray, cams: list[Camera], backend: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`cast` for several views of one mesh; open3d builds its BVH once for all of them."""
    if resolve_backend(backend) != "open3d":
        for cam in cams:
            yield _cast_raster(vertices, faces, cam)
        return
    scene = _open3d_scene(vertices, faces)
    for cam in cams:
        yield _cast_open3d_scene(scene, cam)


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup [N, 3] float in [0, 1] of uint8 ``texture`` [S, S, 3] at ``uv`` [N, 2] (v up), clamped."""
    s_h, s_w = texture.shape[:2]
    x = np.clip(uv[:, 0] * s_w - 0.5, 0.0, s_w - 1.0)
    y = np.clip((1.0 - uv[:, 1]) * s_h - 0.5, 0.0, s_h - 1.0)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, s_w - 1), np.minimum(y0 + 1, s_h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    t = texture.astype(np.float64) / 255.0
    top = t[y0, x0] * (1 - fx) + t[y0, x1] * fx
    bottom = t[y1, x0] * (1 - fx) + t[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def surface_color(faces: np.ndarray, look: MeshAppearance, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Unlit colour [P, 3] in [0, 1] at hits (triangle [P], barycentrics [P, 3])."""
    corners = faces[tri]  # [P, 3]
    if look.texture is not None and look.uvs is not None:
        uv = np.einsum("pk,pkc->pc", bary, look.uvs[corners].astype(np.float64))
        return sample_texture(look.texture, uv)
    if look.vertex_colors is not None:
        return np.einsum("pk,pkc->pc", bary, look.vertex_colors[corners].astype(np.float64) / 255.0)
    return np.full((len(tri), 3), 0.8)


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    look: MeshAppearance,
    cam: Camera,
    backend: str = "auto",
    supersample: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Unlit render: (rgb [H, W, 3] float in [0, 1] premultiplied, i.e. composited on black; coverage
    [H, W] float in [0, 1]).

    ``supersample`` s > 1 anti-aliases as an engine's multisampling does: s x s rays per pixel on a
    regular grid, averaged (coverage is then the fraction of rays that hit). s = 1 gives 0/1 coverage.
    """
    c2w, intr, h, w = cam
    s = int(supersample)
    if s < 1:
        raise ConfigError(f"supersample must be an integer >= 1; got {supersample!r}")
    fine = (c2w, np.asarray(intr, dtype=np.float64).reshape(-1)[:4] * s, h * s, w * s)
    tri, bary = cast(vertices, faces, fine, backend)
    hit = tri >= 0
    rgb = np.zeros((h * s * w * s, 3))
    rgb[hit] = surface_color(faces, look, tri[hit], bary[hit])
    rgb = rgb.reshape(h, s, w, s, 3).mean(axis=(1, 3))
    coverage = hit.astype(np.float64).reshape(h, s, w, s).mean(axis=(1, 3))
    return rgb, coverage


def render_preview(
    vertices: np.ndarray, faces: np.ndarray, look: MeshAppearance, aabb: np.ndarray, size: int, backend: str
) -> np.ndarray:
    """A shaded RGBA uint8 [size, size, 4] preview from a three-quarter view (transparent background).

    Colour x (0.35 + 0.65 * max(0, n . l)) with a light from above-front; +Z up.
    """
    cam = orbit_cameras(aabb, 1, size, elevation_deg=25.0)[0]
    tri, bary = cast(vertices, faces, cam, backend)
    hit = tri >= 0
    out = np.zeros((size * size, 4))
    if hit.any():
        col = surface_color(faces, look, tri[hit], bary[hit])
        v = np.asarray(vertices, dtype=np.float64)
        f = faces[tri[hit]]
        n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
        light = cam[0][:3, 2] + np.array([0.0, 0.0, 1.0])  # towards the camera and up
        light /= np.linalg.norm(light)
        shade = 0.35 + 0.65 * np.clip(n @ light, 0.0, 1.0)
        out[hit, :3] = col * shade[:, None]
        out[hit, 3] = 1.0
    return np.round(out.reshape(size, size, 4) * 255).astype(np.uint8)
