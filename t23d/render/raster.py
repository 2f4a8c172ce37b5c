"""Vectorised triangle rasterisation in numpy (no per-pixel or per-triangle Python loops).

Pixel (column c, row r) has its centre at (c, r) in the 2D coordinates given to these functions.
Each triangle's bounding box (grown by ``expand`` pixels) is enumerated as candidate pixels with
``np.repeat``; barycentrics and the distance outside the triangle are computed per candidate, and
for each pixel the candidate with the smallest distance outside its triangle wins (texture baking).
Triangles are processed in chunks so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

_MAX_CANDIDATES = 4_000_000
"""Candidate pixels enumerated per chunk (~200 MB of temporaries at float64)."""


def _chunks(counts: np.ndarray, limit: int) -> Iterator[tuple[int, int]]:
    """Split triangle indices into consecutive ranges whose candidate counts sum to <= limit (>= 1 tri)."""
    csum = np.cumsum(counts)
    start, n = 0, len(counts)
    while start < n:
        base = csum[start - 1] if start > 0 else 0
        end = int(np.searchsorted(csum, base + limit, side="right"))
        end = max(end, start + 1)
        yield start, min(end, n)
        start = end


def rasterize_candidates(
    tri_xy: np.ndarray, width: int, height: int, expand: float = 0.0
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield chunks of (pixel [K] linear index r*W+c, triangle [K], barycentrics [K, 3], outside [K]).

    Args:
        tri_xy: [F, 3, 2] triangle corners in pixel coordinates (x = column, y = row).
        width, height: image size in pixels.
        expand: also yield pixels whose centre lies up to this many pixels outside a triangle
            (``outside`` > 0 for them; barycentrics then have a negative entry).

    ``outside`` is the distance (pixels) from the pixel centre to the nearest edge line it lies
    beyond (0 inside), a close approximation of the distance to the triangle. Degenerate
    (zero-area) triangles are skipped.
    """
    tri = np.asarray(tri_xy, dtype=np.float64)  # [F, 3, 2]
    lo = np.floor(tri.min(axis=1) - expand).astype(np.int64)  # [F, 2]
    hi = np.ceil(tri.max(axis=1) + expand).astype(np.int64)  # [F, 2]
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]  # [F, 2] each
    area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])  # [F]
    size = np.maximum(hi - lo + 1, 0)  # [F, 2]
    valid = (np.abs(area2) > 1e-12) & np.all(size > 0, axis=1)
    counts = np.where(valid, size[:, 0] * size[:, 1], 0)  # [F]
    # length of the edge opposite each corner, to turn barycentrics into pixel distances
    edge_len = np.stack(
        [np.linalg.norm(c - b, axis=1), np.linalg.norm(a - c, axis=1), np.linalg.norm(b - a, axis=1)], axis=1
    )  # [F, 3]
    for s, e in _chunks(counts, _MAX_CANDIDATES):
        cnt = counts[s:e]
        total = int(cnt.sum())
        if total == 0:
            continue
        tid = np.repeat(np.arange(s, e), cnt)  # [K]
        first = np.repeat(np.cumsum(cnt) - cnt, cnt)  # [K]
        local = np.arange(total) - first
        w = size[tid, 0]
        py = lo[tid, 1] + local // w
        px = lo[tid, 0] + local % w
        ta, tb, tc = a[tid], b[tid], c[tid]
        inv = 1.0 / area2[tid]
        w0 = ((tb[:, 0] - px) * (tc[:, 1] - py) - (tb[:, 1] - py) * (tc[:, 0] - px)) * inv
        w1 = ((tc[:, 0] - px) * (ta[:, 1] - py) - (tc[:, 1] - py) * (ta[:, 0] - px)) * inv
        bary = np.stack([w0, w1, 1.0 - w0 - w1], axis=1)  # [K, 3]
        dist = bary * (
            np.abs(area2[tid])[:, None] / np.maximum(edge_len[tid], 1e-12)
        )  # [K, 3] signed px, + inside
        outside = np.maximum(-dist.min(axis=1), 0.0)  # [K]
        keep = outside <= expand + 1e-9
        yield (py * width + px)[keep], tid[keep], bary[keep], outside[keep]


def resolve_nearest(pixels: np.ndarray, keys: np.ndarray, *payload: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each distinct pixel keep the entry with the smallest key; returns (pixels, *payload) filtered."""
    order = np.lexsort((keys, pixels))
    p = pixels[order]
    first = np.ones(len(p), dtype=bool)
    first[1:] = p[1:] != p[:-1]
    sel = order[first]
    return (pixels[sel], *(x[sel] for x in payload))


def rasterize(
    tri_xy: np.ndarray, width: int, height: int, expand: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise triangles; return (pixel [P] linear index, triangle [P], barycentrics [P, 3]).

    Each pixel takes the triangle it is inside (or nearest to, within ``expand``): texture space, where
    triangles do not overlap. Screen rendering with depth uses the PyTorch z-buffer
    (:mod:`t23d.render.diffrast_torch`, through :func:`t23d.render.mesh.cast`).
    """
    pix_l, tri_l, bary_l, key_l = [], [], [], []
    for pix, tid, bary, outside in rasterize_candidates(tri_xy, width, height, expand):
        pix_l.append(pix)
        tri_l.append(tid)
        bary_l.append(bary)
        key_l.append(outside)
    if not pix_l:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    pix, tid, bary = resolve_nearest(
        np.concatenate(pix_l), np.concatenate(key_l), np.concatenate(tri_l), np.concatenate(bary_l)
    )
    return pix, tid, bary
