"""Metric scale from a known distance between two points marked in the photos.

Structure from motion poses photos up to an unknown scale. A user who knows one distance in the scene
(the length of the object, of a ruler or of a sheet of paper beside it) marks its two ends in the
photos; each end is triangulated from its marks, and the whole scene (cameras and sparse points) is
scaled so that the two ends lie that many metres apart. The asset is then exported in metres.

Syntax of ``DataConfig.scale`` (``--scale`` on the command line)::

    "A.jpg:812,604 B.jpg:790,580 | A.jpg:1210,612 C.jpg:1180,590 = 0.30"

two points separated by ``|``, each marked in two or more photos as ``PHOTO:x,y`` (pixels of the photo
as stored, x to the right and y down from the top-left corner of the image), then ``=`` and the true
distance between them in metres. Photos far apart around the object triangulate best.

Uncertainty (one standard deviation, reported with the scale): each end's position error is the larger
of how far its rays miss their common point (RMS, for three or more marks; with two marks, half their
gap) and what a :data:`MARK_ERROR_PX` pixel marking error moves it at its distance from the cameras; the
distance error combines both ends.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from t23d.common.errors import ConfigError, T23dError
from t23d.data.cameras import Frame, SceneFrames

#: Assumed error of a hand-placed mark, pixels (one standard deviation).
MARK_ERROR_PX = 1.0
_SYNTAX = "'PHOTO:x,y PHOTO:x,y [...] | PHOTO:x,y PHOTO:x,y [...] = METRES', e.g. 'a.jpg:812,604 b.jpg:790,580 | a.jpg:1210,612 c.jpg:1180,590 = 0.30'"
_MARK = re.compile(r"^(?P<photo>.+):(?P<x>[-+0-9.eE]+),(?P<y>[-+0-9.eE]+)$")


@dataclass(frozen=True)
class ScaleMarks:
    """Two points marked in the photos and their true distance."""

    points: tuple[tuple[tuple[str, float, float], ...], tuple[tuple[str, float, float], ...]]
    """For each of the two points, its marks ``(photo name, x, y)`` in pixels of the photo as stored."""
    distance_m: float
    """True distance between the two points, metres."""


def parse_scale(text: str) -> ScaleMarks:
    """Parse the ``scale`` option (module docstring); a malformed value is a :class:`ConfigError`
    naming the option, the value and the syntax."""

    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"config key 'data.scale' (--scale): invalid value {text!r}: {why}; accepted: {_SYNTAX}"
        )

    if text.count("=") != 1:
        raise bad("expected one '=' before the distance")
    marks_text, dist_text = text.split("=")
    try:
        distance = float(dist_text.strip())
    except ValueError:
        raise bad(f"the distance {dist_text.strip()!r} is not a number") from None
    if not (math.isfinite(distance) and distance > 0):
        raise bad("the distance must be a positive number of metres")
    groups = marks_text.split("|")
    if len(groups) != 2:
        raise bad(f"expected two points separated by '|', got {len(groups)}")
    points = []
    for g, group in enumerate(groups):
        marks = []
        for token in group.split():
            m = _MARK.match(token)
            if m is None:
                raise bad(f"mark {token!r} of point {g + 1} is not PHOTO:x,y")
            try:
                marks.append((m["photo"], float(m["x"]), float(m["y"])))
            except ValueError:
                raise bad(f"mark {token!r} of point {g + 1} has a coordinate that is not a number") from None
        if len({name for name, _, _ in marks}) < 2:
            raise bad(f"point {g + 1} must be marked in at least two different photos")
        points.append(tuple(marks))
    return ScaleMarks((points[0], points[1]), distance)


def pixel_ray(frame: Frame, x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
    """Origin ``[3]`` and unit direction ``[3]`` (world) of the ray through pixel position ``(x, y)`` of
    the photo as stored (its lens distortion removed)."""
    from t23d.data.undistort import undistort_points

    cam = frame.camera
    assert cam is not None
    xn, yn = (x - cam.cx) / cam.fx, (y - cam.cy) / cam.fy
    xu, yu = undistort_points(np.array([xn]), np.array([yn]), cam)
    d_cam = np.array([xu[0], -yu[0], -1.0])  # OpenGL camera axes: y up, looking down -z
    d = frame.c2w[:3, :3] @ d_cam
    return frame.c2w[:3, 3].astype(np.float64), d / np.linalg.norm(d)


def triangulate(origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, float]:
    """Point ``[3]`` closest to rays ``origins, dirs [K, 3]`` (least squares) and the RMS distance of
    the rays from it."""
    proj = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]  # [K, 3, 3]
    a = proj.sum(0)
    if np.linalg.cond(a) > 1e8:
        raise T23dError(
            "the marks of a --scale point are on parallel rays; mark it in photos taken further apart"
        )
    p = np.linalg.solve(a, (proj @ origins[:, :, None]).sum(0)[:, 0])
    miss = np.linalg.norm((proj @ (p - origins)[:, :, None])[:, :, 0], axis=1)  # [K]
    return p, float(np.sqrt((miss**2).mean()))


def metric_scale(scene: SceneFrames, marks: ScaleMarks) -> tuple[float, dict[str, Any]]:
    """The factor that turns the scene's units into metres, and its report: ``factor``,
    ``distance_m``, ``distance_before`` (input units), ``uncertainty_m`` and ``relative_uncertainty``
    (one standard deviation of the distance and so of the scale), ``marks_per_point``."""
    by_name = {f.image_path.name: f for f in scene.frames}
    ends, sigmas = [], []
    for i, point in enumerate(marks.points):
        origins, dirs, depth_px = [], [], []
        for name, x, y in point:
            frame = by_name.get(name)
            if frame is None:
                raise T23dError(
                    f"--scale point {i + 1} is marked in {name}, which is not among the posed photos "
                    f"({', '.join(sorted(by_name)[:5])}{' ...' if len(by_name) > 5 else ''}); mark it in "
                    "registered photos"
                )
            o, d = pixel_ray(frame, x, y)
            origins.append(o)
            dirs.append(d)
            depth_px.append(frame.camera.fx)  # type: ignore[union-attr]
        o_arr, d_arr = np.array(origins), np.array(dirs)
        p, rms = triangulate(o_arr, d_arr)
        depths = np.einsum("kj,kj->k", p[None] - o_arr, d_arr)
        if (depths <= 0).any():
            raise T23dError(
                f"--scale point {i + 1} triangulates behind a camera that marks it; check its marks"
            )
        mark = float(np.mean(depths / np.array(depth_px))) * MARK_ERROR_PX / math.sqrt(len(point))
        ends.append(p)
        sigmas.append(max(rms, mark))  # two rays: RMS miss is half their gap
    before = float(np.linalg.norm(ends[1] - ends[0]))
    if before <= 1e-12:
        raise T23dError("the two --scale points triangulate to the same place; mark two distinct points")
    factor = marks.distance_m / before
    sigma = math.hypot(*sigmas)
    report = {
        "factor": factor,
        "distance_m": marks.distance_m,
        "distance_before": before,
        "uncertainty_m": sigma * factor,
        "relative_uncertainty": sigma / before,
        "marks_per_point": [len(p) for p in marks.points],
    }
    return factor, report


def scale_scene(scene: SceneFrames, factor: float) -> None:
    """Scale the scene's world frame by ``factor`` in place: camera positions and sparse points."""
    for f in scene.frames:
        f.c2w = f.c2w.copy()
        f.c2w[:3, 3] *= factor
    if scene.points is not None:
        scene.points = scene.points * factor
