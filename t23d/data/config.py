"""Typed configuration of photo-dataset loading (:func:`t23d.data.load_dataset`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class SfmConfig:
    """Structure-from-motion (pycolmap) options, used when the input is a folder of unposed photos.

    The defaults are tuned for what people shoot: small or low-texture photos are upsampled before
    SIFT, matches are guided by the first geometry, walk-around captures are matched in order with
    loop closures, EXIF focal lengths initialise the cameras, and a relaxed second attempt runs
    before giving up (see :func:`t23d.data.sfm.run_sfm`)."""

    camera_model: Literal["SIMPLE_RADIAL", "RADIAL", "OPENCV", "SIMPLE_PINHOLE", "PINHOLE"] = "SIMPLE_RADIAL"
    """COLMAP camera model estimated for the photos. SIMPLE_RADIAL (one radial coefficient, removed
    when loading) suits phone and DSLR photos; PINHOLE for already-undistorted or rendered images."""
    focal_length_px: float | None = None
    """Known focal length in pixels of the photos as given. ``None``: from EXIF when the photos have it
    (``use_exif``), else COLMAP's guess (1.2 x the long side). Bundle adjustment refines it unless
    ``refine_focal_length`` is False."""
    use_exif: bool = True
    """Initialise the focal length from the photos' EXIF (35 mm-equivalent focal length, or focal length
    and sensor resolution; see :mod:`t23d.data.exif`)."""
    refine_focal_length: bool = True
    """Let bundle adjustment refine the focal length (False keeps a known ``focal_length_px`` fixed)."""
    keep_known_focal_chi2: float = 40.0
    """When the focal length is known (``focal_length_px`` or EXIF) and bundle adjustment refined it, the
    model is adjusted once more with the known focal length and no lens distortion held fixed, and kept
    unless refining explains the observations significantly better: the likelihood ratio of the two
    (``n (SSE_known - SSE_refined) / SSE_refined``) must stay at or below this. Reprojection errors are
    not independent Gaussian noise, so the threshold is set from measurements rather than a chi-squared
    table: on 24-photo captures of an object on a plain backdrop a correct known focal length scored
    4-20, one 10 % wrong 71, 20 % wrong 355, and one 20 % wrong in busy surroundings 37,000. Such a
    capture barely determines the focal length: bundle adjustment settled 4.7 % short (k1 -0.06) on a
    45-degree capture, and 5.5 % short with no distortion parameter at all (``SIMPLE_PINHOLE``), so it is
    not a trade against distortion; that asset came out 0.03 too large all round (benchmarks/RESULTS.md).
    Negative: always keep the refined intrinsics."""
    matcher: Literal["auto", "exhaustive", "sequential"] = "auto"
    """Feature matching: ``exhaustive`` matches every pair; ``sequential`` matches each photo with the
    next ``sequential_overlap`` in file-name order (walk-around captures, video frames), closing the loop
    (``loop_detection``); ``auto``: exhaustive up to ``exhaustive_max_images`` photos, else sequential."""
    exhaustive_max_images: int = 150
    """With ``matcher="auto"``: the most photos matched exhaustively (cost grows with the square)."""
    sequential_overlap: int = 10
    """With sequential matching: how many following photos each photo is matched with (the last ones
    wrap around to the first: a walk-around ends where it started)."""
    loop_detection: bool = True
    """With sequential matching: also match each photo with the photos that look most alike anywhere in
    the capture (a vocabulary tree trained on the capture's own features, so nothing is downloaded),
    which closes loops such as a second ring of photos at another height."""
    min_feature_image_size: int = 256
    """Photos whose long side is shorter than this are upsampled (bicubic, by a whole factor, at most
    4) before feature extraction, so SIFT finds enough features on small photos; poses and intrinsics
    still refer to the photos as given. 0 disables."""
    max_image_size: int = 1600
    """Photos are downsized to at most this many pixels on the long side for feature extraction
    (poses and intrinsics still refer to the full-size photos)."""
    max_num_features: int = 8192
    """Most SIFT features extracted per image."""
    peak_threshold: float = 0.02 / 3
    """SIFT's contrast threshold (COLMAP's default 0.0067); lower finds more features in low texture."""
    features: Literal["sift", "sift_affine", "sift_dsp", "sift_affine_dsp"] = "sift"
    """SIFT variant: ``_affine`` estimates affine-adapted regions (better across strong viewpoint
    changes), ``_dsp`` pools descriptors over scales (DSP-SIFT); both are slower."""
    guided_matching: bool = True
    """Re-match each verified pair guided by its two-view geometry (more matches on repetitive or
    low-texture surfaces)."""
    retry: bool = True
    """When fewer than ``retry_below`` of the photos register, run a second attempt with relaxed
    settings (twice the upsampling, half the peak threshold, affine-adapted SIFT, exhaustive matching
    of up to twice ``exhaustive_max_images`` photos, fewer inliers needed to start and to add a photo)
    and keep the attempt that registered more."""
    retry_below: float = 0.95
    """Fraction of registered photos below which the relaxed attempt runs."""
    min_registered: int = 3
    """Fewest images SfM must register (in its largest model) for the photos to be usable."""
    min_registered_fraction: float = 0.3
    """Smallest fraction of the photos that must register; fewer is an error with advice (a model made
    of a small part of the photos would show a small part of the object)."""
    single_camera: bool = True
    """All photos come from one camera with a fixed zoom, so they share one set of intrinsics (photos
    whose EXIF focal lengths differ get one camera each regardless)."""
    work_dir: Path | None = None
    """Folder for the SfM databases and sparse models. ``None``: a temporary folder, deleted after
    loading. A given folder is kept (the chosen model lands in ``work_dir/sparse/best``)."""
    num_threads: int = -1
    """CPU threads for pycolmap; -1 uses all cores."""
    seed: int = 0
    """Seed of pycolmap's random choices (RANSAC, mapper), so a capture poses the same way each time
    on one machine."""


@dataclass
class TriangulationConfig:
    """Sparse points for posed photos that have neither masks nor points (:mod:`t23d.data.triangulate`)."""

    mode: Literal["auto", "off"] = "auto"
    """``auto``: posed photos (Blender, nerfstudio, COLMAP without points) without masks or alpha get sparse
    points triangulated with their given poses, so the object region and the support plane are found in
    them as for raw photos and the surroundings are kept out of the asset. ``off``: without points the
    object is assumed to fill the narrowest field of view, and nothing is cut."""
    neighbours: int = 12
    """Each photo is matched with this many nearest photos (camera centre and viewing direction)."""
    peak_threshold: float = 0.001
    """SIFT contrast threshold: low, so plain surfaces such as a table top get features (the poses are
    known, so weak features only need to match along epipolar lines)."""
    min_feature_image_size: int = 512
    """Photos whose long side is smaller are enlarged (whole factor, up to 4) before feature extraction."""
    max_images: int = 200
    """At most this many training photos are used, evenly spread."""
    min_track_length: int = 3
    """Points seen in fewer photos are dropped: a wrong match between two photos still triangulates (to
    wherever the rays meet), only a third photo can refute it."""
    min_points: int = 50
    """Fewer triangulated points than this are not used (a warning says why)."""


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
    scale: str | None = None
    """A known distance that sets the scene's scale, so the asset comes out in metres: two points each
    marked in two or more photos and their distance, ``"a.jpg:812,604 b.jpg:790,580 | a.jpg:1210,612
    c.jpg:1180,590 = 0.30"`` (pixels of the photos as stored; see :mod:`t23d.data.scale`). ``None``
    keeps the input's units (arbitrary for raw photos posed by SfM)."""
    bbox: list[float] | None = None
    """The object's box in the input's world frame (after ``scale``), ``[xmin, ymin, zmin, xmax, ymax,
    zmax]``: the field's box is fitted to it and everything outside is surroundings. ``None``: found from
    the cameras (where their optical axes meet) and the sparse points near it."""
    support_plane: Literal["auto", "off"] = "auto"
    """``auto``: when most sparse points near the cameras' target lie on one plane that every camera
    looks down on, with the rest above it (the table or floor the object stands on), that plane is
    surroundings: the object region is what stands on it and the asset is cut ``support_plane_margin``
    above it (see :func:`t23d.data.normalise.find_support_plane`). ``off``: no plane is looked for."""
    support_plane_margin: float = 0.05
    """How far above the support plane the asset is cut, in units of the normalised frame (the object
    region's radius is about 0.9 of them), at least twice the plane's point noise; with ``support_cut:
    colour`` the highest the cut is. The field's table is
    not as flat as the points on it: moving shadows raised a monkey head's table by about 0.02 in places
    (``benchmarks/RESULTS.md``), and a cut at 0.02 kept a fillet of the printed sheet around the box of
    ``tests/reconstruct/test_raw_photo_asset.py`` (the smooth corner where they meet)."""
    support_cut: Literal["colour", "fixed"] = "colour"
    """Where the asset is cut over a support plane (SDF runs). ``colour`` (the default): from
    ``support_plane_margin`` down towards the table, in slices 0.005 apart, as long as the learnt
    surface's edge on each slice has the colours of the sparse points on the object rather than those of
    the points on the table (a majority of 60 %), never lower than twice the plane's point noise
    (:func:`t23d.extract.base_cut.lower_cut_by_colour`; ``export.json`` → ``region`` → ``cut``). A base
    standing straight on the table keeps its rim (a candlestick: 25.0 -> 29.0 dB); the table-coloured
    blend under a rounded part stays cut off (benchmarks/RESULTS.md, session 24). ``fixed``: at the
    margin. Runs without saved sparse points are cut at the margin."""
    support_carve: bool = True
    """Carve out of the SDF the solid above the cut that the table's colours claim and that rises from the
    cut (SDF runs over a support plane; :func:`t23d.extract.carve.carve_table_coloured`): on a grid over
    the region (256 cells on its longest side), each surface cell more than 0.05 above the cut votes
    table or object by the nearest colour among the sparse points, every solid cell within 0.15 of one
    goes with the nearest, and the table-coloured pieces connected to the cut that hold at least 2 % of
    the solid are emptied. Under changing light the field fills the shadow under an object with such
    solid (a skirt from a monkey head to its table): 18.6 -> 22.4 and 18.8 -> 22.7 dB, Chamfer-L1 0.045
    -> 0.019; nothing is carved under fixed light, on the candlestick or on a box on a printed sheet
    (benchmarks/RESULTS.md, session 24). ``export.json`` → ``region`` → ``carve``; the field's render for
    the fidelity check leaves the carved solid out too. Runs without saved sparse points are not carved."""
    support_fillet_radius: float | Literal["auto"] = 0.0
    """Undo the rounding of an SDF where the object meets its support plane (normalised units; 0: off):
    the asset is the zero set of ``sdf + max(r - h, 0)**2 / (4 r)``, ``h`` the height above the plane,
    which is the object's surface if the learnt one is its smooth union with the table of radius ``r``
    (:func:`t23d.extract.grid.unblend_support`). ``auto``: ``r`` is estimated at export from how far the
    learnt surface's section at the cut height stands out from the wall above it (0 when it does not:
    :func:`t23d.extract.fillet.estimate_support_fillet`), logged and written to ``export.json`` →
    ``support_fillet``. SDF runs with a support plane only. Not the default: a base that flares out into
    the table is a fillet to this measure (a candlestick's foot read 0.47 and was cut away)."""
    support_base: Literal["auto", "cut", "extend"] = "auto"
    """Where the asset's base ends over a support plane (SDF runs). ``cut``: at the cut, a flat cap
    above the table (shorter than the object by the cut's height). ``extend``: its section at the cut
    height continues straight down to the plane, so the asset stands on the table at its true height
    (:func:`t23d.extract.grid.extend_to_support`), coloured as the section just above the cut (the field
    holds the table below it). ``auto`` (the default): ``extend`` where ``support_cut: colour`` brought the
    cut down (the base's edge has the object's colours down towards the table: a base standing flat on
    it), ``cut`` where it stayed at the margin (the learnt blend under a rounded part has the table's
    colours; extended, it would stand on the table as a pedestal). Candlestick: 29.04 -> 29.46 dB,
    Chamfer-L1 0.0125 -> 0.0071; a monkey head on its chin keeps its cut (benchmarks/RESULTS.md, sessions 23
    and 26). ``export.json`` → ``region`` → ``base``."""
    support_footprint: bool = True
    """Over a support plane, let the asset reach along the plane as far as the object's learnt solid
    does just above the cut, connected to its part inside the object region (SDF runs): a base that
    spreads out low over the table has its sparse points on the plane, so the region's box (from the
    points above it) would cut it off square (:func:`t23d.extract.footprint.grow_over_support`; the box
    used goes to ``export.json`` → ``region``). ``false``: the box as found."""
    region_reach: bool = True
    """Over a support plane, let the asset reach as far as the object's learnt solid does above the cut
    (SDF runs): the box of the sparse points ends where they do, and a part with few features (a plain
    candle, thin ears) has few or none, more so from few photos (:func:`t23d.extract.reach.grow_to_reach`;
    ``export.json`` → ``region`` → ``reach``). ``false``: the box as the points and the footprint give it."""
    triangulation: TriangulationConfig = field(default_factory=TriangulationConfig)
    """Sparse points for posed photos without masks (the object region and support plane come from them)."""
