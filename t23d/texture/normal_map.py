"""Tangent-space normal maps: per-vertex tangents and the bake from a higher-detail surface.

**Tangents** (:func:`vertex_tangents`), MikkTSpace-style: each triangle's tangent ``T = dP/du`` and
bitangent ``B = dP/dv`` from its UV derivatives (t23d's UVs, v up), summed per vertex weighted by the
corner angle, then orthogonalised against the vertex normal (Gram-Schmidt); the handedness
``w = sign((N x T) . B)``. xatlas already splits vertices on UV seams, so tangents never average across
charts. The glTF writer stores them as ``TANGENT`` (xyz unit, w = +-1), which three.js and Blender read
as given; a viewer that ignores them and runs MikkTSpace itself gets the same frame up to MikkTSpace's
finer vertex splitting (it never differs on these meshes' smooth charts).

**Convention** (glTF 2.0 ``normalTexture``, the OpenGL "Y+" convention Blender uses): a texel holds the
unit normal ``(x, y, z)`` in the frame (T, B, N) with ``B = w (N x T)``, encoded as
``rgb = (n + 1) / 2`` in linear 8-bit; ``+Y`` (green) points towards increasing OpenGL v, i.e. up in
the image, as the glTF specification says. A flat texel is (0.5, 0.5, 1.0) = (128, 128, 255).
Decoding: ``n = normalize(x T + y B + z N)`` with the interpolated vertex T, N (as every glTF viewer).

**Bake** (:func:`bake_normal_map`): every texel's surface point on the low-poly asset gets its detail
normal from ``normal_fn`` (a refined mesh before decimation: :func:`closest_point_normal_fn`; a field's
density / SDF gradient: ``t23d.render.field_fns.normal_fn_of``), expressed in the texel's (T, B, N).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from t23d.texture.bake import fill_padding, texel_samples

NormalFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(points [N, 3], unit low-poly normals [N, 3], float64) -> unit detail normals [N, 3] (same frame)."""

FLAT = np.array([128, 128, 255], dtype=np.uint8)
"""The encoding of the unperturbed normal (0, 0, 1)."""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-30)


def _any_perpendicular(n: np.ndarray) -> np.ndarray:
    helper = np.where(np.abs(n[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    return _unit(np.cross(helper, n))


def vertex_tangents(
    vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, uvs: np.ndarray
) -> np.ndarray:
    """Per-vertex tangents ``[V, 4]`` float32 (xyz unit, perpendicular to the normal; w = +-1 handedness).

    Args:
        vertices: [V, 3]; faces: [F, 3]; normals: [V, 3] unit vertex normals; uvs: [V, 2] (v up).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    n = _unit(np.asarray(normals, dtype=np.float64))
    uv = np.asarray(uvs, dtype=np.float64)
    p0, p1, p2 = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    e1, e2 = p1 - p0, p2 - p0  # [F, 3]
    d1, d2 = uv[f[:, 1]] - uv[f[:, 0]], uv[f[:, 2]] - uv[f[:, 0]]  # [F, 2]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ok = np.abs(det) > 1e-20
    r = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)[:, None]
    t_face = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r  # dP/du
    b_face = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r  # dP/dv
    t_face, b_face = _unit(t_face), _unit(b_face)
    t_acc = np.zeros_like(v)
    b_acc = np.zeros_like(v)
    corners = (p0, p1, p2)
    for k in range(3):
        a = corners[(k + 1) % 3] - corners[k]
        b = corners[(k + 2) % 3] - corners[k]
        cos = (_unit(a) * _unit(b)).sum(-1).clip(-1.0, 1.0)
        angle = np.where(ok, np.arccos(cos), 0.0)[:, None]  # corner angle weight
        np.add.at(t_acc, f[:, k], angle * t_face)
        np.add.at(b_acc, f[:, k], angle * b_face)
    t = t_acc - n * (n * t_acc).sum(-1, keepdims=True)  # Gram-Schmidt against the normal
    small = np.linalg.norm(t, axis=-1) < 1e-12
    t = np.where(small[:, None], _any_perpendicular(n), _unit(t))
    w = np.where((np.cross(n, t) * b_acc).sum(-1) < 0.0, -1.0, 1.0)
    return np.concatenate([t, w[:, None]], axis=1).astype(np.float32)


@dataclass
class NormalMapStats:
    """How much the baked normal map adds, measured at the texels it covers."""

    error_deg: float
    """Mean angle (degrees) between the decoded normal map (8-bit) and the detail normals."""
    baseline_deg: float
    """Mean angle (degrees) between the asset's interpolated vertex normals and the detail normals
    (what a viewer shows without the normal map)."""
    texels: int
    """Texels baked."""


def bake_normal_map(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    normals: np.ndarray,
    tangents: np.ndarray,
    normal_fn: NormalFn,
    texture_size: int,
    padding: int,
    chunk_size: int = 262_144,
) -> tuple[np.ndarray, NormalMapStats]:
    """Bake the detail normals of ``normal_fn`` into a tangent-space normal map of the low-poly mesh.

    Args:
        vertices, faces, uvs, normals: the asset's mesh (field frame, v-up UVs, unit vertex normals).
        tangents: [V, 4] from :func:`vertex_tangents`.
        normal_fn: detail normals at surface points (see :data:`NormalFn`).
        texture_size: width = height in texels; padding: texels of dilation around charts.

    Returns:
        ([S, S, 3] uint8 linear RGB, row 0 at the top (v = 1), empty texels flat), stats.
    """
    size = int(texture_size)
    pix, tid, bary, points, nrm = texel_samples(vertices, faces, uvs, normals, size)
    f = np.asarray(faces, dtype=np.int64)
    tan = np.asarray(tangents, dtype=np.float64)
    t = np.einsum("pk,pkc->pc", bary, tan[f[tid], :3])
    t = t - nrm * (nrm * t).sum(-1, keepdims=True)
    bad = np.linalg.norm(t, axis=-1) < 1e-12
    t = np.where(bad[:, None], _any_perpendicular(nrm), _unit(t))
    w = np.where(np.einsum("pk,pk->p", bary, tan[f[tid], 3]) < 0.0, -1.0, 1.0)
    b = w[:, None] * np.cross(nrm, t)
    detail = np.concatenate(
        [normal_fn(points[s : s + chunk_size], nrm[s : s + chunk_size]) for s in range(0, len(points), chunk_size)]
    ) if len(points) else np.zeros((0, 3))  # fmt: skip
    detail = _unit(np.nan_to_num(np.asarray(detail, dtype=np.float64)))
    local = np.stack([(detail * t).sum(-1), (detail * b).sum(-1), (detail * nrm).sum(-1)], -1)
    facing = local[:, 2] > 1e-3  # a detail normal at or behind the surface's horizon stays flat
    local = np.where(facing[:, None], _unit(local), [[0.0, 0.0, 1.0]])
    encoded = np.clip(np.round((local + 1.0) * 0.5 * 255.0), 0, 255)
    image = np.zeros((size * size, 3), dtype=np.float64)
    filled = np.zeros(size * size, dtype=bool)
    image[pix] = encoded
    filled[pix] = True
    image = fill_padding(
        image.reshape(size, size, 3), filled.reshape(size, size), padding, FLAT.astype(float)
    )
    decoded = _unit(encoded / 255.0 * 2.0 - 1.0)
    back = _unit(decoded[:, :1] * t + decoded[:, 1:2] * b + decoded[:, 2:3] * nrm)
    angle = np.degrees(np.arccos(np.clip((back * detail).sum(-1), -1.0, 1.0)))
    base = np.degrees(np.arccos(np.clip((nrm * detail).sum(-1), -1.0, 1.0)))
    stats = NormalMapStats(
        error_deg=float(angle.mean()) if len(angle) else 0.0,
        baseline_deg=float(base.mean()) if len(base) else 0.0,
        texels=int(len(pix)),
    )
    return image.astype(np.uint8), stats


def closest_point_normal_fn(vertices: np.ndarray, faces: np.ndarray, candidates: int = 16) -> NormalFn:
    """Detail normals from a higher-detail mesh (e.g. the refined mesh before decimation): the smooth
    (interpolated vertex) normal at the closest point of the mesh to each query point.

    Closest points are exact over the ``candidates`` triangles with the nearest centroids (a KD-tree,
    scipy), which contains the true closest triangle when the query lies near a surface of even
    triangles, as here (the asset is a decimation of this mesh).
    """
    from scipy.spatial import cKDTree

    from t23d.extract.mesh import vertex_normals

    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    vn = vertex_normals(v, f).astype(np.float64)
    tri = v[f]  # [F, 3, 3]
    tree = cKDTree(tri.mean(axis=1))
    k = int(min(candidates, len(f)))

    def normal_fn(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        _, idx = tree.query(p, k=k)
        idx = idx.reshape(len(p), k)
        bary, dist2 = _closest_on_triangles(p[:, None, :], tri[idx])  # [N, k, 3], [N, k]
        best = np.argmin(dist2, axis=1)
        rows = np.arange(len(p))
        face = idx[rows, best]
        b = bary[rows, best]  # [N, 3]
        n = np.einsum("nk,nkc->nc", b, vn[f[face]])
        return _unit(n)

    return normal_fn


def _closest_on_triangles(p: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentrics [..., 3] of the closest point of each triangle tri [..., 3, 3] to p [..., 3], and the
    squared distance [...] (Ericson, Real-Time Collision Detection, 5.1.5, vectorised)."""
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    denom = np.where(np.abs(va + vb + vc) > 1e-30, va + vb + vc, 1e-30)
    v_in, w_in = vb / denom, vc / denom
    bary = np.stack([1 - v_in - w_in, v_in, w_in], -1)  # interior by default

    def put(mask, values):
        nonlocal bary
        bary = np.where(mask[..., None], values, bary)

    # edge regions (checked before vertices, which take precedence)
    t_bc = (d4 - d3) / np.where(np.abs((d4 - d3) + (d5 - d6)) > 1e-30, (d4 - d3) + (d5 - d6), 1e-30)
    put((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), np.stack([0 * t_bc, 1 - t_bc, t_bc], -1))
    t_ac = d2 / np.where(np.abs(d2 - d6) > 1e-30, d2 - d6, 1e-30)
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - t_ac, 0 * t_ac, t_ac], -1))
    t_ab = d1 / np.where(np.abs(d1 - d3) > 1e-30, d1 - d3, 1e-30)
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - t_ab, t_ab, 0 * t_ab], -1))
    one, zero = np.ones_like(d1), np.zeros_like(d1)
    put((d6 >= 0) & (d5 <= d6), np.stack([zero, zero, one], -1))
    put((d3 >= 0) & (d4 <= d3), np.stack([zero, one, zero], -1))
    put((d1 <= 0) & (d2 <= 0), np.stack([one, zero, zero], -1))
    q = bary[..., 0:1] * a + bary[..., 1:2] * b + bary[..., 2:3] * c
    return bary, ((q - p) ** 2).sum(-1)
