"""``export_asset``: density/colour callables -> textured asset files + preview + export.json.

Stages: validate inputs and the destination (nothing is written on failure) -> extract the mesh in
the field frame (:func:`t23d.extract.extract_mesh`) -> UV unwrap (xatlas) and bake the texture (or,
for PLY, colour the vertices) in the field frame -> transform to the glTF frame (see
:mod:`t23d.export.transform`) -> encode the files in memory -> preview and fidelity renders ->
write every file atomically, ``export.json`` last, then remove the files of a previous export into the same
folder that this one did not rewrite (listed by the previous ``export.json``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import Tensor

import t23d
from t23d.common.atomic import remove_stale_temp_files, write_bytes_atomic, write_json_atomic
from t23d.common.config import to_dict
from t23d.common.errors import ConfigError, T23dError
from t23d.common.interrupts import raise_if_stop_requested
from t23d.export.config import ExportConfig, validate_export_config
from t23d.export.fidelity import FidelityReport, RenderFieldFn, clipped_above, measure_fidelity
from t23d.export.naming import check_asset_name
from t23d.export.transform import (
    apply_normals,
    apply_points,
    check_world_transform,
    export_transform,
    mirrors,
)
from t23d.extract.fusion import DepthFn
from t23d.extract.grid import DensityFn, check_aabb
from t23d.render.mesh import Camera, MeshAppearance, orbit_cameras, render_preview, resolve_backend
from t23d.texture.bake import ColorFn
from t23d.texture.normal_map import NormalFn
from t23d.texture.photos import PhotoSet

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
    threshold: float | None
    """Density iso-level used (1/length); 0 for a signed-distance field (its zero level set); None for
    an explicit mesh exported as it is (refine runs)."""
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
    texture_calibration: dict | None = None
    """How the texture's colours were calibrated (e.g. to a grey card: the gain and what it was measured
    on), or None."""
    photo_texture: dict | None = None
    """With ``texture_source = "photos"``: photos projected, ``covered`` (fraction of texels a photo
    sees) and ``mean_views`` (photos seeing a covered texel); None when the texture is the field's."""
    support_fillet: dict | None = None
    """How the fillet where a photo run's object meets its support plane was undone: the radius and what
    it was estimated from (:class:`t23d.extract.fillet.FilletEstimate`), or None (not estimated)."""
    region: dict | None = None
    """Photo runs over a support plane: the region meshed, grown along the plane to the object's learnt
    footprint (:class:`t23d.extract.footprint.FootprintGrowth`), or None."""
    normal_map: dict | None = None
    """With a normal map: its ``size``, the texels baked, and ``error_deg`` / ``baseline_deg``: the mean
    angle between the detail normals and the decoded normal map / the asset's plain vertex normals."""

    def to_dict(self) -> dict:
        """JSON-able dict (paths as strings)."""
        out = dataclasses.asdict(self)
        for k in ("asset_path", "preview_path", "report_path"):
            out[k] = str(out[k])
        out["files"] = [str(p) for p in self.files]
        return out


def check_photos(cfg: ExportConfig, photos: PhotoSet | None) -> None:
    """Raise ConfigError when ``cfg`` textures from photos that this export does not have."""
    if cfg.texture_source == "photos" and photos is None and cfg.format != "ply":
        raise ConfigError(
            "texture_source: 'photos' projects a photo run's photos onto the mesh; this export has none "
            "(a generate or refine run, or no photos were passed): use texture_source 'field'"
        )


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


def previous_export_files(out_dir: Path) -> list[Path]:
    """The files an earlier export wrote into ``out_dir``, as its ``export.json`` lists them (only files
    directly in ``out_dir``; nothing when there is no readable t23d ``export.json``)."""
    try:
        doc = json.loads((out_dir / "export.json").read_text())
        files = [Path(f) for f in doc["files"]] if "t23d_version" in doc else []
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [out_dir / f.name for f in files if f.name]


def remove_previous_export(out_dir: Path, previous: list[Path], keep: list[Path]) -> list[Path]:
    """Delete the files of the previous export into ``out_dir`` that this export did not rewrite (another
    format's ``.glb``/``.gltf``/``.bin``/``.obj``/``.mtl``/``.png``, another name's files), so the folder
    holds one consistent asset; says what was removed."""
    kept = {p.name for p in keep}
    removed = []
    for p in previous:
        if p.name not in kept and p.is_file():
            p.unlink()
            removed.append(p.name)
    if removed:
        log.info(
            "removed %d file(s) of the previous export in %s: %s", len(removed), out_dir, ", ".join(removed)
        )
    return removed


def _encode(
    cfg: ExportConfig,
    name: str,
    v: np.ndarray,
    f: np.ndarray,
    n: np.ndarray,
    uvs,
    texture,
    colors,
    tangents=None,
    normal_image=None,
) -> dict[str, bytes]:
    from t23d.export.formats import encode_obj_files, encode_ply
    from t23d.export.gltf import encode_gltf_files, encode_png

    if cfg.format == "ply":
        return {f"{name}.ply": encode_ply(v, f, n, colors)}
    png = encode_png(texture)
    if cfg.format == "obj":
        return encode_obj_files(name, v, f, n, uvs, png)
    normal_png = encode_png(normal_image) if normal_image is not None else None
    return encode_gltf_files(
        name, v, f, n, uvs, png, binary=cfg.format == "glb", tangents=tangents, normal_png=normal_png
    )


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
    normal_fn: NormalFn | None = None,
    render_depth_fn: DepthFn | None = None,
    tsdf_cameras: list[Camera] | None = None,
    cut_plane: np.ndarray | None = None,
    texture_calibration: dict | None = None,
    photos: PhotoSet | None = None,
    support_fillet: dict | None = None,
    region: dict | None = None,
    fidelity_cut: np.ndarray | None = None,
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
        render_depth_fn: renders the field's termination distance and opacity at a camera; needed by
            ``cfg.extraction == "tsdf"``.
        tsdf_cameras: views whose depth maps are fused (photo runs: the training cameras); None =
            ``cfg.tsdf_views`` views on a sphere around the aabb.
        normal_fn: detail normals for ``cfg.normal_map`` (the field's gradient; see
            :data:`t23d.texture.normal_map.NormalFn`); required when the normal map is on.
        cut_plane: ``[4]`` ``(nx, ny, nz, d)``, unit normal, field frame: only the side ``n . x > d`` is
            meshed (photo runs: the table or floor the object stands on is cut off, the cut closed flat;
            see :func:`t23d.extract.grid.cut_below_plane`). None meshes the whole ``aabb``.
        texture_calibration: how ``color_fn``'s colours were calibrated (written to the report as is).
        photos: the posed photos, field frame, that ``cfg.texture_source == "photos"`` projects onto the
            mesh (photo runs); required then, unused otherwise.
        support_fillet: how ``sdf_fn``'s fillet at the support plane was undone (written to the report
            as is).
        region: how ``aabb`` was found (written to the report as is).
        fidelity_cut: ``[4]`` ``(nx, ny, nz, d)``, field frame: the fidelity check compares only the
            mesh's part above this plane with the field (photo runs whose base was extended below the
            object's cut: that base is the export's, the field holds the table there). None: the whole
            mesh.

    Returns:
        An :class:`ExportReport`; the same data is in ``<out_dir>/export.json``.

    Raises:
        ConfigError: bad option (format, texture_size not a power of two, ...), name or aabb.
        T23dError: no surface at the threshold, or an unwritable destination. Nothing is written then.
    """
    from t23d.extract.mesh import extract_mesh

    t_start = time.perf_counter()
    validate_export_config(cfg)
    check_photos(cfg, photos)
    if cfg.normal_map and normal_fn is None and cfg.format in ("glb", "gltf"):
        raise ConfigError(
            "normal_map: true needs the field's detail normals (normal_fn) to bake from; pass normal_fn, "
            "or set normal_map: false"
        )
    check_asset_name(name)
    box = check_aabb(aabb)
    check_world_transform(world_transform)
    resolve_backend(cfg.render_backend)
    check_destination(Path(out_dir))
    timings: dict[str, float] = {}
    sub: dict[str, float] = {}
    t0 = time.perf_counter()
    if cfg.extraction == "tsdf":
        if render_depth_fn is None:
            raise ConfigError("extraction 'tsdf' needs a render_depth_fn (the field's depth renders)")
        from t23d.extract.fusion import fuse_tsdf, sphere_cameras

        cams = tsdf_cameras or sphere_cameras(box, cfg.tsdf_views, cfg.tsdf_view_size)
        fused = fuse_tsdf(
            render_depth_fn, cams, box, cfg.resolution, cfg.tsdf_truncation_voxels, backend=cfg.tsdf_backend
        )
        sdf_fn = fused.sdf_fn()
        timings["tsdf"] = round(time.perf_counter() - t0, 4)
        t0 = time.perf_counter()
    if cut_plane is not None:
        from t23d.extract.grid import cut_below_plane

        density_fn, sdf_fn = cut_below_plane(density_fn, sdf_fn, cut_plane)
    vertices, faces, threshold = extract_mesh(
        density_fn, box, cfg, timings=sub, render_step=render_step, sdf_fn=sdf_fn
    )
    timings.update({f"extract.{k}": round(v, 4) for k, v in sub.items()})
    timings["extract"] = round(time.perf_counter() - t0, 4)
    return _export_mesh(
        vertices, faces, color_fn, Path(out_dir), name, cfg, world_transform=world_transform,
        render_field_fn=render_field_fn, fidelity_cameras=fidelity_cameras, threshold=threshold,
        timings=timings, t_start=t_start, normal_fn=normal_fn, texture_calibration=texture_calibration,
        photos=photos, support_fillet=support_fillet, region=region, fidelity_cut=fidelity_cut,
    )  # fmt: skip


def export_mesh_asset(
    vertices: np.ndarray,
    faces: np.ndarray,
    color_fn: ColorFn,
    out_dir: Path | str,
    name: str,
    cfg: ExportConfig,
    *,
    world_transform: np.ndarray | None = None,
    render_source_fn: RenderFieldFn | None = None,
    fidelity_cameras: list[Camera] | None = None,
) -> ExportReport:
    """Texture and export an explicit mesh (a refined mesh: no density field, no marching cubes).

    The mesh is decimated to ``cfg.faces`` when it has more, then unwrapped, baked from ``color_fn`` and
    written exactly as :func:`export_asset` writes an extracted mesh. Extraction options of ``cfg``
    (``resolution``, ``threshold``, ...) are unused.

    With ``cfg.normal_map`` the detail normals come from this mesh before decimation (closest points,
    :func:`t23d.texture.normal_map.closest_point_normal_fn`).

    Args:
        vertices: [V, 3] positions in the field frame (+Z up). faces: [F, 3] counter-clockwise from outside.
        color_fn: (points [N, 3], unit view dirs [N, 3]) -> sRGB [N, 3] in [0, 1].
        render_source_fn: renders what the mesh came from (e.g. the refined mesh with its colour field)
            for the fidelity check, with the same signature as ``render_field_fn``; skipped when None.
        Other arguments as :func:`export_asset`.
    """
    from t23d.extract.mesh import compact, decimate

    t_start = time.perf_counter()
    validate_export_config(cfg)
    check_photos(cfg, None)
    check_asset_name(name)
    check_world_transform(world_transform)
    resolve_backend(cfg.render_backend)
    check_destination(Path(out_dir))
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise T23dError(
            f"export_mesh_asset needs vertices [V, 3] and faces [F>0, 3]; got {v.shape}, {f.shape}"
        )
    if not np.all(np.isfinite(v)) or f.min() < 0 or f.max() >= len(v):
        raise T23dError("export_mesh_asset: vertices must be finite and faces must index them")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    v, f = compact(v, f)
    normal_fn = None
    if cfg.normal_map and cfg.format in ("glb", "gltf"):
        from t23d.texture.normal_map import closest_point_normal_fn

        normal_fn = closest_point_normal_fn(v, f)  # the mesh before decimation is the detail
    v, f = decimate(v, f, cfg.faces)
    timings["decimate"] = round(time.perf_counter() - t0, 4)
    return _export_mesh(
        v.astype(np.float32), f.astype(np.int32), color_fn, Path(out_dir), name, cfg,
        world_transform=world_transform, render_field_fn=render_source_fn, fidelity_cameras=fidelity_cameras,
        threshold=None, timings=timings, t_start=t_start, normal_fn=normal_fn,
    )  # fmt: skip


def _export_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    color_fn: ColorFn,
    out_dir: Path,
    name: str,
    cfg: ExportConfig,
    *,
    world_transform: np.ndarray | None,
    render_field_fn: RenderFieldFn | None,
    fidelity_cameras: list[Camera] | None,
    threshold: float | None,
    timings: dict[str, float],
    t_start: float,
    normal_fn: NormalFn | None = None,
    texture_calibration: dict | None = None,
    photos: PhotoSet | None = None,
    support_fillet: dict | None = None,
    region: dict | None = None,
    fidelity_cut: np.ndarray | None = None,
) -> ExportReport:
    """The stages after the mesh exists: UV unwrap + bake (or vertex colours), transform, encode, preview,
    fidelity (of the part above ``fidelity_cut`` when given), atomic writes. ``vertices``/
    ``faces`` are in the field frame, outward-oriented."""
    from t23d.extract.mesh import vertex_normals
    from t23d.texture.bake import bake_texture, query_colors
    from t23d.texture.unwrap import unwrap_uv

    world = check_world_transform(world_transform)
    backend = resolve_backend(cfg.render_backend)
    remove_stale_temp_files(out_dir)  # of exports killed while writing here (their process is gone)
    previous = previous_export_files(out_dir)

    def lap(stage: str, t0: float) -> float:
        raise_if_stop_requested()  # Ctrl-C/SIGTERM between stages, also if a library swallowed it
        now = time.perf_counter()
        timings[stage] = round(now - t0, 4)
        return now

    t0 = time.perf_counter()
    normals = vertex_normals(vertices, faces)  # [V, 3] field frame, outward
    uvs = texture = colors = tangents = normal_image = normal_info = None
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
            photos=photos if cfg.texture_source == "photos" else None, photo_top_k=cfg.photo_top_k,
            photo_match_exposure=cfg.photo_match_exposure, backend=backend,
        )  # fmt: skip
        t0 = lap("bake", t0)
        if cfg.normal_map and cfg.format in ("glb", "gltf") and normal_fn is not None:
            from t23d.texture.normal_map import bake_normal_map, vertex_tangents

            tangents = vertex_tangents(vertices, faces, normals, uvs)  # field frame
            size = cfg.normal_map_size or cfg.texture_size
            normal_image, nstats = bake_normal_map(
                vertices, faces, uvs, normals, tangents, normal_fn, size, cfg.padding, cfg.chunk_size
            )
            normal_info = {"size": size, **dataclasses.asdict(nstats)}
            t0 = lap("normal_map", t0)
        elif cfg.normal_map:
            log.info(
                "normal_map: the %s format carries no tangent-space normal map; written without one",
                cfg.format,
            )
    # field frame -> glTF frame
    m = export_transform(vertices, world, cfg.origin, cfg.height)  # [4, 4]
    out_v = apply_points(m, vertices).astype(np.float32)  # [V, 3] Y up, metres
    out_n = apply_normals(m, normals).astype(np.float32)
    out_f = faces[:, ::-1].copy() if mirrors(m) else faces
    out_t = None
    if tangents is not None:  # directions: the linear part; handedness flips with a mirror
        xyz = apply_normals(np.linalg.inv(m).T, tangents[:, :3])  # == A t, renormalised
        out_t = np.concatenate([xyz, tangents[:, 3:4] * (-1.0 if mirrors(m) else 1.0)], 1).astype(np.float32)
    t0 = lap("transform", t0)
    files = _encode(cfg, name, out_v, out_f, out_n, uvs, texture, colors, out_t, normal_image)
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
        compared = (back_v, out_f, look)
        if fidelity_cut is not None:
            compared = clipped_above(back_v, out_f, look, fidelity_cut)
        fidelity = measure_fidelity(
            *compared, render_field_fn, cams, backend=backend,
            min_psnr=cfg.fidelity_min_psnr, min_iou=cfg.fidelity_min_iou, supersample=cfg.fidelity_supersample,
        )  # fmt: skip
        if fidelity_cut is not None:
            fidelity.compared_above = [float(x) for x in fidelity_cut]
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
        threshold=None if threshold is None else float(threshold),
        texture_size=None if cfg.format == "ply" else cfg.texture_size,
        bbox_min=out_v.min(axis=0).tolist(),
        bbox_max=out_v.max(axis=0).tolist(),
        transform=m.tolist(),
        timings=timings,
        fidelity=fidelity,
        texture_coverage=stats.get("coverage"),
        normal_map=normal_info,
        texture_calibration=texture_calibration,
        photo_texture=stats.get("photo_texture"),
        support_fillet=support_fillet,
        region=region,
    )
    doc = {"t23d_version": t23d.__version__, **report.to_dict(), "config": to_dict(cfg)}
    try:
        write_json_atomic(report.report_path, doc)
    except OSError as e:
        raise T23dError(f"cannot write {report.report_path}: {e}") from e
    remove_previous_export(out_dir, previous, keep=report.files)
    log.info(
        "exported %s: %d triangles, %d vertices, %.1f s (%s)",
        report.asset_path, report.num_faces, report.num_vertices, timings["total"],
        ", ".join(f"{k} {v:.2f}s" for k, v in timings.items() if "." not in k),
    )  # fmt: skip
    return report
