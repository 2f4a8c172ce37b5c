"""COLMAP sparse models: readers and writers for ``cameras/images/points3D`` in ``.bin`` and ``.txt``.

COLMAP stores world-to-camera poses in the OpenCV convention (``qvec = (w, x, y, z)``, ``tvec``);
:func:`read_colmap_scene` converts them to camera-to-world OpenGL (see :mod:`t23d.data.cameras`).
Only the parts t23d needs are kept: 2D observations are read past (not stored), and the writers
write images without 2D points and points without tracks, which COLMAP accepts.

Layouts accepted by :func:`find_colmap_model`: ``<dir>/sparse/<n>/``, ``<dir>/sparse/``, ``<dir>/<n>/``
or a folder holding ``cameras.bin`` / ``cameras.txt`` itself (several ``<n>``: the largest model). Images are looked up in an ``images/`` folder
beside (or up to three levels above) the model.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t23d.common.errors import T23dError
from t23d.data.cameras import DISTORTION_KEYS, SUPPORTED_MODELS, Camera, Frame, SceneFrames, c2w_from_colmap

#: COLMAP camera models: id -> (name, number of parameters).
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
MODEL_IDS = {name: (i, n) for i, (name, n) in CAMERA_MODELS.items()}
#: Models t23d can load from COLMAP (undistorting all but the pinhole ones).
COLMAP_ACCEPTED = ("PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


@dataclass
class ColmapCamera:
    """A COLMAP camera as stored: model name, size and raw parameter list."""

    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # [num_params] float64


@dataclass
class ColmapImage:
    """A registered COLMAP image: world-to-camera OpenCV pose, camera id and file name."""

    image_id: int
    qvec: np.ndarray  # [4] w, x, y, z
    tvec: np.ndarray  # [3]
    camera_id: int
    name: str


@dataclass
class ColmapModel:
    """A COLMAP sparse model (observations omitted)."""

    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: np.ndarray  # [P, 3] float64
    colors: np.ndarray  # [P, 3] uint8
    errors: np.ndarray  # [P] mean reprojection error, pixels


def colmap_camera_to_camera(cam: ColmapCamera, where: str) -> Camera:
    """Convert a COLMAP camera to :class:`Camera`; raise for models t23d cannot undistort."""
    if cam.model not in COLMAP_ACCEPTED:
        raise T23dError(
            f"unsupported camera model '{cam.model}' in {where}; accepted: {', '.join(COLMAP_ACCEPTED)}"
        )
    p = [float(v) for v in cam.params]
    if cam.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy, extra = p[1], p[2], p[3:]
    else:
        fx, fy, cx, cy, extra = p[0], p[1], p[2], p[3], p[4:]
    dist = dict(zip(DISTORTION_KEYS[cam.model], extra))
    return Camera(cam.width, cam.height, fx, fy, cx, cy, model=cam.model, distortion=dist)


def camera_to_colmap_params(camera: Camera) -> tuple[str, list[float]]:
    """Inverse of :func:`colmap_camera_to_camera`: model name and COLMAP parameter list."""
    model = camera.model
    if model not in SUPPORTED_MODELS:
        raise T23dError(f"cannot write camera model '{model}' to COLMAP")
    dist = [float(camera.distortion.get(k, 0.0)) for k in DISTORTION_KEYS[model]]
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        return model, [camera.fx, camera.cx, camera.cy, *dist]
    return model, [camera.fx, camera.fy, camera.cx, camera.cy, *dist]


# ---------------------------------------------------------------- binary


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise T23dError(f"COLMAP file {self.path} is truncated or corrupt")
        out = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return out

    def skip(self, nbytes: int) -> None:
        self.pos += nbytes
        if self.pos > len(self.data):
            raise T23dError(f"COLMAP file {self.path} is truncated or corrupt")

    def cstring(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise T23dError(f"COLMAP file {self.path} is truncated or corrupt")
        s = self.data[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return s


def read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    """Read ``cameras.bin``."""
    r = _Reader(path)
    out = {}
    for _ in range(r.read("Q")[0]):
        cam_id, model_id, w, h = r.read("iiQQ")
        if model_id not in CAMERA_MODELS:
            raise T23dError(f"unknown COLMAP camera model id {model_id} in {path}")
        name, n = CAMERA_MODELS[model_id]
        out[cam_id] = ColmapCamera(cam_id, name, w, h, np.array(r.read("d" * n)))
    return out


def read_images_bin(path: Path) -> dict[int, ColmapImage]:
    """Read ``images.bin`` (2D points skipped)."""
    r = _Reader(path)
    out = {}
    for _ in range(r.read("Q")[0]):
        vals = r.read("idddddddi")
        name = r.cstring()
        num_p2d = r.read("Q")[0]
        r.skip(24 * num_p2d)  # x, y (double), point3D_id (int64)
        out[vals[0]] = ColmapImage(vals[0], np.array(vals[1:5]), np.array(vals[5:8]), vals[8], name)
    return out


def read_points3d_bin(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``points3D.bin`` -> ``xyz [P, 3]``, ``rgb [P, 3] uint8``, ``error [P]``."""
    r = _Reader(path)
    n = r.read("Q")[0]
    xyz, rgb, err = np.zeros((n, 3)), np.zeros((n, 3), np.uint8), np.zeros(n)
    for i in range(n):
        vals = r.read("QdddBBBd")
        xyz[i], rgb[i], err[i] = vals[1:4], vals[4:7], vals[7]
        r.skip(8 * r.read("Q")[0])  # track: (image_id int32, point2D_idx int32)
    return xyz, rgb, err


# ---------------------------------------------------------------- text


def _data_lines(path: Path) -> list[str]:
    return [ln.rstrip("\n") for ln in path.read_text().splitlines() if not ln.startswith("#")]


def read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    """Read ``cameras.txt``."""
    out = {}
    for ln in _data_lines(path):
        f = ln.split()
        if not f:
            continue
        out[int(f[0])] = ColmapCamera(
            int(f[0]), f[1], int(f[2]), int(f[3]), np.array([float(v) for v in f[4:]])
        )
    return out


def read_images_txt(path: Path) -> dict[int, ColmapImage]:
    """Read ``images.txt`` (two lines per image; the 2D-point line may be empty)."""
    lines = _data_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    out = {}
    i = 0
    while i < len(lines):
        f = lines[i].split()
        if not f:
            i += 1
            continue
        image_id = int(f[0])
        vals = [float(v) for v in f[1:8]]
        name = " ".join(f[9:])
        out[image_id] = ColmapImage(image_id, np.array(vals[:4]), np.array(vals[4:]), int(f[8]), name)
        i += 2
    return out


def read_points3d_txt(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``points3D.txt`` -> ``xyz [P, 3]``, ``rgb [P, 3] uint8``, ``error [P]``."""
    rows = [ln.split() for ln in _data_lines(path) if ln.strip()]
    xyz = np.array([[float(v) for v in f[1:4]] for f in rows]).reshape(-1, 3)
    rgb = np.array([[int(v) for v in f[4:7]] for f in rows], dtype=np.uint8).reshape(-1, 3)
    err = np.array([float(f[7]) for f in rows]).reshape(-1)
    return xyz, rgb, err


def model_extension(model_dir: Path) -> str | None:
    """``.bin`` or ``.txt`` when ``model_dir`` holds a complete model (bin preferred), else None."""
    for ext in (".bin", ".txt"):
        if all((model_dir / f"{n}{ext}").is_file() for n in ("cameras", "images", "points3D")):
            return ext
    return None


def read_model(model_dir: Path, ext: str | None = None) -> ColmapModel:
    """Read a COLMAP model folder; ``ext`` forces ``.bin`` or ``.txt`` (default: bin if present)."""
    ext = ext or model_extension(model_dir)
    if ext is None:
        raise T23dError(f"no complete COLMAP model (cameras, images, points3D .bin or .txt) in {model_dir}")
    if ext == ".bin":
        cams, imgs = read_cameras_bin(model_dir / "cameras.bin"), read_images_bin(model_dir / "images.bin")
        xyz, rgb, err = read_points3d_bin(model_dir / "points3D.bin")
    else:
        cams, imgs = read_cameras_txt(model_dir / "cameras.txt"), read_images_txt(model_dir / "images.txt")
        xyz, rgb, err = read_points3d_txt(model_dir / "points3D.txt")
    return ColmapModel(cams, imgs, xyz, rgb, err)


def write_model(model: ColmapModel, model_dir: Path, ext: str = ".bin") -> None:
    """Write a model as ``.bin`` or ``.txt`` (images without 2D points, points without tracks)."""
    from t23d.common.atomic import write_bytes_atomic, write_text_atomic

    model_dir.mkdir(parents=True, exist_ok=True)
    cams = sorted(model.cameras.values(), key=lambda c: c.camera_id)
    imgs = sorted(model.images.values(), key=lambda m: m.image_id)
    n_pts = len(model.points)
    if ext == ".bin":
        b = bytearray(struct.pack("<Q", len(cams)))
        for c in cams:
            b += struct.pack("<iiQQ", c.camera_id, MODEL_IDS[c.model][0], c.width, c.height)
            b += struct.pack("<" + "d" * len(c.params), *c.params)
        write_bytes_atomic(model_dir / "cameras.bin", bytes(b))
        b = bytearray(struct.pack("<Q", len(imgs)))
        for m in imgs:
            b += struct.pack("<idddddddi", m.image_id, *m.qvec, *m.tvec, m.camera_id)
            b += m.name.encode("utf-8") + b"\x00" + struct.pack("<Q", 0)
        write_bytes_atomic(model_dir / "images.bin", bytes(b))
        b = bytearray(struct.pack("<Q", n_pts))
        for i in range(n_pts):
            b += struct.pack("<QdddBBBdQ", i + 1, *model.points[i], *model.colors[i], model.errors[i], 0)
        write_bytes_atomic(model_dir / "points3D.bin", bytes(b))
    elif ext == ".txt":
        lines = ["# Camera list: CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
        lines += [
            f"{c.camera_id} {c.model} {c.width} {c.height} " + " ".join(repr(float(v)) for v in c.params)
            for c in cams
        ]
        write_text_atomic(model_dir / "cameras.txt", "\n".join(lines) + "\n")
        lines = [
            "# Image list: IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME / POINTS2D[] as (X, Y, POINT3D_ID)"
        ]
        for m in imgs:
            pose = " ".join(repr(float(v)) for v in (*m.qvec, *m.tvec))
            lines += [f"{m.image_id} {pose} {m.camera_id} {m.name}", ""]
        write_text_atomic(model_dir / "images.txt", "\n".join(lines) + "\n")
        lines = ["# 3D point list: POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
        for i in range(n_pts):
            x, y, z = (repr(float(v)) for v in model.points[i])
            r, g, bl = (int(v) for v in model.colors[i])
            lines.append(f"{i + 1} {x} {y} {z} {r} {g} {bl} {float(model.errors[i])!r}")
        write_text_atomic(model_dir / "points3D.txt", "\n".join(lines) + "\n")
    else:
        raise ValueError(f"ext must be '.bin' or '.txt', got {ext!r}")


# ---------------------------------------------------------------- scene


def find_colmap_model(path: Path) -> Path | None:
    """The model folder for ``path`` (see module docstring); with several ``sparse/<n>``, the largest."""
    if model_extension(path):
        return path
    for sparse in (path / "sparse", path):
        if not sparse.is_dir():
            continue
        if model_extension(sparse):
            return sparse
        subs = [d for d in sorted(sparse.iterdir()) if d.is_dir() and model_extension(d)]
        if subs:
            return max(subs, key=lambda d: sum(f.stat().st_size for f in d.glob("images.*")))
    return None


def find_images_dir(model_dir: Path) -> Path | None:
    """The ``images/`` folder beside the model or up to three levels above it."""
    for d in [model_dir, *list(model_dir.parents)[:3]]:
        if (d / "images").is_dir():
            return d / "images"
    return None


def read_colmap_scene(
    model_dir: Path, images_dir: Path | None = None, source_format: str = "colmap"
) -> SceneFrames:
    """Read a COLMAP model into :class:`SceneFrames` (OpenGL camera-to-world, sorted by image name)."""
    model = read_model(model_dir)
    images_dir = images_dir or find_images_dir(model_dir)
    if images_dir is None:
        raise T23dError(
            f"COLMAP model {model_dir} has no images/ folder beside it (looked up to 3 levels up)"
        )
    if not model.images:
        raise T23dError(f"COLMAP model {model_dir} has no registered images")
    where = f"{model_dir}/cameras{model_extension(model_dir)}"
    cameras = {cid: colmap_camera_to_camera(c, where) for cid, c in model.cameras.items()}
    frames = []
    for img in sorted(model.images.values(), key=lambda m: m.name):
        if img.camera_id not in cameras:
            raise T23dError(
                f"COLMAP image {img.name} refers to missing camera {img.camera_id} in {model_dir}"
            )
        c2w = c2w_from_colmap(img.qvec, img.tvec)
        frames.append(Frame(images_dir / img.name, c2w, cameras[img.camera_id]))
    return SceneFrames(frames, source_format, points=model.points if len(model.points) else None)
