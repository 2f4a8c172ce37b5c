"""Typed configuration of photo-dataset loading (:func:`t23d.data.load_dataset`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class SfmConfig:
    """Structure-from-motion (pycolmap) options, used when the input is a folder of unposed photos."""

    camera_model: Literal["SIMPLE_RADIAL", "PINHOLE"] = "SIMPLE_RADIAL"
    """COLMAP camera model estimated for the photos. SIMPLE_RADIAL (one radial coefficient, removed
    when loading) suits phone and DSLR photos; PINHOLE for already-undistorted or rendered images."""
    matcher: Literal["exhaustive", "sequential"] = "exhaustive"
    """Feature matching: ``exhaustive`` matches every pair (best up to a few hundred photos);
    ``sequential`` matches neighbours in file-name order (video frames, long captures)."""
    min_registered: int = 3
    """Fewest images SfM must register (in its largest model) for the photos to be usable."""
    single_camera: bool = True
    """All photos come from one camera with a fixed zoom, so they share one set of intrinsics."""
    max_num_features: int = 8192
    """Most SIFT features extracted per image."""
    max_image_size: int = 1600
    """Photos are downsized to at most this many pixels on the long side for feature extraction
    (poses and intrinsics still refer to the full-size photos)."""
    sequential_overlap: int = 10
    """With ``matcher="sequential"``: how many following images each image is matched with."""
    work_dir: Path | None = None
    """Folder for the SfM database and sparse model. ``None``: a temporary folder, deleted after
    loading. A given folder is kept (the model lands in ``work_dir/sparse/best``)."""
    num_threads: int = -1
    """CPU threads for pycolmap; -1 uses all cores."""


@dataclass
class DataConfig:
    """How to read a photo dataset: format, resizing, split and background."""

    format: Literal["auto", "nerfstudio", "blender", "colmap", "images"] = "auto"
    """Input format. ``auto`` detects it: ``transforms.json`` -> nerfstudio; ``transforms_train.json`` ->
    Blender synthetic; ``sparse/`` or ``cameras.bin|txt`` -> COLMAP; only photos -> SfM (``images``)."""
    downscale: int = 1
    """Integer factor by which images are shrunk (box filter) after undistortion; intrinsics follow."""
    max_image_size: int | None = None
    """If set, images larger than this (long side, pixels, after ``downscale``) are shrunk to it."""
    holdout_every: int = 8
    """When the format has no test split: every ``holdout_every``-th image (0, k, 2k, ...) is held out
    for testing. 0 disables the hold-out."""
    background: Literal["white", "black", "random"] = "white"
    """Colour that RGBA images (or masked images) are composited onto. ``random``: images are stored
    composited onto black (premultiplied) and the trainer adds its own random colour via ``alphas``."""
    sfm: SfmConfig = field(default_factory=SfmConfig)
    """Structure-from-motion options for unposed photos."""
