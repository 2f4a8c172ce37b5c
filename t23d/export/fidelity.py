"""How faithfully the exported mesh reproduces the field: PSNR and silhouette IoU over views.

The exported mesh (mapped back into the field's frame) is rendered unlit with its texture (or vertex
colours) by :mod:`t23d.render.mesh`, anti-aliased with ``supersample`` x ``supersample`` rays per
pixel as an engine's multisampling would; the field is rendered by the caller's ``render_field_fn``
from the same cameras (the product's own field renderers anti-alias with the same factor, see
:func:`t23d.render.field_fns.render_field_fn_of`: a sharp surface rendered with one ray per pixel has
aliased edges, which would otherwise count as disagreement). Object PSNR is computed over pixels
covered by either (field opacity > 0.5 or mesh coverage > 0.5), image PSNR over whole frames, both
composited on black; IoU compares the field's opacity with the mesh's coverage (fractional). All
aggregate over the views (PSNR from the pooled mean squared error).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from t23d.common.errors import T23dError
from t23d.render.mesh import Camera, MeshAppearance, render_mesh

log = logging.getLogger(__name__)

RenderFieldFn = Callable[[Tensor, Tensor, int, int], tuple[Tensor, Tensor]]
"""(c2w [4, 4] OpenGL camera-to-world, intrinsics [fx, fy, cx, cy], H, W) -> (rgb [H, W, 3]
premultiplied / composited on black, opacity [H, W]) of the field."""


@dataclass
class FidelityReport:
    """Mesh-vs-field agreement."""

    psnr: float
    """PSNR in dB over pixels covered by either render (capped at 100 dB): the object only, strict."""
    image_psnr: float
    """PSNR in dB over whole images (both composited on black), the usual image-to-image figure; higher
    than ``psnr`` by about 10 log10(1 / object's share of the image)."""
    iou: float
    """Intersection over union of the field's opacity and the mesh's coverage, both fractional in [0, 1]:
    sum(min) / sum(max) over pixels (the usual IoU when both are 0/1), so anti-aliased edges count by
    how much they cover rather than by which side of 0.5 they fall."""
    num_views: int
    """Number of views compared."""
    per_view_psnr: list[float] = field(default_factory=list)
    """PSNR of each view (dB)."""
    per_view_iou: list[float] = field(default_factory=list)
    """IoU of each view."""
    backend: str = ""
    """Mesh renderer used ("open3d" or "raster")."""
    warnings: list[str] = field(default_factory=list)
    """Threshold warnings that were logged."""
    compared_above: list[float] | None = None
    """``(nx, ny, nz, d)``, field frame: only the mesh's part above this plane was compared (an extended
    base below it is the export's own, not the field's; :func:`clipped_above`); None: the whole mesh."""


PSNR_CAP = 100.0
"""PSNR reported for identical images (keeps export.json valid JSON, which has no infinity)."""


def _psnr(sq_err_sum: float, count: int) -> float:
    mse = sq_err_sum / count if count else 0.0
    return PSNR_CAP if mse <= 10.0 ** (-PSNR_CAP / 10.0) else 10.0 * math.log10(1.0 / mse)


def clipped_above(
    vertices: np.ndarray, faces: np.ndarray, look: MeshAppearance, plane: np.ndarray
) -> tuple[np.ndarray, np.ndarray, MeshAppearance]:
    """The part of a mesh on the side ``n . x > d`` of ``plane`` ``(nx, ny, nz, d)``: textured meshes are
    cut exactly along the plane (``trimesh.intersections.slice_faces_plane``, the UVs interpolated onto
    the new vertices); meshes with vertex colours keep the faces with a vertex on that side."""
    from trimesh.intersections import slice_faces_plane

    normal = np.asarray(plane[:3], dtype=np.float64)
    if look.uvs is None:
        above = vertices @ normal > float(plane[3])
        return vertices, faces[above[faces].any(1)], look
    v, f, uv = slice_faces_plane(vertices, faces, normal, normal * float(plane[3]), uv=look.uvs)
    return v, f, MeshAppearance(uvs=uv, texture=look.texture)


def measure_fidelity(
    vertices: np.ndarray,
    faces: np.ndarray,
    look: MeshAppearance,
    render_field_fn: RenderFieldFn,
    cameras: list[Camera],
    *,
    backend: str,
    min_psnr: float = 25.0,
    min_iou: float = 0.9,
    supersample: int = 2,
) -> FidelityReport:
    """Compare mesh and field renders from ``cameras`` (field frame); warn below the thresholds.

    The mesh is rendered with ``supersample`` x ``supersample`` rays per pixel (an engine's
    multisampling); the field as ``render_field_fn`` renders it (anti-aliased by the caller).
    """
    from t23d.render.mesh import resolve_backend

    used = resolve_backend(backend)
    sq_total, n_total, inter_total, union_total, px_total = 0.0, 0, 0.0, 0.0, 0
    sq_total_image = 0.0
    per_psnr, per_iou = [], []
    for c2w, intr, h, w in cameras:
        with torch.no_grad():
            rgb_f, opa_f = render_field_fn(
                torch.as_tensor(np.asarray(c2w), dtype=torch.float32),
                torch.as_tensor(np.asarray(intr), dtype=torch.float32),
                int(h),
                int(w),
            )
        rgb_f = torch.as_tensor(rgb_f).detach().float().cpu().numpy().astype(np.float64)
        opa_f = torch.as_tensor(opa_f).detach().float().cpu().numpy().astype(np.float64)
        if rgb_f.shape != (h, w, 3) or opa_f.reshape(-1).shape != (h * w,):
            raise T23dError(
                f"render_field_fn returned rgb {rgb_f.shape} and opacity {opa_f.shape}; expected ({h}, {w}, 3) "
                f"and ({h}, {w})"
            )
        opa_f = opa_f.reshape(h, w)
        rgb_m, cov_m = render_mesh(vertices, faces, look, (c2w, intr, h, w), used, supersample=supersample)
        mask_f = opa_f > 0.5
        mask_m = cov_m > 0.5
        union = mask_f | mask_m
        sq = float(((np.clip(rgb_f, 0, 1) - rgb_m)[union] ** 2).sum())
        cnt = int(union.sum()) * 3
        sq_total += sq
        px_total += h * w * 3
        sq_total_image += float(((np.clip(rgb_f, 0, 1) - rgb_m) ** 2).sum())
        n_total += cnt
        inter = float(np.minimum(opa_f, cov_m).sum())
        union_soft = float(np.maximum(opa_f, cov_m).sum())
        inter_total += inter
        union_total += union_soft
        per_psnr.append(_psnr(sq, cnt))
        per_iou.append(inter / union_soft if union_soft > 0 else 1.0)
    report = FidelityReport(
        psnr=_psnr(sq_total, n_total),
        image_psnr=_psnr(sq_total_image, px_total),
        iou=inter_total / union_total if union_total else 1.0,
        num_views=len(cameras),
        per_view_psnr=per_psnr,
        per_view_iou=per_iou,
        backend=used,
    )
    if report.psnr < min_psnr:
        report.warnings.append(f"fidelity PSNR {report.psnr:.2f} dB is below {min_psnr} dB")
    if report.iou < min_iou:
        report.warnings.append(f"fidelity silhouette IoU {report.iou:.3f} is below {min_iou}")
    for msg in report.warnings:
        log.warning(
            "%s: the exported mesh differs from the field (check threshold, resolution, texture_size)", msg
        )
    return report
