"""Texture from the photos: project posed photographs onto the mesh, as photogrammetry texturing does.

A field's colour head is smoother than the photos it learnt from (an SDF's colour reads features that
the eikonal and curvature losses keep smooth), and baking it loses detail the photos still hold. For a
photo run the texels can instead take their colour from the photos themselves:

For every texel's surface point ``p`` (unit normal ``n``) and every photo, the photo counts when
- ``p`` projects inside the image, in front of the camera, and faces it (``cos = n . (c - p) / |c - p|``
  at least ``min_cos``);
- nothing hides it: the mesh's own depth at that pixel (a ray cast from the camera,
  :func:`t23d.render.mesh.cast_views`) is within a tolerance of ``p``'s depth, and the 3x3 pixels
  around it hold no depth edge (photo pixels at an occlusion edge mix two surfaces);
- the photo's alpha is 1 over those 3x3 pixels, where the photos have one (the silhouette's pixels mix
  in the background).

With ``match_field`` (off by default) each photo is first scaled per colour channel to agree with the
field's colours at the texels it sees, so photos of different exposure or white balance blend without
seams. The texel's colour is the weighted mean of the ``top_k`` best photos (bilinear samples), weight
``(cos * f / depth)^2``: the photo's pixels per unit of surface, so frontal, close photos dominate and
sub-pixel misregistration between many photos does not blur the texture. The field's colour joins the
mean with a small weight (a quarter of a photo at ``min_cos``), so texels no photo sees keep the field's
colour and rarely-seen ones blend into it without a seam.

Conventions as :mod:`t23d.render.mesh`: OpenGL camera-to-world, intrinsics ``fx, fy, cx, cy`` with
pixel centres at +0.5, row 0 at the top; colours sRGB in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from t23d.common.errors import ConfigError, T23dError
from t23d.render.mesh import Camera, cast_views


@dataclass
class PhotoSet:
    """Posed photos to texture from, in the mesh's frame."""

    cameras: list[Camera]
    """(c2w [4, 4], intrinsics [fx, fy, cx, cy], H, W) per photo."""
    images: Sequence[np.ndarray]
    """[H, W, 3] sRGB in [0, 1] per photo (float; a torch tensor's ``.numpy()`` view is fine)."""
    alphas: Sequence[np.ndarray] | None = None
    """[H, W] coverage in [0, 1] per photo, or None for photos without a mask."""

    def __post_init__(self) -> None:
        if len(self.cameras) != len(self.images) or (
            self.alphas is not None and len(self.alphas) != len(self.images)
        ):
            raise T23dError(
                f"PhotoSet: {len(self.cameras)} cameras, {len(self.images)} images and "
                f"{'no' if self.alphas is None else len(self.alphas)} alphas; expected one of each per photo"
            )
        for i, (cam, img) in enumerate(zip(self.cameras, self.images, strict=True)):
            h, w = int(cam[2]), int(cam[3])
            if tuple(np.shape(img)) != (h, w, 3):
                raise T23dError(f"PhotoSet: photo {i} is {np.shape(img)}, its camera says ({h}, {w}, 3)")


@dataclass
class PhotoTextureStats:
    """What the projection did, for ``export.json``."""

    photos: int
    """Photos projected."""
    covered: float
    """Fraction of baked texels that at least one photo sees (the rest keep the field's colour)."""
    mean_views: float
    """Mean number of photos that see a covered texel (before keeping the ``top_k`` best)."""
    gain_range: list[float] | None = None
    """Smallest and largest per-channel gain that matched a photo to the field's colours (None when
    ``match_field`` is off): near 1 for a capture of steady exposure."""


def _depth_maps(vertices: np.ndarray, faces: np.ndarray, cams: list[Camera], backend: str):
    """Per camera: the mesh's z-depth [H, W] along the camera's -Z axis (inf where no triangle is hit)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    for cam, (tri, bary) in zip(cams, cast_views(v, f, cams, backend), strict=True):
        c2w, _, h, w = cam
        hit = tri >= 0
        depth = np.full(h * w, np.inf)
        pts = np.einsum("pk,pkc->pc", bary[hit], v[f[tri[hit]]])
        w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64))
        depth[hit] = -(pts @ w2c[2, :3] + w2c[2, 3])
        yield depth.reshape(h, w)


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples [N, C] of ``image`` [H, W, C] at continuous pixel coordinates (centres at +0.5),
    clamped at the border."""
    from scipy.ndimage import map_coordinates

    img = np.asarray(image, dtype=np.float32)
    coords = np.stack([y - 0.5, x - 0.5])
    return np.stack(
        [map_coordinates(img[..., c], coords, order=1, mode="nearest") for c in range(img.shape[-1])], 1
    )


def project_photos(
    points: np.ndarray,
    normals: np.ndarray,
    field_rgb: np.ndarray,
    vertices: np.ndarray,
    faces: np.ndarray,
    photos: PhotoSet,
    *,
    top_k: int = 3,
    min_cos: float = 0.15,
    match_field: bool = False,
    backend: str = "auto",
) -> tuple[np.ndarray, PhotoTextureStats]:
    """Colours [P, 3] float32 of surface ``points`` [P, 3] (unit ``normals`` [P, 3]) from ``photos``.

    ``field_rgb`` [P, 3] is the field's colour at the points (what unseen texels keep); ``vertices`` /
    ``faces`` are the mesh the points lie on (occlusion). See the module docstring for the rules.
    ``match_field``: scale each photo's colours per channel to agree, in the least-squares sense, with the
    field's colours at the texels it sees (photos of one capture differ in exposure and white balance;
    the field's colour is the capture's neutral one), so texels that take different photos match.
    """
    if top_k < 1:
        raise ConfigError(f"photo_top_k must be an integer >= 1; got {top_k}")
    if not 0.0 < min_cos < 1.0:
        raise ConfigError(f"min_cos must be in (0, 1); got {min_cos}")
    from scipy.ndimage import maximum_filter, minimum_filter

    p = np.asarray(points, dtype=np.float64)
    n = np.asarray(normals, dtype=np.float64)
    field = np.asarray(field_rgb, dtype=np.float64)
    count = len(p)
    best_w = np.zeros((count, top_k), dtype=np.float32)  # the top_k weights so far (0 = empty slot)
    best_c = np.zeros((count, top_k, 3), dtype=np.float32)
    seen = np.zeros(count, dtype=np.int32)
    gains: list[np.ndarray] = []
    focal_depth = []  # per photo, the median f / depth of its accepted samples: pixels per unit length
    cams = photos.cameras
    for i, depth_map in enumerate(_depth_maps(vertices, faces, cams, backend)):
        c2w, intr, h, w = cams[i]
        fx, fy, cx, cy = (float(x) for x in np.asarray(intr).reshape(-1)[:4])
        c2w = np.asarray(c2w, dtype=np.float64)
        to_cam = c2w[:3, 3][None] - p  # [P, 3]
        dist = np.linalg.norm(to_cam, axis=1)
        cos = np.einsum("pc,pc->p", n, to_cam) / np.maximum(dist, 1e-12)
        idx = np.nonzero(cos >= min_cos)[0]
        w2c = np.linalg.inv(c2w)
        pc = p[idx] @ w2c[:3, :3].T + w2c[:3, 3]
        z = -pc[:, 2]
        front = z > 1e-6
        idx, pc, z = idx[front], pc[front], z[front]
        u = fx * pc[:, 0] / z + cx
        v = -fy * pc[:, 1] / z + cy
        col, row = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        inside = (col >= 1) & (col < w - 1) & (row >= 1) & (row < h - 1)
        idx, z, u, v, col, row = idx[inside], z[inside], u[inside], v[inside], col[inside], row[inside]
        footprint = z / fx  # surface length one pixel spans, facing the camera
        # no depth edge around the pixel, and the pixel's surface is this point's
        near = minimum_filter(depth_map, size=3, mode="nearest")
        far = maximum_filter(depth_map, size=3, mode="nearest")
        c = np.maximum(cos[idx], min_cos)
        slope = footprint / c  # depth change per pixel on a surface this oblique, roughly
        with np.errstate(invalid="ignore"):  # inf - inf where the 3 x 3 pixels see no mesh: NaN, rejected
            ok = (far[row, col] - near[row, col] < 8.0 * slope) & (
                np.abs(depth_map[row, col] - z) < 2.0 * slope
            )
        if photos.alphas is not None:
            alpha = np.asarray(photos.alphas[i], dtype=np.float32)
            ok &= minimum_filter(alpha, size=3, mode="nearest")[row, col] >= 0.99
        idx, z, u, v = idx[ok], z[ok], u[ok], v[ok]
        if len(idx) == 0:
            continue
        weight = (cos[idx] * fx / z) ** 2
        focal_depth.append(np.median(fx / z))
        rgb = _bilinear(np.asarray(photos.images[i]), u, v)
        if match_field:
            ref = field[idx]
            gain = (rgb * ref).sum(axis=0) / np.maximum((rgb.astype(np.float64) ** 2).sum(axis=0), 1e-12)
            rgb = rgb * gain.astype(np.float32)
            gains.append(gain)
        seen[idx] += 1
        # keep the top_k: replace the slot with the smallest weight when the new one is larger
        slot = np.argmin(best_w[idx], axis=1)
        better = weight > best_w[idx, slot]
        j, s = idx[better], slot[better]
        best_w[j, s] = weight[better]
        best_c[j, s] = rgb[better]
    # weights relative to a frontal photo at the typical distance; the field counts as a photo at min_cos
    scale = float(np.median(focal_depth)) ** 2 if focal_depth else 1.0
    wsum = best_w.sum(axis=1) / scale
    field_w = 0.25 * min_cos**2
    out = (np.einsum("pk,pkc->pc", best_w / scale, best_c) + field_w * field) / (wsum + field_w)[:, None]
    covered = seen > 0
    stats = PhotoTextureStats(
        photos=len(cams),
        covered=float(covered.mean()) if count else 0.0,
        mean_views=float(seen[covered].mean()) if covered.any() else 0.0,
        gain_range=[float(np.min(gains)), float(np.max(gains))] if gains else None,
    )
    return np.clip(out, 0.0, 1.0).astype(np.float32), stats
