"""Write a :class:`~t23d.data.synthetic.SyntheticScene` in every input format t23d reads.

Each writer renders views on an orbit (:func:`~t23d.data.synthetic.orbit_poses`) and returns a
:class:`SyntheticCapture` holding the ground truth (world-frame OpenGL poses, intrinsics, float renders)
so tests and benchmarks can compare what a loader recovers. Images are 8-bit sRGB PNG (or JPEG).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from t23d.common.atomic import write_json_atomic
from t23d.data.cameras import Camera
from t23d.data.synthetic import SyntheticScene, orbit_poses, pinhole_camera, walkaround_poses


@dataclass
class SyntheticCapture:
    """Ground truth of a written synthetic dataset (poses in the scene's world frame)."""

    c2w: np.ndarray
    """``[N, 4, 4]`` OpenGL camera-to-world, in the order the loader returns the images."""
    camera: Camera
    """Intrinsics shared by all views (possibly distorted)."""
    images: np.ndarray
    """``[N, H, W, 4]`` float32 RGBA renders (straight alpha) before 8-bit quantisation."""
    image_paths: list[Path]
    """Written image files, same order."""
    train_indices: list[int]
    """Views meant for training (all views when the format has no split)."""
    test_indices: list[int]
    """Held-out views (empty when the format has no split)."""
    object_masks: np.ndarray | None = None
    """``[N, H, W]`` float32 coverage of the object alone (ground and background excluded), for photos
    with opaque surroundings; None otherwise."""


def _render_all(scene: SyntheticScene, poses: np.ndarray, camera: Camera, supersample: int) -> np.ndarray:
    return np.stack([scene.render(p, camera, supersample=supersample) for p in poses])  # [N, H, W, 4]


def _save(path: Path, rgba: np.ndarray, keep_alpha: bool, focal_35mm: float | None = None) -> None:
    from PIL import ExifTags, Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = rgba if keep_alpha else rgba[..., :3] * rgba[..., 3:]
    arr = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    kwargs: dict = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    if focal_35mm is not None:
        exif = Image.Exif()
        exif[ExifTags.Base.Make] = "t23d"
        exif[ExifTags.Base.Model] = "synthetic camera"
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.FocalLengthIn35mmFilm] = int(round(focal_35mm))
        kwargs["exif"] = exif
    Image.fromarray(arr).save(path, **kwargs)


def focal_35mm_of(camera: Camera) -> float:
    """The 35 mm-equivalent focal length (mm) of a camera: ``fx`` relative to the image diagonal, scaled
    to the 43.27 mm diagonal of a 36 x 24 mm frame (the crop-factor definition phones write to EXIF)."""
    return camera.fx * math.hypot(36.0, 24.0) / math.hypot(camera.width, camera.height)


def write_blender(
    scene: SyntheticScene,
    out_dir: Path,
    n_train: int = 8,
    n_test: int = 2,
    resolution: int = 64,
    fov_deg: float = 45.0,
    radius: float = 3.0,
    supersample: int = 1,
    train_elevation_deg: tuple[float, float] = (5.0, 65.0),
    test_elevation_deg: tuple[float, float] = (20.0, 40.0),
    train_scenes: list[SyntheticScene] | None = None,
) -> SyntheticCapture:
    """Blender-synthetic layout: ``train/r_i.png``, ``test/r_i.png`` (RGBA) and ``transforms_{train,test}.json``.

    Training views spiral over ``train_elevation_deg`` (two turns); test views over ``test_elevation_deg``
    (one turn, different azimuths, so they are unseen). ``train_scenes`` (``n_train`` of them, e.g. from
    :func:`~t23d.data.synthetic.varied_views`) renders each training photo with its own lighting and
    camera gain; test photos always use ``scene``.
    """

    scene = dataclasses.replace(scene, background="transparent")
    cam = pinhole_camera(resolution, fov_deg)
    train = orbit_poses(n_train, radius, train_elevation_deg, turns=2.0)
    test = orbit_poses(n_test, radius, test_elevation_deg, turns=1.0) if n_test else np.zeros((0, 4, 4))
    poses = np.concatenate([train, test])
    if train_scenes is None:
        images = _render_all(scene, poses, cam, supersample)
    else:
        if len(train_scenes) != n_train:
            raise ValueError(f"train_scenes: {len(train_scenes)} scenes for {n_train} training views")
        views = [dataclasses.replace(s, background="transparent") for s in train_scenes]
        views += [scene] * n_test
        images = np.stack([v.render(p, cam, supersample=supersample) for v, p in zip(views, poses)])
    paths = []
    for split, sl in (("train", slice(0, n_train)), ("test", slice(n_train, n_train + n_test))):
        frames = []
        for i, (pose, img) in enumerate(zip(poses[sl], images[sl])):
            path = out_dir / split / f"r_{i}.png"
            _save(path, img, keep_alpha=True)
            paths.append(path)
            frames.append(
                {"file_path": f"./{split}/r_{i}", "rotation": 0.0, "transform_matrix": pose.tolist()}
            )
        angle_x = 2 * math.atan(0.5 * cam.width / cam.fx)
        write_json_atomic(out_dir / f"transforms_{split}.json", {"camera_angle_x": angle_x, "frames": frames})
    n = n_train + n_test
    return SyntheticCapture(poses, cam, images, paths, list(range(n_train)), list(range(n_train, n)))


def write_nerfstudio(
    scene: SyntheticScene,
    out_dir: Path,
    n_views: int = 8,
    resolution: int | tuple[int, int] = 64,
    fov_deg: float = 45.0,
    radius: float = 3.0,
    camera_model: str = "PINHOLE",
    distortion: dict[str, float] | None = None,
    with_masks: bool = False,
    supersample: int = 1,
) -> SyntheticCapture:
    """nerfstudio layout: ``images/frame_XXXXX.png`` and ``transforms.json`` with global intrinsics.

    ``camera_model`` ``OPENCV`` (``k1 k2 p1 p2``) or ``OPENCV_FISHEYE`` (``k1..k4``) with ``distortion``
    renders through that lens, to test undistortion. Images are RGBA when the scene background is
    transparent. ``with_masks``: RGB images (object on black) plus ``masks/`` holding the coverage.
    """

    cam = dataclasses.replace(
        pinhole_camera(resolution, fov_deg), model=camera_model, distortion=dict(distortion or {})
    )
    poses = orbit_poses(n_views, radius)
    images = _render_all(scene, poses, cam, supersample)
    transparent = scene.background == "transparent"
    meta: dict = {
        "camera_model": camera_model, "fl_x": cam.fx, "fl_y": cam.fy, "cx": cam.cx, "cy": cam.cy,
        "w": cam.width, "h": cam.height, **{k: float(v) for k, v in cam.distortion.items()},
    }  # fmt: skip
    frames, paths = [], []
    for i, (pose, img) in enumerate(zip(poses, images)):
        path = out_dir / "images" / f"frame_{i:05d}.png"
        frame = {"file_path": f"images/{path.name}", "transform_matrix": pose.tolist()}
        if with_masks:
            _save(path, img, keep_alpha=False)
            mask = np.repeat(img[..., 3:], 4, axis=-1)
            _save(out_dir / "masks" / path.name, mask, keep_alpha=False)
            frame["mask_path"] = f"masks/{path.name}"
        else:
            _save(path, img, keep_alpha=transparent)
        frames.append(frame)
        paths.append(path)
    write_json_atomic(out_dir / "transforms.json", {**meta, "frames": frames})
    return SyntheticCapture(poses, cam, images, paths, list(range(n_views)), [])


def write_colmap(
    scene: SyntheticScene,
    out_dir: Path,
    n_views: int = 8,
    resolution: int | tuple[int, int] = 64,
    fov_deg: float = 45.0,
    radius: float = 3.0,
    camera_model: str = "PINHOLE",
    distortion: dict[str, float] | None = None,
    num_points: int = 2000,
    text: bool = True,
    binary: bool = True,
    supersample: int = 1,
) -> SyntheticCapture:
    """COLMAP layout: ``images/view_XXX.png`` (opaque) and ``sparse/0/{cameras,images,points3D}.{bin,txt}``.

    Written with pycolmap's writer; ``points3D`` holds ``num_points`` samples of the true surface (no
    tracks); images carry no 2D points.
    """
    from t23d.data.colmap import build_reconstruction, write_reconstruction

    scene = dataclasses.replace(scene, background="textured")
    cam = dataclasses.replace(
        pinhole_camera(resolution, fov_deg), model=camera_model, distortion=dict(distortion or {})
    )
    poses = orbit_poses(n_views, radius)
    images = _render_all(scene, poses, cam, supersample)
    paths = []
    for i, img in enumerate(images):
        path = out_dir / "images" / f"view_{i:03d}.png"
        _save(path, img, keep_alpha=False)
        paths.append(path)
    pts = scene.sample_surface(num_points, seed=1)
    colors = np.round(scene.albedo(pts) * 255).astype(np.uint8)
    rec = build_reconstruction(cam, poses, [p.name for p in paths], pts, colors)
    for as_text, on in ((False, binary), (True, text)):
        if on:
            write_reconstruction(rec, out_dir / "sparse" / "0", text=as_text)
    return SyntheticCapture(poses, cam, images, paths, list(range(n_views)), [])


def write_raw_photos(
    scene: SyntheticScene,
    out_dir: Path,
    n_views: int = 24,
    resolution: int | tuple[int, int] = 160,
    fov_deg: float = 45.0,
    radius: float = 3.0,
    elevation_deg: tuple[float, float] = (10.0, 50.0),
    turns: float = 1.0,
    ext: str = ".png",
    supersample: int = 1,
    path: Literal["orbit", "walkaround"] = "orbit",
    seed: int = 0,
    exif_focal: bool = False,
) -> SyntheticCapture:
    """Unposed photos ``photo_XXX<ext>`` with opaque surroundings, for SfM (poses only in the return).

    The scene's background is used as is when opaque (``textured`` or ``plain``); a ``transparent`` one
    becomes ``textured``. ``path``: ``orbit`` (a spiral over ``elevation_deg``, ``turns`` turns) or
    ``walkaround`` (one hand-held turn at the mean of ``elevation_deg``, see
    :func:`~t23d.data.synthetic.walkaround_poses`, seeded by ``seed``). ``exif_focal`` writes the 35 mm
    equivalent focal length into each JPEG's EXIF (:func:`focal_35mm_of`), as cameras do. The capture's
    ``object_masks`` hold the object's coverage in each photo.
    """
    if scene.background == "transparent":
        scene = dataclasses.replace(scene, background="textured")
    cam = pinhole_camera(resolution, fov_deg)
    if path == "walkaround":
        poses = walkaround_poses(n_views, radius, 0.5 * (elevation_deg[0] + elevation_deg[1]), seed=seed)
    else:
        poses = orbit_poses(n_views, radius, elevation_deg, turns)
    renders = [scene.render_with_object_mask(p, cam, supersample=supersample) for p in poses]
    images = np.stack([r[0] for r in renders])
    masks = np.stack([r[1] for r in renders])
    focal = focal_35mm_of(cam) if exif_focal else None
    paths = []
    for i, img in enumerate(images):
        out = out_dir / f"photo_{i:03d}{ext}"
        _save(out, img, keep_alpha=False, focal_35mm=focal)
        paths.append(out)
    return SyntheticCapture(poses, cam, images, paths, list(range(n_views)), [], object_masks=masks)
