"""``export_asset``: density/colour callables -> textured asset files + preview + export.json.

Stages: validate inputs and the destination (nothing is written on failure) -> extract the mesh in
the field frame (:func:`t23d.extract.extract_mesh`) -> UV unwrap (xatlas) and bake the texture (or,
for PLY, colour the vertices) in the field frame -> transform to the glTF frame (see
:mod:`t23d.export.transform`) -> encode the files in memory -> preview and fidelity renders ->
write every file atomically, ``export.json`` last.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import Tensor

import t23d
from t23d.common.atomic import write_bytes_atomic, write_json_atomic
from t23d.common.config import to_dict
from t23d.common.errors import T23dError
from t23d.export.config import ExportConfig, validate_export_config
from t23d.export.fidelity import FidelityReport, RenderFieldFn, measure_fidelity
from t23d.export.naming import check_asset_name
from t23d.export.transform import (
    apply_normals,
    apply_points,
    check_world_transform,
    export_transform,
    mirrors,
)
from t23d.extract.grid import DensityFn, check_aabb
from t23d.render.mesh import Camera, MeshAppearance, orbit_cameras, render_preview, resolve_backend
from t23d.texture.bake import ColorFn

log = logging.getLogger(__name__)


@dataclass
class ExportReport:
    """What :func:`export_asset` wrote and measured (also saved as ``export.json``)."""

    name: str
    """Asset name (file stem and glTF scene/node/mesh name)."""
    format: str
    """Export format ("glb", "gltf", "obj", "ply")."""
    asset_path: Path
    """The main asset file (``<name>.glb`` / ``.gltf`` / ``.obj`` / ``.ply``)."""
    files: list[Path]
    """Every file written, including sidecars (.bin, .png, .mtl), the preview and export.json."""
    preview_path: Path
    """``<name>_preview.png``: shaded RGBA render of the exported mesh."""
    report_path: Path
    """``export.json``."""
    num_vertices: int
    """Vertices in the exported mesh (seam vertices duplicated by the UV unwrap)."""
    num_faces: int
    """Triangles in the exported mesh."""
    threshold: float
    """Density iso-level used (1/length); 0 for a signed-distance field (its zero level set)."""
    texture_size: int | None
    """Texture width = height in texels (None for PLY)."""
    bbox_min: list[float]
    """Minimum corner of the asset in the exported frame (Y up, metres)."""
    bbox_max: list[float]
    """Maximum corner of the asset in the exported frame (Y up, metres)."""
    transform: list[list[float]]
    """4x4 matrix from the field frame to the exported frame (row-major)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage."""
    fidelity: FidelityReport | None = None
    """Mesh-vs-field agreement, or None when no ``render_field_fn`` was given / views are 0."""
    texture_coverage: float | None = None
    """Fraction of texels covered by UV charts (before padding)."""

    def to_dict(self) -> dict:
        """JSON-able dict (paths as strings)."""
        out = dataclasses.asdict(self)
        for k in ("asset_path", "preview_path", "report_path"):
            out[k] = str(out[k])
        out["files"] = [str(p) for p in self.files]
        return out


def check_destination(out_dir: Path) -> None:
    """Raise T23dError unless ``out_dir`` is, or can be created as, a writable directory. Creates nothing."""
    probe = out_dir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "the output folder" if probe == out_dir else f"{probe} (an ancestor of the output folder)"
        raise T23dError(f"cannot write the asset to {out_dir}: {what} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise T23dError(
            f"cannot write the asset to {out_dir}: {probe} is not writable; choose another out_dir"
        )


def _encode(
    cfg: ExportConfig, name: str, v: np.ndarray, f: np.ndarray, n: np.ndarray, uvs, texture, colors
) -> dict[str, bytes]:
    from t23d.export.formats import encode_obj_files, encode_ply
    from t23d.export.gltf import encode_gltf_files, encode_png

    if cfg.format == "ply":
        return {f"{name}.ply": encode_ply(v, f, n, colors)}
    png = encode_png(texture)
    if cfg.format == "obj":
        return encode_obj_files(name, v, f, n, uvs, png)
    return encode_gltf_files(name, v, f, n, uvs, png, binary=cfg.format == "glb")


def export_asset(
    density_fn: DensityFn,
    color_fn: ColorFn,
    aabb: Tensor | np.ndarray,
    out_dir: Path | str,
    name: str,
    cfg: ExportConfig,
    *,
    world_transform: np.ndarray | None = None,
    render_field_fn: RenderFieldFn | None = None,
    fidelity_cameras: list[Camera] | None = None,
    render_step: float | None = None,
    sdf_fn: DensityFn | None = None,
) -> ExportReport:
    """Extract, texture and export the field inside ``aabb`` as ``<out_dir>/<name>.<format>``.

    Args:
        density_fn: points [N, 3] (field frame, +Z up) -> sigma [N] >= 0.
        color_fn: (points [N, 3], unit view dirs [N, 3] from camera to point) -> sRGB [N, 3] in [0, 1].
        aabb: [2, 3] region to mesh, field frame.
        out_dir: destination folder (created if missing).
        name: file stem, e.g. ``slugify(prompt)``.
        cfg: export options.
        world_transform: 4x4 field frame -> user world frame (+Z up); identity when None.
        render_field_fn: renders the field for the fidelity check; the check is skipped when None.
        render_step: sample spacing of the renderer the field was trained with (sets the automatic
            threshold ``ln 2 / render_step``); None uses the extraction voxel.
        fidelity_cameras: (c2w, intrinsics, H, W) views in the field frame; None = ``cfg.fidelity_views``
            orbit cameras framing the extracted mesh (the object fills the views, not the aabb).
        sdf_fn: for signed-distance fields, points [N, 3] -> SDF [N] (negative inside): the mesh is its
            zero level set (``density_fn`` is still used where the field is rendered).

    Returns:
        An :class:`ExportReport`; the same data is in ``<out_dir>/export.json``.

    Raises:
        ConfigError: bad option (format, texture_size not a power of two, ...), name or aabb.
        T23dError: no surface at the threshold, or an unwritable destination. Nothing is written then.
    """
    from t23d.extract.mesh import extract_mesh, vertex_normals
    from t23d.texture.bake import bake_texture, query_colors
    from t23d.texture.unwrap import unwrap_uv

    t_start = time.perf_counter()
    validate_export_config(cfg)
    check_asset_name(name)
    box = check_aabb(aabb)
    world = check_world_transform(world_transform)
    backend = resolve_backend(cfg.render_backend)
    out_dir = Path(out_dir)
    check_destination(out_dir)
    timings: dict[str, float] = {}

    def lap(stage: str, t0: float) -> float:
        now = time.perf_counter()
        timings[stage] = round(now - t0, 4)
        return now

    sub: dict[str, float] = {}
    t0 = time.perf_counter()
    vertices, faces, threshold = extract_mesh(
        density_fn, box, cfg, timings=sub, render_step=render_step, sdf_fn=sdf_fn
    )
    timings.update({f"extract.{k}": round(v, 4) for k, v in sub.items()})
    t0 = lap("extract", t0)
    normals = vertex_normals(vertices, faces)  # [V, 3] field frame, outward
    uvs = texture = colors = None
    stats: dict = {}
    if cfg.format == "ply":
        rgb = query_colors(
            color_fn, vertices.astype(np.float64), normals.astype(np.float64), cfg.color_mode, cfg.chunk_size
        )
        colors = np.round(rgb * 255.0).astype(np.uint8)  # [V, 3]
        t0 = lap("vertex_colors", t0)
    else:
        vertices, faces, uvs, vmap = unwrap_uv(
            vertices, faces, texture_size=cfg.texture_size, padding=cfg.padding
        )
        normals = normals[vmap]
        t0 = lap("unwrap", t0)
        texture = bake_texture(
            vertices, faces, uvs, normals, color_fn, cfg.texture_size, cfg.padding,
            color_mode=cfg.color_mode, chunk_size=cfg.chunk_size, stats=stats,
        )  # fmt: skip
        t0 = lap("bake", t0)
    # field frame -> glTF frame
    m = export_transform(vertices, world, cfg.origin, cfg.height)  # [4, 4]
    out_v = apply_points(m, vertices).astype(np.float32)  # [V, 3] Y up, metres
    out_n = apply_normals(m, normals).astype(np.float32)
    out_f = faces[:, ::-1].copy() if mirrors(m) else faces
    t0 = lap("transform", t0)
    files = _encode(cfg, name, out_v, out_f, out_n, uvs, texture, colors)
    t0 = lap("encode", t0)
    # renders use the exported geometry mapped back into the field frame (so they check the transform too)
    back_v = apply_points(np.linalg.inv(m), out_v)
    look = MeshAppearance(uvs=uvs, texture=texture, vertex_colors=colors)
    mesh_box = np.stack([back_v.min(axis=0), back_v.max(axis=0)])  # frame the mesh, not the aabb
    preview = render_preview(back_v, out_f, look, mesh_box, cfg.preview_size, backend)
    t0 = lap("preview", t0)
    fidelity = None
    if render_field_fn is not None and (fidelity_cameras is not None or cfg.fidelity_views > 0):
        cams = (
            fidelity_cameras
            if fidelity_cameras is not None
            else orbit_cameras(mesh_box, cfg.fidelity_views, cfg.fidelity_resolution)
        )
        fidelity = measure_fidelity(
            back_v, out_f, look, render_field_fn, cams, backend=backend,
            min_psnr=cfg.fidelity_min_psnr, min_iou=cfg.fidelity_min_iou, supersample=cfg.fidelity_supersample,
        )  # fmt: skip
        t0 = lap("fidelity", t0)
    from t23d.export.gltf import encode_png

    files[f"{name}_preview.png"] = encode_png(preview)
    written: list[Path] = []
    try:
        for fname, data in files.items():
            write_bytes_atomic(out_dir / fname, data)
            written.append(out_dir / fname)
    except OSError as e:
        raise T23dError(f"cannot write {out_dir / fname}: {e}") from e
    t0 = lap("write", t0)
    timings["total"] = round(time.perf_counter() - t_start, 4)
    report = ExportReport(
        name=name,
        format=cfg.format,
        asset_path=out_dir / f"{name}.{cfg.format}",
        files=[*written, out_dir / "export.json"],
        preview_path=out_dir / f"{name}_preview.png",
        report_path=out_dir / "export.json",
        num_vertices=len(out_v),
        num_faces=len(out_f),
        threshold=float(threshold),
        texture_size=None if cfg.format == "ply" else cfg.texture_size,
        bbox_min=out_v.min(axis=0).tolist(),
        bbox_max=out_v.max(axis=0).tolist(),
        transform=m.tolist(),
        timings=timings,
        fidelity=fidelity,
        texture_coverage=stats.get("coverage"),
    )
    doc = {"t23d_version": t23d.__version__, **report.to_dict(), "config": to_dict(cfg)}
    try:
        write_json_atomic(report.report_path, doc)
    except OSError as e:
        raise T23dError(f"cannot write {report.report_path}: {e}") from e
    log.info(
        "exported %s: %d triangles, %d vertices, %.1f s (%s)",
        report.asset_path, report.num_faces, report.num_vertices, timings["total"],
        ", ".join(f"{k} {v:.2f}s" for k, v in timings.items() if "." not in k),
    )  # fmt: skip
    return report
