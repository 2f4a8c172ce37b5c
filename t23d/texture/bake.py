"""Bake a colour field into a UV texture.

Each triangle is rasterised in UV space (vectorised, :mod:`t23d.render.raster`); every texel whose
centre lies inside a triangle, or within one texel outside it (so bilinear filtering at chart borders
reads the chart's own colours), is mapped through clamped barycentrics to its 3D surface point and
interpolated normal, and ``color_fn`` is queried there in chunks. Empty texels within ``padding`` of a
chart take the colour of the nearest baked texel (exact Euclidean nearest, scipy's distance transform);
all remaining texels get the mean baked colour, so mip-mapping never pulls in black.

Conventions: colours are sRGB-encoded display values in [0, 1] and are written unchanged. UVs use
the OpenGL convention (v up); image row 0 is the top (v = 1). View directions point from the camera
toward the surface point.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from t23d.common.errors import ConfigError, T23dError
from t23d.render.raster import rasterize

if TYPE_CHECKING:
    from t23d.texture.photos import PhotoSet

ColorFn = Callable[[Tensor, Tensor], Tensor]
"""(points [N, 3], view_dirs [N, 3] unit, camera -> point) -> sRGB colour [N, 3] in [0, 1]."""

ColorMode = Literal["albedo", "normal_view"]


def check_texture_size(texture_size: int) -> None:
    """Raise ConfigError unless ``texture_size`` is a power of two between 4 and 16384."""
    if isinstance(texture_size, bool) or not isinstance(texture_size, int | np.integer):
        raise ConfigError(f"texture_size must be an integer power of two; got {texture_size!r}")
    if texture_size < 4 or texture_size > 16384 or texture_size & (texture_size - 1):
        raise ConfigError(
            f"texture_size must be a power of two between 4 and 16384 (e.g. 512, 1024, 2048); got {texture_size}"
        )


def _tangent_frame(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors [N, 3] perpendicular to unit normals ``n`` [N, 3] and to each other."""
    helper = np.where(np.abs(n[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    t = np.cross(n, helper)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return t, np.cross(n, t)


def query_colors(
    color_fn: ColorFn, points: np.ndarray, normals: np.ndarray, mode: ColorMode, chunk_size: int
) -> np.ndarray:
    """Colour [N, 3] float32 in [0, 1] at surface ``points`` [N, 3] with unit ``normals`` [N, 3].

    ``albedo``: one query looking straight at the surface (view dir = -normal).
    ``normal_view``: the mean of five queries from inside a 30-degree cone around the normal (straight on
    plus four tilted views), which averages out view-dependent highlights baked into the field.
    """
    if mode == "albedo":
        dirs = [-normals]
    elif mode == "normal_view":
        t, b = _tangent_frame(normals)
        s, c = np.sin(np.radians(30.0)), np.cos(np.radians(30.0))
        dirs = [-normals] + [-(c * normals + s * sgn * ax) for ax in (t, b) for sgn in (1.0, -1.0)]
    else:
        raise ConfigError(f"color_mode must be 'albedo' or 'normal_view'; got {mode!r}")
    out = np.zeros((len(points), 3), dtype=np.float64)
    with torch.no_grad():
        for d in dirs:
            for s in range(0, len(points), chunk_size):
                p = torch.from_numpy(points[s : s + chunk_size].astype(np.float32))
                v = torch.from_numpy(d[s : s + chunk_size].astype(np.float32))
                rgb = torch.as_tensor(color_fn(p, v)).detach().float().cpu().reshape(-1, 3).numpy()
                if len(rgb) != len(p):
                    raise T23dError(
                        f"color_fn returned {len(rgb)} colours for {len(p)} points; expected [N, 3]"
                    )
                out[s : s + chunk_size] += rgb
    out /= len(dirs)
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0).astype(np.float32)


def fill_padding(
    image: np.ndarray, filled: np.ndarray, padding: int, far_value: np.ndarray | None = None
) -> np.ndarray:
    """Dilate baked texels into empty ones: nearest baked colour within ``padding`` px, and elsewhere
    ``far_value`` (default: the mean baked colour).

    ``image`` [S, S, 3] float, ``filled`` [S, S] bool; returns a new image with no empty texel.
    """
    from scipy.ndimage import distance_transform_edt

    if not filled.any():
        return image.copy()
    out = image.copy()
    dist, (ri, ci) = distance_transform_edt(~filled, return_indices=True)
    near = ~filled & (dist <= padding)
    out[near] = image[ri[near], ci[near]]
    far = ~filled & ~near
    out[far] = image[filled].mean(axis=0) if far_value is None else far_value
    return out


def texel_samples(
    vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, normals: np.ndarray, texture_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The surface point behind every texel a chart covers (see the module docstring).

    Returns (texel [P] linear index r * S + c, triangle [P], clamped barycentrics [P, 3], points [P, 3],
    unit interpolated normals [P, 3]); texels within one texel outside a triangle take its nearest point.
    """
    size = int(texture_size)
    uvs = np.asarray(uvs, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    # texel centre (c, r) <-> uv ((c + 0.5) / S, 1 - (r + 0.5) / S)
    xy = np.stack([uvs[:, 0] * size - 0.5, (1.0 - uvs[:, 1]) * size - 0.5], axis=1)  # [V, 2]
    pix, tid, bary = rasterize(xy[faces], size, size, expand=1.0)
    bary = np.clip(bary, 0.0, None)
    bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-12)  # nearest point of the triangle
    corners = faces[tid]  # [P, 3]
    v = np.asarray(vertices, dtype=np.float64)
    n = np.asarray(normals, dtype=np.float64)
    points = np.einsum("pk,pkc->pc", bary, v[corners])  # [P, 3]
    nrm = np.einsum("pk,pkc->pc", bary, n[corners])  # [P, 3]
    length = np.linalg.norm(nrm, axis=1, keepdims=True)
    face_n = np.cross(v[corners[:, 1]] - v[corners[:, 0]], v[corners[:, 2]] - v[corners[:, 0]])
    face_n /= np.maximum(np.linalg.norm(face_n, axis=1, keepdims=True), 1e-30)
    nrm = np.where(length > 1e-8, nrm / np.maximum(length, 1e-30), face_n)
    return pix, tid, bary, points, nrm


def bake_texture(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    normals: np.ndarray,
    color_fn: ColorFn,
    texture_size: int,
    padding: int,
    *,
    color_mode: ColorMode = "albedo",
    chunk_size: int = 65_536,
    stats: dict | None = None,
    photos: PhotoSet | None = None,
    photo_top_k: int = 3,
    photo_match_exposure: bool = False,
    backend: str = "auto",
) -> np.ndarray:
    """Bake ``color_fn`` on the mesh surface into an sRGB texture.

    Args:
        vertices: [V, 3] positions in the field's frame (the frame ``color_fn`` expects).
        faces: [F, 3] triangle indices.
        uvs: [V, 2] texture coordinates in [0, 1], v up (as returned by :func:`unwrap_uv`).
        normals: [V, 3] outward unit vertex normals (interpolated and renormalised per texel).
        color_fn: (points [N, 3], view dirs [N, 3]) -> sRGB [N, 3] in [0, 1].
        texture_size: texture width = height in texels, a power of two.
        padding: texels of dilation around every chart (>= 0).
        color_mode: how view directions are chosen, see :func:`query_colors`.
        chunk_size: points per ``color_fn`` call.
        stats: optional dict receiving ``texels_baked``, ``coverage`` (fraction of the texture) and, with
            ``photos``, ``photo_texture`` (:class:`t23d.texture.photos.PhotoTextureStats` as a dict).
        photos: posed photos in the mesh's frame: texels take their colour from them, ``color_fn``'s
            only where no photo sees them (:func:`t23d.texture.photos.project_photos`).
        photo_top_k: photos blended per texel. photo_match_exposure: scale each photo to the field's
            colours first. backend: mesh ray casting for the photos' occlusion.

    Returns:
        [S, S, 3] uint8 image, row 0 at the top (v = 1).
    """
    check_texture_size(texture_size)
    if padding < 0:
        raise ConfigError(f"padding must be >= 0 texels; got {padding}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1; got {chunk_size}")
    size = int(texture_size)
    pix, _, _, points, nrm = texel_samples(vertices, faces, uvs, normals, size)
    rgb = query_colors(color_fn, points, nrm, color_mode, chunk_size)  # [P, 3]
    photo_stats = None
    if photos is not None:
        from t23d.texture.photos import project_photos

        rgb, photo_stats = project_photos(
            points, nrm, rgb, vertices, faces, photos, top_k=photo_top_k,
            match_field=photo_match_exposure, backend=backend,
        )  # fmt: skip
    image = np.zeros((size * size, 3), dtype=np.float32)
    filled = np.zeros(size * size, dtype=bool)
    image[pix] = rgb
    filled[pix] = True
    image = fill_padding(image.reshape(size, size, 3), filled.reshape(size, size), padding)
    if stats is not None:
        stats["texels_baked"] = int(len(pix))
        stats["coverage"] = float(len(pix)) / (size * size)
        if photo_stats is not None:
            stats["photo_texture"] = dataclasses.asdict(photo_stats)
    return np.round(image * 255.0).astype(np.uint8)
