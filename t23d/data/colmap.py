"""COLMAP sparse models, read and written with pycolmap's own reader and writer.

COLMAP stores world-to-camera poses in the OpenCV convention (``cam_from_world``);
:func:`read_colmap_scene` converts them to camera-to-world OpenGL (see :mod:`t23d.data.cameras`).

Layouts accepted by :func:`find_colmap_model`: ``<dir>/sparse/<n>/``, ``<dir>/sparse/``, ``<dir>/<n>/``
or a folder holding the model files itself (several ``<n>``: the one with the largest ``images`` file).
A folder that holds *some* model files (``cameras``, ``images``, ``points3D`` as ``.bin`` or ``.txt``)
is a COLMAP model even when incomplete: reading it then fails naming the missing files, so the user's
frame and scale are never silently replaced by a structure-from-motion run on the photos. Images are
looked up in an ``images/`` folder beside (or up to three levels above) the model.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from t23d.common.errors import T23dError
from t23d.data.cameras import DISTORTION_KEYS, SUPPORTED_MODELS, Camera, Frame, SceneFrames, opencv_to_opengl

if TYPE_CHECKING:  # pragma: no cover
    import pycolmap

#: The three files of a COLMAP sparse model (each ``.bin`` or ``.txt``).
MODEL_FILES = ("cameras", "images", "points3D")
#: Models t23d can load from COLMAP (undistorting all but the pinhole ones).
COLMAP_ACCEPTED = ("PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


def import_pycolmap() -> Any:
    """``import pycolmap`` with an error that says what needs it."""
    try:
        import pycolmap
    except ImportError as e:  # a declared dependency; only a broken install lacks it
        raise T23dError(
            "reading COLMAP models and posing raw photos need pycolmap (pip install pycolmap)"
        ) from e
    return pycolmap


def colmap_camera_to_camera(model: str, width: int, height: int, params: Any, where: str) -> Camera:
    """A COLMAP camera (model name, size, parameter list) as :class:`Camera`; refuses models t23d cannot undistort."""
    if model not in COLMAP_ACCEPTED:
        raise T23dError(
            f"unsupported camera model '{model}' in {where}; accepted: {', '.join(COLMAP_ACCEPTED)}"
        )
    p = [float(v) for v in params]
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy, extra = p[1], p[2], p[3:]
    else:
        fx, fy, cx, cy, extra = p[0], p[1], p[2], p[3], p[4:]
    dist = dict(zip(DISTORTION_KEYS[model], extra))
    return Camera(int(width), int(height), fx, fy, cx, cy, model=model, distortion=dist)


def camera_to_colmap_params(camera: Camera) -> tuple[str, list[float]]:
    """Inverse of :func:`colmap_camera_to_camera`: model name and COLMAP parameter list."""
    model = camera.model
    if model not in SUPPORTED_MODELS:
        raise T23dError(f"cannot write camera model '{model}' to COLMAP")
    dist = [float(camera.distortion.get(k, 0.0)) for k in DISTORTION_KEYS[model]]
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        return model, [camera.fx, camera.cx, camera.cy, *dist]
    return model, [camera.fx, camera.fy, camera.cx, camera.cy, *dist]


# ---------------------------------------------------------------- model folders


def model_files(model_dir: Path) -> tuple[str | None, list[str]]:
    """``(ext, present)``: the extension of a complete model in ``model_dir`` (``.bin`` preferred, None
    when neither is complete) and the model files present there (``cameras.bin``, ``images.txt`` ...)."""
    present = [f"{n}{e}" for e in (".bin", ".txt") for n in MODEL_FILES if (model_dir / f"{n}{e}").is_file()]
    for ext in (".bin", ".txt"):
        if all(f"{n}{ext}" in present for n in MODEL_FILES):
            return ext, present
    return None, present


def model_extension(model_dir: Path) -> str | None:
    """``.bin`` or ``.txt`` when ``model_dir`` holds a complete model (bin preferred), else None."""
    return model_files(model_dir)[0]


def find_colmap_model(path: Path) -> Path | None:
    """The model folder for ``path`` (see module docstring), complete or not; None when there is none."""

    def has_any(d: Path) -> bool:
        return bool(model_files(d)[1])

    if has_any(path):
        return path
    for sparse in (path / "sparse", path):
        if not sparse.is_dir():
            continue
        if has_any(sparse):
            return sparse
        subs = [d for d in sorted(sparse.iterdir()) if d.is_dir() and has_any(d)]
        if subs:
            return max(subs, key=lambda d: sum(f.stat().st_size for f in d.glob("images.*")))
    return None


def find_images_dir(model_dir: Path) -> Path | None:
    """The ``images/`` folder beside the model or up to three levels above it."""
    for d in [model_dir, *list(model_dir.parents)[:3]]:
        if (d / "images").is_dir():
            return d / "images"
    return None


def read_reconstruction(model_dir: Path, ext: str | None = None) -> pycolmap.Reconstruction:
    """Read a COLMAP model with pycolmap; ``ext`` forces ``.bin`` or ``.txt`` (default: bin if complete).

    An incomplete model is refused naming the missing files (and how to pose the photos instead); a
    corrupt one naming the folder and pycolmap's message.
    """
    complete, present = model_files(model_dir)
    ext = ext or complete
    if ext is None or not all((model_dir / f"{n}{ext}").is_file() for n in MODEL_FILES):
        if ext is None:
            missing = [
                f"{n}.bin/.txt"
                for n in MODEL_FILES
                if f"{n}.bin" not in present and f"{n}.txt" not in present
            ]
            missing = missing or ["a complete set in one format"]
        else:
            missing = [f"{n}{ext}" for n in MODEL_FILES if f"{n}{ext}" not in present]
        raise T23dError(
            f"COLMAP model in {model_dir} is incomplete: {', '.join(missing)} missing (found: "
            f"{', '.join(present) or 'nothing'}); a model needs cameras, images and points3D, all .bin or "
            "all .txt. Restore the missing files, or to pose the photos with structure from motion instead, "
            "move the model files away and pass --format images"
        )
    pycolmap = import_pycolmap()
    rec = pycolmap.Reconstruction()
    try:
        if ext == ".bin":
            rec.read_binary(str(model_dir))
        else:
            rec.read_text(str(model_dir))
    except Exception as e:  # pycolmap raises ValueError/IndexError/RuntimeError for bad files
        raise T23dError(
            f"COLMAP model {model_dir} ({ext}) cannot be read, it is truncated or corrupt: {e}"
        ) from e
    return rec


def write_reconstruction(rec: pycolmap.Reconstruction, model_dir: Path, text: bool = False) -> None:
    """Write ``rec`` as a binary (or ``text``) model into ``model_dir``, replacing its files atomically
    (written to a sibling temporary folder first, then moved in file by file)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".colmap-", dir=model_dir.parent))
    try:
        if text:
            rec.write_text(str(tmp))
        else:
            rec.write_binary(str(tmp))
        for f in sorted(tmp.iterdir()):
            f.replace(model_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def shrink_model(rec: pycolmap.Reconstruction, factor: int) -> None:
    """Undo an enlargement of the photos by the whole ``factor`` in ``rec``, in place: its cameras and its
    registered images' 2D points in pixels of the photos as given (the points' stored reprojection errors
    are left as they were)."""
    for cam in rec.cameras.values():
        cam.rescale(cam.width // factor, cam.height // factor)
    for image_id in rec.reg_image_ids():
        for p in rec.images[image_id].points2D:
            p.xy = p.xy / factor


def reconstruction_points(rec: pycolmap.Reconstruction) -> tuple[np.ndarray, np.ndarray]:
    """``xyz [P, 3]`` float64 and ``rgb [P, 3]`` uint8 of a reconstruction's 3D points (by point id)."""
    ids = sorted(rec.points3D)
    if not ids:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    xyz = np.array([rec.points3D[i].xyz for i in ids], dtype=np.float64)
    rgb = np.array([rec.points3D[i].color for i in ids], dtype=np.uint8)
    return xyz, rgb


def reconstruction_observations(rec: pycolmap.Reconstruction, frame_of_image: dict[str, int]) -> np.ndarray:
    """``[E, 2]`` int64 pairs ``(point, frame)``: which photo saw which 3D point. ``point`` indexes
    :func:`reconstruction_points`' order (by point id); ``frame`` is ``frame_of_image[image name]``. Track
    elements of images not in ``frame_of_image`` are left out."""
    pairs = []
    for k, pid in enumerate(sorted(rec.points3D)):
        for el in rec.points3D[pid].track.elements:
            frame = frame_of_image.get(rec.images[el.image_id].name)
            if frame is not None:
                pairs.append((k, frame))
    return np.array(sorted(set(pairs)), dtype=np.int64).reshape(-1, 2)


def read_colmap_scene(
    model_dir: Path, images_dir: Path | None = None, source_format: str = "colmap"
) -> SceneFrames:
    """Read a COLMAP model into :class:`SceneFrames` (registered images, OpenGL camera-to-world, by name)."""
    rec = read_reconstruction(model_dir)
    images_dir = images_dir or find_images_dir(model_dir)
    if images_dir is None:
        raise T23dError(
            f"COLMAP model {model_dir} has no images/ folder beside it (looked up to 3 levels up)"
        )
    registered = [rec.images[i] for i in rec.reg_image_ids()]
    if not registered:
        raise T23dError(f"COLMAP model {model_dir} has no registered images")
    where = f"{model_dir}/cameras{model_extension(model_dir)}"
    cameras = {
        cid: colmap_camera_to_camera(c.model.name, c.width, c.height, c.params, where)
        for cid, c in rec.cameras.items()
    }
    frames = []
    for img in sorted(registered, key=lambda m: m.name):
        if img.camera_id not in cameras:
            raise T23dError(
                f"COLMAP image {img.name} refers to missing camera {img.camera_id} in {model_dir}"
            )
        w2c = np.eye(4)
        w2c[:3] = img.cam_from_world().matrix()
        frames.append(
            Frame(images_dir / img.name, opencv_to_opengl(np.linalg.inv(w2c)), cameras[img.camera_id])
        )
    xyz, _ = reconstruction_points(rec)
    if not len(xyz):
        return SceneFrames(frames, source_format)
    frame_of_image = {img.name: i for i, img in enumerate(sorted(registered, key=lambda m: m.name))}
    return SceneFrames(
        frames, source_format, points=xyz, point_views=reconstruction_observations(rec, frame_of_image)
    )


def build_reconstruction(
    camera: Camera,
    c2w: np.ndarray,
    names: list[str],
    points: np.ndarray | None = None,
    colors: np.ndarray | None = None,
) -> pycolmap.Reconstruction:
    """A pycolmap reconstruction of posed images sharing ``camera``: OpenGL ``c2w [N, 4, 4]``, image
    ``names``, optional ``points [P, 3]`` (no tracks) and their ``colors [P, 3]`` uint8."""
    pycolmap = import_pycolmap()
    model, params = camera_to_colmap_params(camera)
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(
        pycolmap.Camera(model=model, width=camera.width, height=camera.height, params=params, camera_id=1)
    )
    for i, (pose, name) in enumerate(zip(c2w, names)):
        w2c = np.linalg.inv(opencv_to_opengl(pose))
        image = pycolmap.Image(name=name, camera_id=1, image_id=i + 1)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(w2c[:3]))
    if points is not None:
        colors = np.zeros((len(points), 3), np.uint8) if colors is None else colors
        for xyz, rgb in zip(points, colors):
            rec.add_point3D(np.asarray(xyz, dtype=np.float64), pycolmap.Track(), np.asarray(rgb, np.uint8))
    return rec
