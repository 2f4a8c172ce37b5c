"""Scene normalisation (input world -> normalised training frame) and similarity alignment.

The normalised frame is a **scale + translation** of the input world frame, never a rotation, so
the input's up axis and orientation are kept::

    x_world = scale * x_normalised + centre      (world_from_normalised = [[scale*I, centre], [0, 1]])

* ``centre``: the point the camera optical axes converge to (least squares), which is the object
  for object-centric captures. When the axes are near-parallel (forward-facing captures) it falls
  back to the median sparse point, or to one median camera distance in front of the cameras.
* ``scale``: with sparse points, ``1.1 x`` the 99th percentile distance from ``centre`` of the points
  that are closer than the median camera distance (points beyond the cameras are background) and not
  isolated (:func:`isolated_points`: SfM outliers); with
  no points, the object is assumed to fill the narrowest field of view:
  ``median camera distance x sin(half fov)``. Either way the object lands inside the unit sphere.
* a user-given box (``DataConfig.bbox``) replaces all of the above: centred, longest side 0.95 x 2.
* ``aabb``: with points, their 0.5th-99.5th percentile box padded by 10 % and clipped to ``[-1, 1]^3``;
  else ``[-1, 1]^3``. Over a support plane the points' footprints on it count too: the object's region
  reaches down to what it stands on (the cut just above the plane then ends the asset).
* a **support plane** (a table, the floor; :func:`find_support_plane`): when many of the points near the
  cameras' target lie on one plane that every camera looks down on and that has the rest of the points
  above it, those points are surroundings, not object: ``scale`` and ``aabb`` come from the points above
  it, and the plane is returned so the asset can be cut just above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A user-given box's longest side spans this fraction of the normalised cube's side.
BBOX_FILL = 0.95


def convergence_point(c2w: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares point closest to all optical axes of OpenGL poses ``[N, 4, 4]``.

    Returns the point ``[3]`` and the condition number of the normal equations.
    """
    origins = c2w[:, :3, 3]  # [N, 3]
    dirs = -c2w[:, :3, 2]  # [N, 3] viewing directions (-Z)
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    proj = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]  # [N, 3, 3]
    a = proj.sum(0)
    b = (proj @ origins[:, :, None]).sum(0)[:, 0]
    cond = float(np.linalg.cond(a))
    if not np.isfinite(cond) or cond > 1e6:
        return origins.mean(0), cond
    return np.linalg.solve(a, b), cond


#: The object region's radius is 1.1 x this percentile of the distances of the sparse points on the object
#: from the centre (not their maximum, which one stray point would set; not lower: thin parts such as ears
#: and handles have few points, and a region that cuts them off loses them from the asset).
RADIUS_PERCENTILE = 99

#: The object region's box is the sparse points' 0.5th-99.5th percentile box (thin parts have few
#: points: a monkey head's ears reach 12 % of the box's size beyond its points' 1st-99th percentile
#: box, 9 % beyond this one).
AABB_PERCENTILE = 0.5
#: The box is padded by this fraction of its size on each side (more padding lets more of a table's
#: uneven surface stay above the cut, inside the box).
AABB_PAD = 0.1

#: Inlier distance of :func:`find_support_plane`, as a fraction of the median camera distance.
PLANE_TOLERANCE = 0.01


@dataclass
class SupportPlane:
    """A plane the object stands on, ``normal . x = offset`` (``normal`` a unit vector towards the cameras)."""

    normal: np.ndarray
    """``[3]`` unit normal, on the cameras' side."""
    offset: float
    """Signed distance of the plane from the origin along ``normal``."""
    num_inliers: int
    """Sparse points on the plane (within the inlier tolerance)."""
    fraction: float
    """Their fraction of the points considered (those near the cameras' target)."""
    rms: float
    """Root-mean-square distance of the inliers from the plane (the points' noise)."""

    def height(self, x: np.ndarray) -> np.ndarray:
        """Signed height ``[M]`` of points ``x [M, 3]`` above the plane (negative below)."""
        return x @ self.normal - self.offset

    def in_frame(self, world_from_normalised: np.ndarray) -> SupportPlane:
        """The same plane expressed in the normalised frame of ``world_from_normalised`` (scale + shift)."""
        scale, centre = float(world_from_normalised[0, 0]), world_from_normalised[:3, 3]
        return SupportPlane(
            self.normal.copy(),
            (self.offset - float(self.normal @ centre)) / scale,
            self.num_inliers,
            self.fraction,
            self.rms / scale,
        )

    def to_dict(self) -> dict:
        """Plain data for JSON."""
        return {
            "normal": [float(v) for v in self.normal],
            "offset": float(self.offset),
            "num_inliers": int(self.num_inliers),
            "fraction": round(float(self.fraction), 4),
            "rms": float(self.rms),
        }


def find_support_plane(
    points: np.ndarray, camera_origins: np.ndarray, tolerance: float, seed: int = 0, iterations: int = 256
) -> SupportPlane | None:
    """The plane an object stands on, from sparse ``points [P, 3]`` near it (RANSAC), or None.

    A plane qualifies when (``tolerance``: inlier distance, world units) at least 20 % of the points
    (and 30) lie on it, at least 95 % of the ``camera_origins [N, 3]`` are above it (the cameras look down
    on a table or floor; an object's own side faces have cameras on both sides), at least 10 % of the
    points (and 20) are above it (the object), and at most 5 % of the points off it are below it (the
    top face of a box standing on nothing has the box's sides below it). The qualifying plane with the
    most inliers is refined by least squares on its inliers. Deterministic for a given ``seed``.
    """
    p = np.asarray(points, dtype=np.float64)
    n_pts = len(p)
    if n_pts < 50:
        return None
    rng = np.random.default_rng(seed)
    tri = p[rng.integers(0, n_pts, (iterations, 3))]  # [H, 3, 3]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [H, 3]
    norm = np.linalg.norm(normals, axis=1)
    ok = norm > 1e-12
    normals, tri = normals[ok] / norm[ok, None], tri[ok]
    offsets = np.einsum("hk,hk->h", normals, tri[:, 0])
    flip = np.median(camera_origins @ normals.T - offsets, axis=0) < 0  # orient towards the cameras
    normals[flip], offsets[flip] = -normals[flip], -offsets[flip]

    def qualifies(normal: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = p @ normal.T - offset  # [P, H]
        on = np.abs(h) < tolerance
        count = on.sum(0)
        above = (h > 3 * tolerance).sum(0)
        below = (h < -3 * tolerance).sum(0)
        cams = ((camera_origins @ normal.T - offset) > tolerance).mean(0)
        good = (
            (count >= max(30, 0.2 * n_pts))
            & (cams >= 0.95)
            & (above >= max(20, 0.1 * n_pts))
            & (below <= 0.05 * np.maximum(n_pts - count, 1))
        )
        return good, count

    good, count = qualifies(normals, offsets)
    if not good.any():
        return None
    best = int(np.argmax(np.where(good, count, -1)))
    inliers = p[np.abs(p @ normals[best] - offsets[best]) < tolerance]
    mean = inliers.mean(0)
    normal = np.linalg.svd(inliers - mean, full_matrices=False)[2][2]
    normal = normal if normal @ normals[best] > 0 else -normal
    offset = float(normal @ mean)
    refined_good, refined_count = qualifies(normal[None], np.array([offset]))
    if not refined_good[0]:  # the least-squares fit lost the plane's qualities: keep the sampled one
        normal, offset = normals[best], float(offsets[best])
        refined_count = count[best : best + 1]
    dist = p @ normal - offset
    on = np.abs(dist) < tolerance
    return SupportPlane(
        normal,
        offset,
        int(refined_count[0]),
        float(refined_count[0]) / n_pts,
        float(np.sqrt(np.mean(dist[on] ** 2))),
    )


def isolated_points(points: np.ndarray, neighbours: int = 8, factor: float = 3.0) -> np.ndarray:
    """Mask ``[P]`` of SfM outliers among ``points [P, 3]``: points whose distance to their
    ``neighbours``-th nearest neighbour exceeds ``factor`` x the median of that distance (surfaces
    give dense clusters of points; mismatches float alone in the air)."""
    from scipy.spatial import cKDTree

    p = np.asarray(points, dtype=np.float64)
    if len(p) <= neighbours:
        return np.zeros(len(p), dtype=bool)
    d = cKDTree(p).query(p, neighbours + 1)[0][:, -1]
    return d > factor * np.median(d)


def compute_normalisation(
    c2w: np.ndarray,
    points: np.ndarray | None,
    half_fov: float,
    bbox: np.ndarray | None = None,
    support_plane: bool = True,
) -> tuple[np.ndarray, np.ndarray, SupportPlane | None]:
    """Compute ``world_from_normalised`` ``[4, 4]``, the object ``aabb`` ``[2, 3]`` (normalised) and the
    support plane the object stands on (normalised frame; None when there is none or it is not looked for).

    ``c2w``: ``[N, 4, 4]`` OpenGL poses in the input frame; ``points``: ``[P, 3]`` or None;
    ``half_fov``: the smallest half field of view of the cameras, radians. ``bbox``: ``[2, 3]`` min/max
    corners of the object given by the user (input frame): it becomes the ``aabb``, centred, its
    longest side spanning :data:`BBOX_FILL` of ``[-1, 1]`` (no support plane is looked for then).
    ``support_plane``: look for a plane the object stands on in the points (:func:`find_support_plane`).
    """
    if bbox is not None:
        centre = 0.5 * (bbox[0] + bbox[1])
        radius = float((bbox[1] - bbox[0]).max()) / 2 / BBOX_FILL
        world_from_normalised = np.eye(4)
        world_from_normalised[:3, :3] *= radius
        world_from_normalised[:3, 3] = centre
        return world_from_normalised, (bbox - centre) / radius, None
    origins = c2w[:, :3, 3]
    dirs = -c2w[:, :3, 2]
    centre, cond = convergence_point(c2w)
    in_front = np.einsum("nk,nk->n", centre[None] - origins, dirs) > 0
    if len(c2w) < 2 or cond > 1e4 or in_front.mean() < 0.5:
        if points is not None and len(points) >= 10:
            centre = np.median(points, axis=0)
        else:
            depth = max(float(np.median(np.linalg.norm(origins - origins.mean(0), axis=1))), 1.0)
            centre = (origins + dirs * depth).mean(0)
    cam_dist = float(np.median(np.linalg.norm(origins - centre, axis=1)))
    cam_dist = cam_dist if cam_dist > 1e-9 else 1.0

    aabb = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    inner = None
    plane = None
    if points is not None and len(points) > 0:
        dist = np.linalg.norm(points - centre, axis=1)
        inner = points[dist < cam_dist]
        if support_plane:
            plane = find_support_plane(inner, origins, PLANE_TOLERANCE * cam_dist)
        if plane is not None:  # the object is what stands on the plane
            inner = inner[plane.height(inner) > 3 * PLANE_TOLERANCE * cam_dist]
        inner = inner[~isolated_points(inner)]
        if len(inner) < 10:
            inner, plane = None, None
    if inner is not None:
        radius = 1.1 * float(np.percentile(np.linalg.norm(inner - centre, axis=1), RADIUS_PERCENTILE))
    else:
        radius = cam_dist * float(np.sin(half_fov))
    radius = radius if radius > 1e-9 else 1.0

    world_from_normalised = np.eye(4)
    world_from_normalised[:3, :3] *= radius
    world_from_normalised[:3, 3] = centre
    if inner is not None:
        if plane is not None:  # the object stands on the plane: its region reaches down to it
            inner = np.concatenate([inner, inner - plane.height(inner)[:, None] * plane.normal[None]])
        p = (inner - centre) / radius
        lo, hi = np.percentile(p, AABB_PERCENTILE, axis=0), np.percentile(p, 100 - AABB_PERCENTILE, axis=0)
        pad = AABB_PAD * (hi - lo) + 1e-3
        aabb = np.clip(np.stack([lo - pad, hi + pad]), -1.0, 1.0)
    return world_from_normalised, aabb, None if plane is None else plane.in_frame(world_from_normalised)


def normalise_poses(c2w: np.ndarray, world_from_normalised: np.ndarray) -> np.ndarray:
    """Express OpenGL poses ``[N, 4, 4]`` in the normalised frame (rotations unchanged)."""
    scale = world_from_normalised[0, 0]
    out = c2w.copy()
    out[:, :3, 3] = (c2w[:, :3, 3] - world_from_normalised[:3, 3]) / scale
    return out


def denormalise_poses(c2w_normalised: np.ndarray, world_from_normalised: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalise_poses`: rigid OpenGL poses ``[N, 4, 4]`` in the input world frame.

    Equal to ``world_from_normalised @ c2w_normalised`` with the rotation block divided by the scale.
    """
    out = world_from_normalised[None] @ c2w_normalised
    out[:, :3, :3] /= world_from_normalised[0, 0]
    return out


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``(s, R, t)`` minimising ``sum |s R src_i + t - dst_i|^2`` (Umeyama 1991).

    ``src, dst``: ``[N, 3]`` corresponding points. Returns scale, ``[3, 3]`` rotation, ``[3]`` translation.
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2, 2] = -1
    rot = u @ d @ vt
    var_s = (xs**2).sum() / len(src)
    s = float(np.trace(np.diag(sig) @ d) / var_s)
    t = mu_d - s * rot @ mu_s
    return s, rot, t
