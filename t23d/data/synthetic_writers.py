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

import numpy as np

from t23d.common.atomic import write_json_atomic
from t23d.data.cameras import Camera, colmap_from_c2w
from t23d.data.synthetic import SyntheticScene, orbit_poses, pinhole_camera


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


def _render_all(scene: SyntheticScene, poses: np.ndarray, camera: Camera, supersample: int) -> np.ndarray:
    return np.stack([scene.render(p, camera, supersample=supersample) for p in poses])  # [N, H, W, 4]


def _save(path: Path, rgba: np.ndarray, keep_alpha: bool) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = rgba if keep_alpha else rgba[..., :3] * rgba[..., 3:]
    arr = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    kwargs = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(arr).save(path, **kwargs)


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

    ``points3D`` holds ``num_points`` samples of the true surface (no tracks); images carry no 2D points.
    """
    from t23d.data.colmap import ColmapCamera, ColmapImage, ColmapModel, camera_to_colmap_params, write_model

    scene = dataclasses.replace(scene, background="textured")
    cam = dataclasses.replace(
        pinhole_camera(resolution, fov_deg), model=camera_model, distortion=dict(distortion or {})
    )
    poses = orbit_poses(n_views, radius)
    images = _render_all(scene, poses, cam, supersample)
    paths, col_images = [], {}
    for i, (pose, img) in enumerate(zip(poses, images)):
        path = out_dir / "images" / f"view_{i:03d}.png"
        _save(path, img, keep_alpha=False)
        paths.append(path)
        q, t = colmap_from_c2w(pose)
        col_images[i + 1] = ColmapImage(i + 1, q, t, 1, path.name)
    model_name, params = camera_to_colmap_params(cam)
    cams = {1: ColmapCamera(1, model_name, cam.width, cam.height, np.array(params, dtype=np.float64))}
    pts = scene.sample_surface(num_points, seed=1)
    colors = np.round(scene.albedo(pts) * 255).astype(np.uint8)
    model = ColmapModel(cams, col_images, pts, colors, np.zeros(num_points))
    for ext, on in ((".bin", binary), (".txt", text)):
        if on:
            write_model(model, out_dir / "sparse" / "0", ext)
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
) -> SyntheticCapture:
    """Unposed photos ``photo_XXX<ext>`` on an opaque textured background, for SfM (poses only in the return)."""

    scene = dataclasses.replace(scene, background="textured")
    cam = pinhole_camera(resolution, fov_deg)
    poses = orbit_poses(n_views, radius, elevation_deg, turns)
    images = _render_all(scene, poses, cam, supersample)
    paths = []
    for i, img in enumerate(images):
        path = out_dir / f"photo_{i:03d}{ext}"
        _save(path, img, keep_alpha=False)
        paths.append(path)
    return SyntheticCapture(poses, cam, images, paths, list(range(n_views)), [])
