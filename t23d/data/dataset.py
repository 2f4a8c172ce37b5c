"""Photo datasets: format detection, image loading, undistortion, resizing and normalisation.

:func:`load_dataset` returns a :class:`PhotoDataset` in one common form whatever the input:

* cameras: camera-to-world ``[4, 4]``, **OpenGL** convention (-Z forward, +Y up, +X right), in the
  **normalised** frame (``x_world = scale * x_norm + centre``, no rotation: the input's orientation
  and up axis are kept; see :mod:`t23d.data.normalise`);
* intrinsics: pinhole ``fx, fy, cx, cy`` in pixels of the loaded (undistorted, downscaled) images,
  pixel centres at +0.5; distorted inputs are undistorted to a pinhole camera with the same
  ``fx, fy, cx, cy`` and size;
* images: sRGB float32 in ``[0, 1]``; RGBA images (or images with masks) are composited onto
  ``DataConfig.background`` and their alpha is kept in ``alphas``.

All images of a dataset must end up the same size: mixed sizes are refused with an error naming
the files (t23d does not support per-camera image sizes).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from t23d.common.errors import ConfigError, T23dError
from t23d.data.cameras import SceneFrames, check_frames
from t23d.data.config import DataConfig
from t23d.data.images import IMAGE_EXTENSIONS, list_images, load_image, load_mask, resize
from t23d.data.normalise import SupportPlane, compute_normalisation, denormalise_poses, normalise_poses
from t23d.data.undistort import undistort_image

log = logging.getLogger(__name__)


@dataclass
class PhotoDataset:
    """Posed photos ready for photometric training (conventions in the module docstring)."""

    images: Tensor
    """``[N, H, W, 3]`` float32 sRGB in [0, 1] (composited onto the background when RGBA)."""
    alphas: Tensor | None
    """``[N, H, W]`` float32 in [0, 1] when the input had alpha or masks, else None."""
    c2w: Tensor
    """``[N, 4, 4]`` float32 camera-to-world, OpenGL, normalised frame."""
    intrinsics: Tensor
    """``[N, 4]`` float32 ``fx, fy, cx, cy`` in pixels of ``images``."""
    width: int
    """Image width in pixels (all images)."""
    height: int
    """Image height in pixels (all images)."""
    train_indices: list[int]
    """Indices of training images."""
    test_indices: list[int]
    """Indices of held-out images."""
    image_paths: list[Path]
    """Source file of each image."""
    world_from_normalised: np.ndarray
    """``[4, 4]`` float64 similarity ``[[scale*I, centre], [0, 1]]``: normalised frame -> input world."""
    aabb: Tensor
    """``[2, 3]`` float32 min/max corners of the object in the normalised frame, inside [-1, 1]^3."""
    source_format: str
    """``nerfstudio``, ``blender``, ``colmap`` or ``images`` (raw photos posed by SfM)."""
    sfm_report: dict | None = None
    """Registered counts, reprojection error and timings when SfM ran, else None."""
    points: Tensor | None = None
    """``[P, 3]`` float32 sparse points in the normalised frame, when the input had them."""
    point_views: Tensor | None = None
    """``[E, 2]`` int64 pairs ``(point, image)``: which image saw which of ``points``, when the points'
    model has tracks (COLMAP models, SfM, triangulation); None otherwise."""
    sfm_model: Any = None
    """The ``pycolmap.Reconstruction`` of the photos when SfM posed them (see :class:`SceneFrames`)."""
    scale_report: dict | None = None
    """The metric scale set from ``DataConfig.scale`` and its uncertainty (:func:`t23d.data.scale.metric_scale`)."""
    support_plane: SupportPlane | None = None
    """The plane the object stands on (normalised frame), found in the sparse points, or None."""
    triangulation: dict | None = None
    """How the sparse points of posed photos without masks were triangulated
    (:func:`t23d.data.triangulate.triangulate_posed`'s report), or None when they were not."""

    @property
    def num_images(self) -> int:
        """Number of images."""
        return int(self.images.shape[0])

    def c2w_world(self) -> np.ndarray:
        """``[N, 4, 4]`` float64 rigid camera-to-world poses in the input's world frame and units."""
        return denormalise_poses(self.c2w.double().numpy(), self.world_from_normalised)


def detect_format(path: Path) -> tuple[str, Path]:
    """Detect the input format of ``path``; returns ``(format, root)`` (see ``DataConfig.format``)."""
    from t23d.data.colmap import find_colmap_model

    if not path.exists():
        raise T23dError(f"input path does not exist: {path}")
    if path.is_file():
        if path.name == "transforms.json":
            return "nerfstudio", path.parent
        if path.name.startswith("transforms_") and path.suffix == ".json":
            return "blender", path.parent
        raise T23dError(
            f"input {path} is a file; give a folder, or a transforms.json / transforms_train.json file"
        )
    if (path / "transforms.json").is_file():
        return "nerfstudio", path
    if (path / "transforms_train.json").is_file():
        return "blender", path
    if find_colmap_model(path) is not None:
        return "colmap", path
    if list_images(path) or list_images(path / "images"):
        return "images", path
    raise T23dError(
        f"no images or camera files found in {path}; expected transforms.json (nerfstudio), "
        f"transforms_train.json (Blender), a COLMAP model (sparse/0/cameras.bin) or photos "
        f"({', '.join(IMAGE_EXTENSIONS)})"
    )


def read_frames(path: Path, cfg: DataConfig, sfm_model_dir: Path | None = None) -> SceneFrames:
    """Parse the camera files (or run SfM) without loading images.

    ``sfm_model_dir``: for raw photos, a COLMAP model an earlier SfM run on the same photos saved (a
    resumed run); its poses are read instead of running SfM again.
    """
    from t23d.data import colmap, nerfstudio, sfm

    detected, root = detect_format(path)
    fmt = detected if cfg.format == "auto" else cfg.format
    if fmt == "nerfstudio":
        json_path = path if path.is_file() else root / "transforms.json"
        if not json_path.is_file():
            raise T23dError(f"format 'nerfstudio' needs {json_path}, which does not exist")
        return nerfstudio.read_nerfstudio(json_path)
    if fmt == "blender":
        if not (root / "transforms_train.json").is_file():
            raise T23dError(f"format 'blender' needs {root / 'transforms_train.json'}, which does not exist")
        return nerfstudio.read_blender(root)
    if fmt == "colmap":
        model_dir = colmap.find_colmap_model(root)
        if model_dir is None:
            raise T23dError(f"format 'colmap' needs a COLMAP model (sparse/0/cameras.bin or .txt) in {root}")
        return colmap.read_colmap_scene(model_dir)
    photos = list_images(root) or list_images(root / "images")
    if not photos:
        raise T23dError(
            f"format 'images' needs photos ({', '.join(IMAGE_EXTENSIONS)}) in {root} or {root / 'images'}"
        )
    if sfm_model_dir is not None:
        return sfm.read_saved_sfm_model(photos, sfm_model_dir)
    return sfm.read_photos_with_sfm(photos, cfg.sfm)


def _target_size(w: int, h: int, cfg: DataConfig) -> tuple[int, int]:
    tw, th = max(1, w // cfg.downscale), max(1, h // cfg.downscale)
    if cfg.max_image_size is not None and max(tw, th) > cfg.max_image_size:
        s = cfg.max_image_size / max(tw, th)
        tw, th = max(1, round(tw * s)), max(1, round(th * s))
    return tw, th


def _check_sizes(scene: SceneFrames, cfg: DataConfig) -> tuple[int, int]:
    sizes = [_target_size(f.camera.width, f.camera.height, cfg) for f in scene.frames]  # type: ignore[union-attr]
    distinct = sorted(set(sizes))
    if len(distinct) > 1:
        examples = []
        for size in distinct[:4]:
            i = sizes.index(size)
            cam = scene.frames[i].camera
            examples.append(f"{scene.frames[i].image_path.name} is {cam.width}x{cam.height}")  # type: ignore[union-attr]
        raise T23dError(
            f"images have {len(distinct)} different sizes ({'; '.join(examples)}); t23d needs one size for "
            "all images: resize them to a common size (or, if they share an aspect ratio, set max_image_size "
            "/ --downscale so they shrink to the same size)"
        )
    return distinct[0]


def _validate(cfg: DataConfig) -> None:
    if cfg.downscale < 1:
        raise ConfigError(f"config key 'downscale': invalid value {cfg.downscale}; accepted: an integer >= 1")
    if cfg.max_image_size is not None and cfg.max_image_size < 8:
        raise ConfigError(
            f"config key 'max_image_size': invalid value {cfg.max_image_size}; accepted: >= 8 or null"
        )
    if cfg.holdout_every < 0:
        raise ConfigError(f"config key 'holdout_every': invalid value {cfg.holdout_every}; accepted: >= 0")
    if cfg.bbox is not None:
        box = np.asarray(cfg.bbox, dtype=np.float64)
        if box.shape != (6,) or not np.isfinite(box).all() or not (box[:3] < box[3:]).all():
            raise ConfigError(
                f"config key 'data.bbox' (--bbox): invalid value {cfg.bbox!r}; accepted: six numbers "
                "xmin ymin zmin xmax ymax zmax (input world frame, after --scale) with each min < max"
            )
    if cfg.support_plane not in ("auto", "off"):
        raise ConfigError(
            f"config key 'data.support_plane': invalid value {cfg.support_plane!r}; accepted: auto, off"
        )
    if not (math.isfinite(cfg.support_plane_margin) and cfg.support_plane_margin >= 0):
        raise ConfigError(
            f"config key 'data.support_plane_margin': invalid value {cfg.support_plane_margin!r}; "
            "accepted: a number >= 0 (normalised units)"
        )
    radius = cfg.support_fillet_radius
    if radius != "auto" and not (
        isinstance(radius, (int, float))
        and not isinstance(radius, bool)
        and math.isfinite(radius)
        and radius >= 0
    ):
        raise ConfigError(
            f"config key 'data.support_fillet_radius': invalid value {radius!r}; "
            "accepted: a number >= 0 (normalised units; 0 turns it off) or 'auto' (estimated at export)"
        )
    from t23d.data.triangulate import validate_triangulation_config

    validate_triangulation_config(cfg.triangulation)
    if cfg.scale is not None:
        from t23d.data.scale import parse_scale

        parse_scale(cfg.scale)


def _check_min_size(scene: SceneFrames, cfg: DataConfig, width: int, height: int, min_size: int) -> None:
    if min(width, height) >= min_size:
        return
    cam = scene.frames[0].camera
    assert cam is not None
    side = min(cam.width, cam.height)
    largest = max(1, side // min_size)
    raise ConfigError(
        f"--downscale {cfg.downscale} (config key 'data.downscale'"
        + (f", with data.max_image_size {cfg.max_image_size}" if cfg.max_image_size else "")
        + f") leaves {width}x{height} px images of the {cam.width}x{cam.height} photos; at least {min_size} px a "
        f"side are needed (the held-out SSIM's window): use --downscale {largest} or less"
    )


#: What follows when posed photos without masks get no sparse points, and what to do about it.
_WITHOUT_POINTS = (
    "without masks, the object region is a guess from the field of view and no table is looked for; give "
    "masks, or --bbox"
)


def _triangulate(
    scene: SceneFrames, train: list[int], cfg: DataConfig, saved_model: Path | None
) -> dict | None:
    """Give posed photos without masks or points sparse points (:mod:`t23d.data.triangulate`) from the
    training photos: in place on ``scene`` (``points``, and ``sfm_model`` to save in a run). A resumed
    run's ``saved_model`` (the model it saved) is read instead of matching again. Returns the report, or
    None when no usable points came out (a warning says what follows)."""
    from t23d.data.colmap import (
        model_extension,
        read_reconstruction,
        reconstruction_observations,
        reconstruction_points,
    )
    from t23d.data.triangulate import triangulate_posed, triangulation_images

    if saved_model is not None and model_extension(saved_model) is not None:
        rec = read_reconstruction(saved_model)
        points, _ = reconstruction_points(rec)
        report = {"num_points": len(points), "source": f"saved model {saved_model}"}
        log.info("sparse points: %d, from the run's saved model %s", len(points), saved_model)
    else:
        try:
            points, rec, report = triangulate_posed([scene.frames[i] for i in train], cfg.triangulation)
        except RuntimeError as e:  # pycolmap's own failures: the photos still load, as without points
            log.warning(
                "triangulating sparse points from the posed photos failed (%s): %s", e, _WITHOUT_POINTS
            )
            return None
    if len(points) < cfg.triangulation.min_points:
        log.warning(
            "only %d sparse points could be triangulated from the posed photos (data.triangulation.min_points "
            "%d): %s",
            len(points), cfg.triangulation.min_points, _WITHOUT_POINTS,
        )  # fmt: skip
        return None
    images = triangulation_images(len(train), cfg.triangulation)  # model image -> index into `train`
    scene.points, scene.sfm_model = points, rec
    scene.point_views = reconstruction_observations(rec, {name: train[i] for name, i in images.items()})
    return report


def load_dataset(
    path: Path, cfg: DataConfig | None = None, sfm_model_dir: Path | None = None, *, min_size: int = 1
) -> PhotoDataset:
    """Load posed photos (nerfstudio, Blender, COLMAP) or pose raw photos with SfM; see module docstring.

    ``sfm_model_dir``: raw photos are posed by this saved SfM model instead (see :func:`read_frames`).
    ``min_size``: the smallest image side (pixels, after ``downscale``) the caller can use; a smaller
    one is refused, naming ``--downscale``, before any image is decoded. Every camera is checked
    (:func:`t23d.data.cameras.check_frames`) before images are decoded too."""
    cfg = cfg or DataConfig()
    _validate(cfg)
    path = Path(path)
    t0 = time.perf_counter()
    scene = read_frames(path, cfg, sfm_model_dir)
    if not scene.frames:
        raise T23dError(f"no frames found in {path}")
    check_frames(scene, path)
    scale_report = None
    if cfg.scale is not None:
        from t23d.data.scale import metric_scale, parse_scale, scale_scene

        factor, scale_report = metric_scale(scene, parse_scale(cfg.scale))
        scale_scene(scene, factor)
        log.info(
            "scale: %.4g m between the marked points (%.4g input units): x%.6g, +-%.2g m (%.1f %%)",
            scale_report["distance_m"], scale_report["distance_before"], factor,
            scale_report["uncertainty_m"], 100 * scale_report["relative_uncertainty"],
        )  # fmt: skip
    width, height = _check_sizes(scene, cfg)
    _check_min_size(scene, cfg, width, height, min_size)

    bg = {"white": 1.0, "black": 0.0, "random": 0.0}[cfg.background]
    images, alphas, intrinsics = [], [], []
    any_alpha = any(f.mask_path is not None for f in scene.frames)
    for f in scene.frames:
        cam = f.camera
        assert cam is not None
        img = load_image(f.image_path)  # [h, w, 3|4]
        if (img.shape[1], img.shape[0]) != (cam.width, cam.height):
            raise T23dError(
                f"image {f.image_path} is {img.shape[1]}x{img.shape[0]} but its camera says "
                f"{cam.width}x{cam.height}; the camera file and the image do not match"
            )
        if f.mask_path is not None:
            mask = load_mask(f.mask_path)
            if mask.shape != img.shape[:2]:
                raise T23dError(f"mask {f.mask_path} is not the size of its image {f.image_path}")
            rgb = img[..., :3]
            alpha = mask * (img[..., 3] if img.shape[2] == 4 else 1.0)
            img = np.concatenate([rgb, alpha[..., None]], axis=-1)
        any_alpha = any_alpha or img.shape[2] == 4
        if img.shape[2] == 4:  # premultiply so resampling does not bleed hidden colours into edges
            img = np.concatenate([img[..., :3] * img[..., 3:], img[..., 3:]], axis=-1)
        if not cam.is_pinhole:
            img, _ = undistort_image(img, cam)
            cam = cam.as_pinhole()
        img = resize(img, width, height)
        cam = cam.scaled(width, height)
        if img.shape[2] == 4:
            a = img[..., 3]
            img = img[..., :3] + bg * (1.0 - a[..., None])
            alphas.append(a)
        else:
            alphas.append(None)
        images.append(img.astype(np.float32))
        intrinsics.append(cam.intrinsics())

    alpha_t = None
    if any_alpha:
        alpha_t = torch.from_numpy(
            np.stack([np.ones((height, width), np.float32) if a is None else a for a in alphas])
        )

    c2w_in = np.stack([f.c2w for f in scene.frames])  # [N, 4, 4]
    half_fov = min(
        min(math.atan(0.5 * f.camera.width / f.camera.fx), math.atan(0.5 * f.camera.height / f.camera.fy))  # type: ignore[union-attr]
        for f in scene.frames
    )
    bbox = None if cfg.bbox is None else np.asarray(cfg.bbox, dtype=np.float64).reshape(2, 3)
    n = len(scene.frames)
    if scene.test_mask is not None:
        test = [i for i in range(n) if scene.test_mask[i]]
    elif cfg.holdout_every > 0 and n >= 2:
        test = list(range(0, n, cfg.holdout_every))
    else:
        test = []
    train = [i for i in range(n) if i not in set(test)]
    if not train:
        raise T23dError(f"all {n} images of {path} are in the test split; nothing left to train on")
    triangulation = None
    if scene.points is None and not any_alpha and bbox is None and cfg.triangulation.mode == "auto":
        triangulation = _triangulate(scene, train, cfg, sfm_model_dir)
    world_from_normalised, aabb, plane = compute_normalisation(
        c2w_in, scene.points, half_fov, bbox, support_plane=cfg.support_plane == "auto"
    )
    if plane is not None:
        log.info(
            "support plane: %d of the sparse points near the object (%.0f%%) lie on a plane under it (a table "
            "or floor); the object region is what stands on it",
            plane.num_inliers, 100 * plane.fraction,
        )  # fmt: skip
    c2w_n = normalise_poses(c2w_in, world_from_normalised)
    points = None
    if scene.points is not None:
        points = torch.from_numpy(
            ((scene.points - world_from_normalised[:3, 3]) / world_from_normalised[0, 0]).astype(np.float32)
        )

    ds = PhotoDataset(
        images=torch.from_numpy(np.stack(images)),
        alphas=alpha_t,
        c2w=torch.from_numpy(c2w_n.astype(np.float32)),
        intrinsics=torch.from_numpy(np.stack(intrinsics).astype(np.float32)),
        width=width,
        height=height,
        train_indices=train,
        test_indices=test,
        image_paths=[f.image_path for f in scene.frames],
        world_from_normalised=world_from_normalised,
        aabb=torch.from_numpy(aabb.astype(np.float32)),
        source_format=scene.source_format,
        sfm_report=scene.sfm_report,
        points=points,
        point_views=None
        if points is None or scene.point_views is None
        else torch.from_numpy(scene.point_views),
        sfm_model=scene.sfm_model,
        scale_report=scale_report,
        support_plane=plane,
        triangulation=triangulation,
    )
    log.info(
        "loaded %d images (%dx%d, %s) from %s in %.1f s: %d train, %d test",
        n, width, height, scene.source_format, path, time.perf_counter() - t0, len(train), len(test),
    )  # fmt: skip
    return ds
