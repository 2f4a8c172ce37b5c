"""Scene normalisation (input world -> normalised training frame) and similarity alignment.

The normalised frame is a **scale + translation** of the input world frame, never a rotation, so
the input's up axis and orientation are kept::

    x_world = scale * x_normalised + centre      (world_from_normalised = [[scale*I, centre], [0, 1]])

* ``centre``: the point the camera optical axes converge to (least squares), which is the object
  for object-centric captures. When the axes are near-parallel (forward-facing captures) it falls
  back to the median sparse point, or to one median camera distance in front of the cameras.
* ``scale``: with sparse points, ``1.1 x`` the 95th percentile distance from ``centre`` of the points
  that are closer than the median camera distance (points beyond the cameras are background); with
  no points, the object is assumed to fill the narrowest field of view:
  ``median camera distance x sin(half fov)``. Either way the object lands inside the unit sphere.
* a user-given box (``DataConfig.bbox``) replaces all of the above: centred, longest side 0.95 x 2.
* ``aabb``: with points, their 1st-99th percentile box padded by 10 % and clipped to ``[-1, 1]^3``;
  else ``[-1, 1]^3``.
"""

from __future__ import annotations

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


def compute_normalisation(
    c2w: np.ndarray, points: np.ndarray | None, half_fov: float, bbox: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Compute ``world_from_normalised`` ``[4, 4]`` and the object ``aabb`` ``[2, 3]`` (normalised).

    ``c2w``: ``[N, 4, 4]`` OpenGL poses in the input frame; ``points``: ``[P, 3]`` or None;
    ``half_fov``: the smallest half field of view of the cameras, radians. ``bbox``: ``[2, 3]`` min/max
    corners of the object given by the user (input frame): it becomes the ``aabb``, centred, its
    longest side spanning :data:`BBOX_FILL` of ``[-1, 1]``.
    """
    if bbox is not None:
        centre = 0.5 * (bbox[0] + bbox[1])
        radius = float((bbox[1] - bbox[0]).max()) / 2 / BBOX_FILL
        world_from_normalised = np.eye(4)
        world_from_normalised[:3, :3] *= radius
        world_from_normalised[:3, 3] = centre
        return world_from_normalised, (bbox - centre) / radius
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
    if points is not None and len(points) > 0:
        dist = np.linalg.norm(points - centre, axis=1)
        inner = points[dist < cam_dist]
        if len(inner) < 10:
            inner = None
    if inner is not None:
        radius = 1.1 * float(np.percentile(np.linalg.norm(inner - centre, axis=1), 95))
    else:
        radius = cam_dist * float(np.sin(half_fov))
    radius = radius if radius > 1e-9 else 1.0

    world_from_normalised = np.eye(4)
    world_from_normalised[:3, :3] *= radius
    world_from_normalised[:3, 3] = centre
    if inner is not None:
        p = (inner - centre) / radius
        lo, hi = np.percentile(p, 1, axis=0), np.percentile(p, 99, axis=0)
        pad = 0.1 * (hi - lo) + 1e-3
        aabb = np.clip(np.stack([lo - pad, hi + pad]), -1.0, 1.0)
    return world_from_normalised, aabb


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
