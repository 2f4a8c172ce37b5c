"""From the field's frame to the exported asset's frame.

Order of operations (all 4x4 homogeneous, column vectors, ``p_out = M @ p_field``):

1. ``world_transform`` (default identity): field frame -> the user's world frame (photo runs are
   trained in a normalised frame). Still right-handed, **+Z up**.
2. Z-up -> glTF Y-up: ``(x, y, z) -> (x, z, -y)`` (a rotation of -90 degrees about +X; keeps handedness).
3. Placement (in the Y-up frame): ``origin="center"`` moves the bounding-box centre to 0;
   ``"bottom"`` moves the x/z centre to 0 and the lowest point to y = 0; ``"world"`` keeps the frame.
   ``height`` scales uniformly about the new origin so the Y extent equals ``height`` (metres).

Normals transform by the inverse-transpose of the linear part; when that part mirrors
(negative determinant), the triangle winding is reversed so faces stay counter-clockwise outside.
"""

from __future__ import annotations

import numpy as np

from t23d.common.errors import ConfigError

ZUP_TO_YUP = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
"""4x4 mapping +Z-up coordinates to glTF +Y-up: (x, y, z) -> (x, z, -y)."""


def check_world_transform(world_transform: np.ndarray | None) -> np.ndarray:
    """Return ``world_transform`` as a float64 4x4 affine matrix (identity for None) or raise ConfigError."""
    if world_transform is None:
        return np.eye(4)
    m = np.asarray(world_transform, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise ConfigError(f"world_transform must be a finite 4x4 matrix; got shape {m.shape}")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0]) or abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise ConfigError(
            "world_transform must be an invertible affine 4x4 matrix with last row [0, 0, 0, 1]"
        )
    return m


def apply_points(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply 4x4 ``m`` to points [N, 3]; returns float64 [N, 3]."""
    p = np.asarray(points, dtype=np.float64)
    return p @ m[:3, :3].T + m[:3, 3]


def apply_normals(m: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Transform unit normals [N, 3] by the inverse-transpose of ``m``'s linear part; renormalised."""
    n = np.asarray(normals, dtype=np.float64) @ np.linalg.inv(m[:3, :3])  # == (inv(A).T @ n.T).T
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)


def export_transform(
    vertices: np.ndarray,
    world_transform: np.ndarray | None,
    origin: str,
    height: float | None,
) -> np.ndarray:
    """The 4x4 matrix taking field-frame ``vertices`` [V, 3] to the exported glTF (Y-up) frame."""
    m = ZUP_TO_YUP @ check_world_transform(world_transform)
    p = apply_points(m, vertices)  # [V, 3] in Y-up
    lo, hi = p.min(axis=0), p.max(axis=0)
    if origin == "center":
        shift = -(lo + hi) / 2.0
    elif origin == "bottom":
        shift = np.array([-(lo[0] + hi[0]) / 2.0, -lo[1], -(lo[2] + hi[2]) / 2.0])
    elif origin == "world":
        shift = np.zeros(3)
    else:
        raise ConfigError(f"origin: invalid value {origin!r}; accepted: 'center', 'bottom', 'world'")
    place = np.eye(4)
    place[:3, 3] = shift
    scale = np.eye(4)
    if height is not None:
        extent = hi[1] - lo[1]
        if not extent > 0:
            raise ConfigError(
                f"height={height}: the mesh has zero height, so it cannot be scaled to a height"
            )
        scale[:3, :3] *= height / extent
    return scale @ place @ m


def mirrors(m: np.ndarray) -> bool:
    """True when ``m``'s linear part has a negative determinant (winding must be reversed)."""
    return bool(np.linalg.det(m[:3, :3]) < 0)
