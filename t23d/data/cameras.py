"""Camera types and pose conversions shared by every format reader and the synthetic generator.

Conventions (used throughout :mod:`t23d.data`):

* Poses are **camera-to-world** 4x4 matrices in the **OpenGL** convention, as in nerfstudio and
  Blender: the camera looks down its local -Z axis, +Y is up in the image, +X is right.
  COLMAP / OpenCV poses (+Z forward, +Y down) are converted with :func:`opencv_to_opengl`.
* Intrinsics are pinhole ``fx, fy, cx, cy`` in pixels. Pixel ``(i, j)`` (column, row) covers the
  continuous square ``[i, i+1) x [j, j+1)``; its centre is at ``(i + 0.5, j + 0.5)``. This is the
  COLMAP and nerfstudio convention, so scaling an image by ``s`` scales all four numbers by ``s``.
* Distortion follows COLMAP/OpenCV on normalised coordinates ``x = (u - cx) / fx`` (see
  :mod:`t23d.data.undistort`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from t23d.common.errors import T23dError

#: Camera models every reader accepts; all but PINHOLE are undistorted to PINHOLE when loading.
SUPPORTED_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE")

#: Distortion coefficient names, in the order COLMAP stores them for each model.
DISTORTION_KEYS: dict[str, tuple[str, ...]] = {
    "PINHOLE": (),
    "SIMPLE_PINHOLE": (),
    "SIMPLE_RADIAL": ("k1",),
    "RADIAL": ("k1", "k2"),
    "OPENCV": ("k1", "k2", "p1", "p2"),
    "OPENCV_FISHEYE": ("k1", "k2", "k3", "k4"),
}

#: OpenGL <-> OpenCV camera axes flip (its own inverse): negate the camera's Y and Z axes.
GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class Camera:
    """Intrinsics of one image: size, pinhole parameters and (optional) lens distortion."""

    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    fx: float
    """Focal length along x, pixels."""
    fy: float
    """Focal length along y, pixels."""
    cx: float
    """Principal point x, pixels (pixel centres at +0.5)."""
    cy: float
    """Principal point y, pixels (pixel centres at +0.5)."""
    model: str = "PINHOLE"
    """Distortion model name (one of :data:`SUPPORTED_MODELS`)."""
    distortion: dict[str, float] = field(default_factory=dict)
    """Distortion coefficients by name (``k1 k2 k3 k4 p1 p2``); missing ones are zero."""

    @property
    def is_pinhole(self) -> bool:
        """True when there is no distortion to remove."""
        return self.model in ("PINHOLE", "SIMPLE_PINHOLE") or not any(self.distortion.values())

    def as_pinhole(self) -> Camera:
        """The same intrinsics with the distortion removed."""
        return dataclasses.replace(self, model="PINHOLE", distortion={})

    def scaled(self, width: int, height: int) -> Camera:
        """Intrinsics for the same camera with the image resized to ``width x height``."""
        sx, sy = width / self.width, height / self.height
        return dataclasses.replace(
            self,
            width=width,
            height=height,
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=self.cx * sx,
            cy=self.cy * sy,
        )

    def intrinsics(self) -> np.ndarray:
        """``[4]`` array ``fx, fy, cx, cy``."""
        return np.array([self.fx, self.fy, self.cx, self.cy], dtype=np.float64)


@dataclass
class Frame:
    """One posed image as a reader found it, before images are loaded."""

    image_path: Path
    """Path of the image file."""
    c2w: np.ndarray
    """``[4, 4]`` camera-to-world, OpenGL convention, in the input's world frame and units."""
    camera: Camera | None
    """Intrinsics; ``None`` only while a reader still has to read the image size."""
    mask_path: Path | None = None
    """Optional single-channel mask (white = object), used as alpha."""


@dataclass
class SceneFrames:
    """What a format reader returns: posed frames, the split and optional sparse points."""

    frames: list[Frame]
    """All frames, in the dataset's order."""
    source_format: str
    """``nerfstudio``, ``blender``, ``colmap`` or ``images``."""
    test_mask: list[bool] | None = None
    """Per frame, True for held-out frames; ``None`` when the format has no split."""
    points: np.ndarray | None = None
    """``[P, 3]`` sparse points in the input world frame, when the format has them."""
    point_views: np.ndarray | None = None
    """``[E, 2]`` int64 pairs ``(point, frame)``: which frame saw which of ``points`` (from the tracks of
    the model the points came from), when known."""
    sfm_report: dict | None = None
    """Summary of the structure-from-motion run, when one ran."""
    sfm_model: Any = None
    """The ``pycolmap.Reconstruction`` structure from motion posed the photos with, when it ran (saved in
    the run directory, so a resumed run reads the same poses instead of posing the photos again)."""


def check_model(model: str, where: str, accepted: tuple[str, ...] = SUPPORTED_MODELS) -> None:
    """Raise :class:`T23dError` unless ``model`` is one of ``accepted``."""
    if model not in accepted:
        raise T23dError(f"unsupported camera model '{model}' in {where}; accepted: {', '.join(accepted)}")


def check_frames(scene: SceneFrames, where: str | Path) -> None:
    """Refuse cameras that cannot be trained on, before any image is decoded: a camera-to-world matrix
    with NaN/Inf entries, a singular rotation (e.g. all zeros), a bottom row other than ``0 0 0 1``, or
    intrinsics that are not finite positive numbers. The error names the frame, its image, the key and
    the value. A rotation that is not orthonormal is only warned about (poses are used as given)."""
    import logging

    for i, f in enumerate(scene.frames):
        what = f"{where}: frame {i} ({f.image_path.name})"
        c2w = np.asarray(f.c2w, dtype=np.float64)
        if c2w.shape != (4, 4):
            raise T23dError(f"{what}: the camera-to-world matrix must be 4x4, got {list(c2w.shape)}")
        bad = np.argwhere(~np.isfinite(c2w))
        if len(bad):
            r, c = bad[0]
            raise T23dError(
                f"{what}: the camera-to-world matrix ('transform_matrix') has {c2w[r, c]} at row {r}, column {c}; "
                "accepted: finite numbers only (fix or drop this frame)"
            )
        if not np.allclose(c2w[3], [0.0, 0.0, 0.0, 1.0], atol=1e-4):
            raise T23dError(
                f"{what}: the camera-to-world matrix's bottom row is {c2w[3].tolist()}; accepted: [0, 0, 0, 1]"
            )
        rot = c2w[:3, :3]
        det = float(np.linalg.det(rot))
        if abs(det) < 1e-6:
            raise T23dError(
                f"{what}: the camera-to-world matrix's rotation is singular (determinant {det:.3g}; "
                f"{'all zeros' if not rot.any() else 'degenerate'}); accepted: a rotation (orthonormal 3x3 block)"
            )
        err = float(np.abs(rot.T @ rot - np.eye(3)).max())
        if err > 1e-3:
            logging.getLogger(__name__).warning(
                "%s: the rotation is not orthonormal (|R^T R - I| = %.3g); using it as given", what, err
            )
        cam = f.camera
        if cam is None:
            continue
        for key, value in (("width", cam.width), ("height", cam.height)):
            if not (isinstance(value, (int, np.integer)) and value >= 1):
                raise T23dError(f"{what}: image {key} {value!r}; accepted: an integer >= 1 (pixels)")
        for key, value in (("fx (fl_x)", cam.fx), ("fy (fl_y)", cam.fy)):
            if not (np.isfinite(value) and value > 0):
                raise T23dError(
                    f"{what}: focal length {key} is {value!r}; accepted: a finite number > 0 (pixels)"
                )
        for key, value in (("cx", cam.cx), ("cy", cam.cy), *cam.distortion.items()):
            if not np.isfinite(value):
                raise T23dError(f"{what}: camera parameter {key} is {value!r}; accepted: a finite number")


def opencv_to_opengl(c2w_cv: np.ndarray) -> np.ndarray:
    """Convert camera-to-world poses ``[..., 4, 4]`` from OpenCV axes to OpenGL axes (and back)."""
    return c2w_cv @ GL_FROM_CV


def look_at(position: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """``[4, 4]`` OpenGL camera-to-world at ``position`` looking at ``target`` with world ``up`` (default +Z)."""
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=np.float64)
    position = np.asarray(position, dtype=np.float64)
    back = position - np.asarray(target, dtype=np.float64)  # camera +Z points away from the target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-8:  # looking straight along `up`
        right = np.cross(np.array([0.0, 1.0, 0.0]), back)
    right /= np.linalg.norm(right)
    cam_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, cam_up, back, position
    return c2w


def rotmat_to_qvec(rot: np.ndarray) -> np.ndarray:
    """``[3, 3]`` rotation -> unit quaternion ``[4]`` as ``(w, x, y, z)`` with ``w >= 0`` (COLMAP order)."""
    m = rot
    k = (
        np.array(
            [
                [m[0, 0] - m[1, 1] - m[2, 2], 0, 0, 0],
                [m[1, 0] + m[0, 1], m[1, 1] - m[0, 0] - m[2, 2], 0, 0],
                [m[2, 0] + m[0, 2], m[2, 1] + m[1, 2], m[2, 2] - m[0, 0] - m[1, 1], 0],
                [m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1], m[0, 0] + m[1, 1] + m[2, 2]],
            ]
        )
        / 3.0
    )
    vals, vecs = np.linalg.eigh(k)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    return q if q[0] >= 0 else -q


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Quaternion ``(w, x, y, z)`` -> ``[3, 3]`` rotation matrix (normalises ``q``)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * y * y - 2 * z * z, 2 * x * y - 2 * w * z, 2 * x * z + 2 * w * y],
            [2 * x * y + 2 * w * z, 1 - 2 * x * x - 2 * z * z, 2 * y * z - 2 * w * x],
            [2 * x * z - 2 * w * y, 2 * y * z + 2 * w * x, 1 - 2 * x * x - 2 * y * y],
        ]
    )


def c2w_from_colmap(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """COLMAP world-to-camera (OpenCV) ``qvec, tvec`` -> ``[4, 4]`` camera-to-world OpenGL."""
    w2c = np.eye(4)
    w2c[:3, :3] = qvec_to_rotmat(qvec)
    w2c[:3, 3] = tvec
    return opencv_to_opengl(np.linalg.inv(w2c))


def colmap_from_c2w(c2w_gl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[4, 4]`` camera-to-world OpenGL -> COLMAP world-to-camera ``(qvec [4], tvec [3])``."""
    w2c = np.linalg.inv(opencv_to_opengl(c2w_gl))
    return rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3].copy()
