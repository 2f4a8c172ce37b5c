"""Density field -> clean, decimated, outward-oriented triangle mesh.

Pipeline of :func:`extract_mesh`: chunked density grid (``grid.py``) -> threshold (automatic
``ln 2 / step`` with the renderer's step, else the voxel; or the override) -> flood-fill closed
cavities -> marching cubes (PyMCubes) on the grid padded with one layer of zero density, so a surface
cut by the aabb is closed -> drop small components (floaters) -> drop faces no view around the mesh
sees -> decimate with fast-simplification -> check the winding against the density gradient and
flip if needed -> optionally move vertices onto the surface seen from outside
(:func:`refine_to_surface`).

Signed-distance fields (``sdf_fn``) take the same path on the negated SDF at level 0: the mesh is the
zero level set, linearly interpolated by marching cubes (no density threshold, no refinement needed).

Conventions: world frame right-handed, +Z up, the field's length units. Outward normals point
towards decreasing density. Faces are counter-clockwise seen from outside (right-hand rule).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Protocol

import numpy as np
from torch import Tensor

from t23d.common.errors import ConfigError, T23dError
from t23d.extract.grid import (
    DensityFn,
    DensityGrid,
    auto_threshold,
    evaluate_density,
    evaluate_density_grid,
    suggest_threshold,
)

log = logging.getLogger(__name__)


class ExtractSettings(Protocol):
    """The fields of ``t23d.export.ExportConfig`` that extraction reads (see that class for docs)."""

    resolution: int
    threshold: float | None
    faces: int
    min_component_fraction: float
    chunk_size: int
    fill_cavities: bool
    visibility_views: int
    surface_optical_depth: float | None


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised face normals [F, 3] (length = 2 * area), right-hand rule over (v0, v1, v2)."""
    v = vertices.astype(np.float64)
    return np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V, 3] float32 (zero-area fans get +Z)."""
    fn = face_normals(vertices, faces)  # [F, 3]
    vn = np.zeros((len(vertices), 3), dtype=np.float64)
    for c in range(3):
        np.add.at(vn, faces[:, c], fn)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    vn = np.where(norm > 0, vn / np.maximum(norm, 1e-30), np.array([0.0, 0.0, 1.0]))
    return vn.astype(np.float32)


def remove_small_components(
    vertices: np.ndarray, faces: np.ndarray, min_fraction: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop connected components whose surface area is below ``min_fraction`` x the largest one's.

    Components are vertex-connected. Returns (vertices, faces, number of components removed); unused
    vertices are dropped and faces re-indexed.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nv = len(vertices)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])  # [3F, 2]
    adj = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(nv, nv))
    num, labels = connected_components(adj, directed=False)
    removed = 0
    if num > 1:
        area = 0.5 * np.linalg.norm(face_normals(vertices, faces), axis=1)  # [F]
        comp_area = np.bincount(labels[faces[:, 0]], weights=area, minlength=num)  # [C]
        keep_comp = comp_area >= min_fraction * comp_area.max()
        keep_comp &= comp_area > 0
        removed = int(np.count_nonzero(~keep_comp & (np.bincount(labels, minlength=num) > 0)))
        faces = faces[keep_comp[labels[faces[:, 0]]]]
    return (*compact(vertices, faces), removed)


def remove_hidden_faces(
    vertices: np.ndarray, faces: np.ndarray, num_views: int, resolution: int = 512, backend: str = "auto"
) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop faces that no camera around the mesh sees (a Fibonacci sphere of ``num_views`` viewpoints):
    shells and sheets a field leaves inside an object, which no photo or prior constrains.

    Faces sharing a vertex with a seen face are kept too, so faces smaller than a pixel on the visible
    surface do not become holes. Returns (vertices, faces, number of faces removed).
    """
    from t23d.render.mesh import cast_views, look_at

    if num_views <= 0 or len(faces) == 0:
        return vertices, faces, 0
    lo, hi = vertices.min(0).astype(np.float64), vertices.max(0).astype(np.float64)
    centre, radius = 0.5 * (lo + hi), 0.5 * float(np.linalg.norm(hi - lo))
    fov = np.radians(50.0)
    dist = 1.1 * radius / np.sin(fov / 2)
    focal = 0.5 * resolution / np.tan(fov / 2)
    intr = np.array([focal, focal, resolution / 2.0, resolution / 2.0])
    seen = np.zeros(len(faces), dtype=bool)
    golden = np.pi * (3.0 - np.sqrt(5.0))
    cams = []
    for k in range(num_views):
        z = 1.0 - 2.0 * (k + 0.5) / num_views
        r = np.sqrt(1.0 - z * z)
        eye = centre + dist * np.array([r * np.cos(golden * k), r * np.sin(golden * k), z])
        cams.append((look_at(eye, centre), intr, resolution, resolution))
    for tri, _ in cast_views(vertices, faces, cams, backend):
        seen[tri[tri >= 0]] = True
    near_seen = np.zeros(len(vertices), dtype=bool)
    near_seen[faces[seen].reshape(-1)] = True
    keep = seen | near_seen[faces].any(axis=1)
    return (*compact(vertices, faces[keep]), int(np.count_nonzero(~keep)))


def refine_to_surface(
    density_fn: DensityFn,
    vertices: np.ndarray,
    faces: np.ndarray,
    voxel: float,
    optical_depth: float,
    *,
    search_voxels: float = 3.0,
    samples: int = 49,
    chunk_size: int = 262_144,
) -> tuple[np.ndarray, float]:
    """Move each vertex along its normal to where the field's surface is seen from outside.

    Marching cubes puts the mesh on a density iso-level, which for a trained field lies a fraction of a
    voxel away from where its renders see the surface; on a finely textured object that offset shifts
    the texture sideways in oblique views. For each vertex a ray is marched inwards along the normal
    from ``search_voxels`` outside to ``search_voxels`` inside, and the vertex goes to the point where
    the optical depth accumulated from that start, ``integral(sigma)``, reaches ``optical_depth``
    (trapezoidal rule, linear interpolation; density further out than the start is not counted). A
    vertex stays where it is when its ray starts inside the object (thin parts, concave corners) or
    never reaches that depth (a hole in the field).

    Args:
        density_fn: points [N, 3] -> sigma [N] (1/length).
        vertices: [V, 3]; faces: [F, 3] counter-clockwise from outside.
        voxel: grid spacing (length); the search range and step are in voxels.
        optical_depth: the depth of the surface, e.g. 0.2 (18 % opacity).
        search_voxels: how far outside and inside the vertex to look.
        samples: density samples per ray.
        chunk_size: points per ``density_fn`` call.

    Returns:
        (moved vertices [V, 3] float64, fraction of vertices moved).
    """
    import torch

    if len(vertices) == 0:
        return vertices.astype(np.float64), 0.0
    v = np.asarray(vertices, dtype=np.float64)
    n = vertex_normals(v, faces).astype(np.float64)  # [V, 3] outward
    offsets = np.linspace(search_voxels, -search_voxels, samples) * voxel  # [K] outside -> inside
    pts = (v[:, None, :] + offsets[None, :, None] * n[:, None, :]).reshape(-1, 3)
    sigma = evaluate_density(density_fn, torch.from_numpy(pts.astype(np.float32)), chunk_size)
    sigma = np.nan_to_num(sigma.astype(np.float64).reshape(len(v), samples), nan=0.0, posinf=1e30)
    step = offsets[0] - offsets[1]
    depth = np.concatenate(
        [np.zeros((len(v), 1)), np.cumsum(0.5 * (sigma[:, 1:] + sigma[:, :-1]) * step, axis=1)], axis=1
    )  # [V, K] optical depth from the outer end
    reached = depth >= optical_depth
    starts_outside = sigma[:, 0] * step < optical_depth
    ok = reached.any(axis=1) & starts_outside & ~reached[:, 0]
    k = np.maximum(np.argmax(reached, axis=1), 1)
    rows = np.arange(len(v))
    d0, d1 = depth[rows, k - 1], depth[rows, k]
    frac = np.clip((optical_depth - d0) / np.maximum(d1 - d0, 1e-30), 0.0, 1.0)
    t = offsets[k - 1] + frac * (offsets[k] - offsets[k - 1])
    t = np.where(ok, t, 0.0)
    return v + t[:, None] * n, float(ok.mean())


def merge_duplicate_vertices(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weld vertices at identical positions and drop the triangles that collapse (repeated index).

    Marching cubes emits a duplicate vertex wherever the surface passes exactly through a grid sample.
    """
    uniq, inverse = np.unique(vertices, axis=0, return_inverse=True)
    f = inverse.reshape(-1)[faces]
    good = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    return compact(uniq, f[good])


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove unreferenced vertices; return (vertices [V', 3], faces [F, 3] re-indexed)."""
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.reshape(-1)] = True
    remap = np.cumsum(used) - 1
    return vertices[used], remap[faces].astype(faces.dtype)


def orient_outward(grid: np.ndarray, vertices_idx: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, float]:
    """Flip all faces if most normals point towards increasing density; return (faces, outward fraction).

    ``grid`` [X, Y, Z] is sampled trilinearly at each face centroid +- 0.5 voxel along its normal;
    ``vertices_idx`` are in grid-index coordinates. The returned fraction is measured after any flip.
    """
    from scipy.ndimage import map_coordinates

    fn = face_normals(vertices_idx, faces)
    length = np.linalg.norm(fn, axis=1, keepdims=True)
    ok = length[:, 0] > 0
    n = fn[ok] / length[ok]  # [F', 3]
    c = vertices_idx[faces[ok]].mean(axis=1)  # [F', 3]
    ahead = map_coordinates(grid, (c + 0.5 * n).T, order=1, mode="nearest")
    behind = map_coordinates(grid, (c - 0.5 * n).T, order=1, mode="nearest")
    differ = ahead != behind
    if not np.any(differ):
        return faces, 1.0
    outward = float(np.mean(ahead[differ] < behind[differ]))
    if outward < 0.5:
        return faces[:, ::-1].copy(), 1.0 - outward
    return faces, outward


def marching_cubes(
    grid: DensityGrid, threshold: float, pad_value: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Isosurface of ``grid`` at ``threshold``; returns (world vertices [V, 3] f64, faces [F, 3], padded-index vertices).

    The grid is padded with one layer of ``pad_value`` (below the threshold: empty) so surfaces
    touching the aabb are closed.
    """
    import mcubes

    padded = np.pad(grid.values, 1, mode="constant", constant_values=pad_value)  # [X+2, Y+2, Z+2]
    verts_idx, faces = mcubes.marching_cubes(padded.astype(np.float64, copy=False), float(threshold))
    verts_idx = np.asarray(verts_idx, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    world = grid.origin + (verts_idx - 1.0) * grid.spacing
    return world, faces, verts_idx


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about ``target_faces`` triangles (no-op when already at or below it)."""
    if len(faces) <= target_faces:
        return vertices, faces
    import fast_simplification

    v, f = fast_simplification.simplify(
        vertices.astype(np.float64), faces.astype(np.int32), target_count=int(target_faces)
    )
    v, f = np.asarray(v), np.asarray(f, dtype=np.int64)
    # drop triangles collapsed to an edge or point, then unused vertices
    good = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    return compact(v, f[good])


def fill_cavities(values: np.ndarray, threshold: float, fill_value: float | None = None) -> np.ndarray:
    """Raise closed pockets of low density (not connected to the grid's border) above ``threshold``.

    A NeRF's inside is never seen by any camera, so its density there is arbitrary and marching cubes
    would mesh hidden inner shells. Flood-filling the empty space from outside keeps the outer surface
    only. ``values``: [X, Y, Z] densities; returns a copy. Cavities get ``fill_value`` (default
    ``2 * threshold``; it must lie above the threshold).
    """
    from scipy import ndimage

    empty = np.pad(values < threshold, 1, mode="constant", constant_values=True)
    labels, _ = ndimage.label(empty)  # 6-connected empty regions
    outside = labels == labels[0, 0, 0]
    cavities = empty & ~outside
    filled = values.copy()
    filled[cavities[1:-1, 1:-1, 1:-1]] = 2.0 * threshold if fill_value is None else fill_value
    return filled


def extract_mesh(
    density_fn: DensityFn,
    aabb: Tensor | np.ndarray,
    cfg: ExtractSettings,
    *,
    timings: dict | None = None,
    render_step: float | None = None,
    sdf_fn: DensityFn | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Extract a clean triangle mesh of the density field's surface inside ``aabb``.

    With ``sdf_fn`` (points [N, 3] -> signed distance [N], negative inside) the surface is its zero
    level set instead; ``density_fn`` is then unused by extraction, ``cfg.threshold`` must be None and
    ``cfg.surface_optical_depth`` is ignored (the zero level is where renders see the surface).

    Args:
        density_fn: points [N, 3] float32 (world, +Z up) -> sigma [N] >= 0 (1/length).
        aabb: [2, 3] box to mesh (row 0 = min corner, row 1 = max corner), world units.
        cfg: an ``ExportConfig`` (reads the fields of :class:`ExtractSettings`).
        render_step: sample spacing of the renderer the field was trained with; the automatic threshold
            is ``ln 2 / render_step`` (independent of ``cfg.resolution``), or ``ln 2 / voxel`` when None.
        timings: optional dict that receives seconds per sub-stage (``grid``, ``fill_cavities``,
            ``marching_cubes``, ``components``, ``hidden``, ``decimate``, ``orient``, ``refine``).

    Returns:
        (vertices [V, 3] float32 world, faces [F, 3] int32 counter-clockwise from outside, threshold used).

    Raises:
        T23dError: the grid has no crossing at the threshold (message gives the density range seen and a
            threshold that would cross), or nothing is left after floater removal.
    """
    if cfg.faces < 4:
        raise ConfigError(f"faces must be >= 4 (target triangle count); got {cfg.faces}")
    if not 0.0 <= cfg.min_component_fraction <= 1.0:
        raise ConfigError(f"min_component_fraction must be in [0, 1]; got {cfg.min_component_fraction}")
    if cfg.threshold is not None and not cfg.threshold > 0:
        raise ConfigError(f"threshold must be > 0 (a density in 1/length) or None; got {cfg.threshold}")
    if render_step is not None and not render_step > 0:
        raise ConfigError(f"render_step must be > 0 (a length) or None; got {render_step}")
    if sdf_fn is not None and cfg.threshold is not None:
        raise ConfigError(
            f"threshold: {cfg.threshold} was given for an SDF field, whose surface is its zero level set; "
            "leave threshold unset (None)"
        )
    t = {} if timings is None else timings
    t0 = time.perf_counter()
    if sdf_fn is not None:
        grid = evaluate_density_grid(lambda p: -sdf_fn(p), aabb, cfg.resolution, cfg.chunk_size, signed=True)
    else:
        grid = evaluate_density_grid(density_fn, aabb, cfg.resolution, cfg.chunk_size)
    t["grid"] = time.perf_counter() - t0
    step = render_step if render_step is not None else grid.voxel_size
    if sdf_fn is not None:
        threshold = 0.0
    else:
        threshold = float(cfg.threshold) if cfg.threshold is not None else auto_threshold(step)
    lo, hi = float(grid.values.min()), float(grid.values.max())
    # outside of everything for padding, and above the level for filled cavities
    pad_value = min(0.0, lo, threshold - 1.0) if sdf_fn is not None else 0.0
    fill_value = grid.voxel_size if sdf_fn is not None else None
    if sdf_fn is not None and not (lo < 0.0 < hi):
        raise T23dError(
            f"no surface: the SDF sampled on the grid over the aabb never changes sign (from {-hi:.6g} to "
            f"{-lo:.6g}); the field is all {'outside' if hi <= 0 else 'inside'} (is it trained, is the aabb right?)"
        )
    if sdf_fn is None and not (lo < threshold <= hi):
        suggestion = suggest_threshold(grid.values)
        hint = (
            f"; try threshold={suggestion:.6g}"
            if suggestion is not None
            else "; the field is constant, so no "
            "threshold gives a surface (is the field trained, and is the aabb right?)"
        )
        rule = "render step" if render_step is not None else "voxel size"
        how = f"automatic (ln 2 / {rule})" if cfg.threshold is None else "given"
        raise T23dError(
            f"no surface: the density grid ({grid.values.shape[0]}x{grid.values.shape[1]}x{grid.values.shape[2]} "
            f"over the aabb) never crosses the {how} threshold {threshold:.6g}; densities seen range "
            f"from {lo:.6g} to {hi:.6g}{hint}"
        )
    if cfg.fill_cavities:
        t0 = time.perf_counter()
        grid = dataclasses.replace(grid, values=fill_cavities(grid.values, threshold, fill_value))
        t["fill_cavities"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    vertices, faces, _ = marching_cubes(grid, threshold, pad_value)
    t["marching_cubes"] = time.perf_counter() - t0
    if len(faces) == 0:
        raise T23dError(f"no surface: marching cubes found no triangles at threshold {threshold:.6g}")
    vertices, faces = merge_duplicate_vertices(vertices, faces)
    num_mc = len(faces)
    t0 = time.perf_counter()
    vertices, faces, removed = remove_small_components(vertices, faces, cfg.min_component_fraction)
    t["components"] = time.perf_counter() - t0
    hidden = 0
    if cfg.visibility_views > 0:  # before decimation, so the face budget goes to the visible surface
        t0 = time.perf_counter()
        vertices, faces, hidden = remove_hidden_faces(vertices, faces, cfg.visibility_views)
        t["hidden"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    vertices, faces = decimate(vertices, faces, cfg.faces)
    t["decimate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    padded = np.pad(grid.values, 1, mode="constant", constant_values=pad_value)
    idx = (vertices - grid.origin) / grid.spacing + 1.0  # [V, 3] padded-grid index coordinates
    faces, outward = orient_outward(padded, idx, faces)
    t["orient"] = time.perf_counter() - t0
    if outward < 0.9:
        log.warning("only %.1f%% of faces face decreasing density after orientation", 100 * outward)
    moved = 0.0
    if cfg.surface_optical_depth is not None and sdf_fn is None:
        t0 = time.perf_counter()
        vertices, moved = refine_to_surface(  # needs outward normals: after orientation
            density_fn, vertices, faces, grid.voxel_size, cfg.surface_optical_depth, chunk_size=cfg.chunk_size
        )
        t["refine"] = time.perf_counter() - t0
    log.info(
        "extracted mesh: threshold %.4g, %d marching-cubes triangles, %d floater components and %d hidden "
        "faces removed, %d triangles after decimation, %.0f%% of vertices moved onto the seen surface",
        threshold,
        num_mc,
        removed,
        hidden,
        len(faces),
        100 * moved,
    )
    return vertices.astype(np.float32), faces.astype(np.int32), threshold
