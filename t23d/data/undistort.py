"""Lens distortion models and image undistortion to a pinhole camera (numpy + scipy, no OpenCV).

All models act on normalised image coordinates ``x = (u - cx) / fx``, ``y = (v - cy) / fy``
(pixel centres at +0.5, see :mod:`t23d.data.cameras`), exactly as COLMAP and OpenCV define them:

* ``SIMPLE_RADIAL`` / ``RADIAL`` / ``OPENCV`` (radial-tangential):
  ``r2 = x^2 + y^2``, ``radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3``,
  ``xd = x radial + 2 p1 x y + p2 (r2 + 2 x^2)``, ``yd = y radial + p1 (r2 + 2 y^2) + 2 p2 x y``.
* ``OPENCV_FISHEYE`` (equidistant): ``theta = atan(r)``,
  ``theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)``, ``xd = x theta_d / r``.

:func:`undistort_image` keeps the image size and the pinhole ``fx, fy, cx, cy``; each output pixel
samples the distorted input bilinearly at the forward-distorted position. Output pixels whose
source lies outside the input take the nearest edge value and are reported in the valid mask.
"""

from __future__ import annotations

import numpy as np

from t23d.data.cameras import Camera


def _coeffs(camera: Camera) -> dict[str, float]:
    d = {k: 0.0 for k in ("k1", "k2", "k3", "k4", "p1", "p2")}
    d.update({k: float(v) for k, v in camera.distortion.items()})
    return d


def distort_points(x: np.ndarray, y: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``camera``'s distortion to undistorted normalised coordinates ``x, y`` (any shape)."""
    if camera.is_pinhole:
        return x, y
    d = _coeffs(camera)
    if camera.model == "OPENCV_FISHEYE":
        r = np.sqrt(x * x + y * y)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (d["k1"] + t2 * (d["k2"] + t2 * (d["k3"] + t2 * d["k4"]))))
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
        return x * ratio, y * ratio
    r2 = x * x + y * y
    radial = 1 + r2 * (d["k1"] + r2 * (d["k2"] + r2 * d["k3"]))
    xd = x * radial + 2 * d["p1"] * x * y + d["p2"] * (r2 + 2 * x * x)
    yd = y * radial + d["p1"] * (r2 + 2 * y * y) + 2 * d["p2"] * x * y
    return xd, yd


def undistort_points(
    xd: np.ndarray, yd: np.ndarray, camera: Camera, num_iters: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Invert :func:`distort_points` by Newton iterations with a numerical Jacobian."""
    if camera.is_pinhole:
        return xd, yd
    x, y = xd.astype(np.float64).copy(), yd.astype(np.float64).copy()
    eps = 1e-7
    for _ in range(num_iters):
        fx_, fy_ = distort_points(x, y, camera)
        ex, ey = fx_ - xd, fy_ - yd
        ax, ay = distort_points(x + eps, y, camera)
        bx, by = distort_points(x, y + eps, camera)
        j00, j10 = (ax - fx_) / eps, (ay - fy_) / eps
        j01, j11 = (bx - fx_) / eps, (by - fy_) / eps
        det = j00 * j11 - j01 * j10
        det = np.where(np.abs(det) < 1e-12, 1e-12, det)
        dx = (j11 * ex - j01 * ey) / det
        dy = (-j10 * ex + j00 * ey) / det
        x, y = x - dx, y - dy
        if max(np.abs(dx).max(initial=0.0), np.abs(dy).max(initial=0.0)) < 1e-12:
            break
    return x, y


def undistort_image(image: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Resample a distorted image ``[H, W, C]`` to the pinhole camera ``camera.as_pinhole()``.

    Returns the undistorted image ``[H, W, C]`` (same dtype as float32) and a boolean valid mask
    ``[H, W]`` (False where the source pixel fell outside the input).
    """
    from scipy.ndimage import map_coordinates

    h, w = image.shape[:2]
    v, u = np.meshgrid(
        np.arange(h, dtype=np.float64) + 0.5, np.arange(w, dtype=np.float64) + 0.5, indexing="ij"
    )
    x, y = (u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy  # [H, W]
    xd, yd = distort_points(x, y, camera)
    ud, vd = xd * camera.fx + camera.cx, yd * camera.fy + camera.cy  # continuous pixel coords
    valid = (ud >= 0) & (ud <= w) & (vd >= 0) & (vd <= h)
    coords = np.stack([vd - 0.5, ud - 0.5])  # array index = continuous coordinate - 0.5
    img = image.astype(np.float32, copy=False)
    out = np.empty_like(img)
    for c in range(img.shape[2]):
        out[..., c] = map_coordinates(img[..., c], coords, order=1, mode="nearest")
    return out, valid
