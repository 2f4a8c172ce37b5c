"""Structure from motion for unposed photos, with pycolmap (imported only here, when used).

Pipeline: SIFT feature extraction (one shared camera by default, model from
:class:`~t23d.data.config.SfmConfig`), exhaustive or sequential matching, incremental mapping.
The reconstruction with the most registered images is written as a COLMAP binary model to
``work_dir/sparse/best`` and then loaded like any COLMAP input (:mod:`t23d.data.colmap`).
Timings of each stage are logged and returned in the report.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from t23d.common.errors import T23dError
from t23d.data.cameras import SceneFrames
from t23d.data.colmap import read_colmap_scene
from t23d.data.config import SfmConfig
from t23d.data.images import load_image

log = logging.getLogger(__name__)


def _import_pycolmap():  # noqa: ANN202
    try:
        import pycolmap
    except ImportError as e:
        raise T23dError(
            "posing raw photos needs pycolmap (pip install pycolmap); or give posed input "
            "(transforms.json or a COLMAP model)"
        ) from e
    return pycolmap


def run_sfm(image_paths: list[Path], cfg: SfmConfig, work_dir: Path) -> tuple[Path, dict]:
    """Run SfM on ``image_paths`` (all in one folder); return the model folder and a report.

    The report holds ``num_images``, ``num_registered``, ``registered`` / ``unregistered`` names,
    ``num_points``, ``mean_reprojection_error_px``, ``num_models`` and ``timings_s`` per stage.
    Raises :class:`T23dError` when fewer than ``cfg.min_registered`` images register.
    """
    pycolmap = _import_pycolmap()
    image_dir = image_paths[0].parent
    names = [p.name for p in image_paths]
    for p in image_paths:  # fail on a corrupt photo by name, not by silently skipping it
        load_image(p)
    work_dir.mkdir(parents=True, exist_ok=True)
    db = work_dir / "database.db"
    if db.exists():
        db.unlink()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = cfg.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = cfg.num_threads
    extraction.max_image_size = cfg.max_image_size
    extraction.sift.max_num_features = cfg.max_num_features
    mode = pycolmap.CameraMode.SINGLE if cfg.single_camera else pycolmap.CameraMode.AUTO
    pycolmap.extract_features(
        db, image_dir, image_names=names, camera_mode=mode, reader_options=reader,
        extraction_options=extraction, device=pycolmap.Device.cpu,
    )  # fmt: skip
    timings["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = cfg.num_threads
    if cfg.matcher == "exhaustive":
        pycolmap.match_exhaustive(db, matching_options=matching, device=pycolmap.Device.cpu)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = cfg.sequential_overlap
        pycolmap.match_sequential(
            db, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu
        )
    timings["matching"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = cfg.num_threads
    options.random_seed = 0
    out_root = work_dir / "sparse"
    if out_root.exists():
        shutil.rmtree(out_root)
    out_root.mkdir(parents=True)
    recs = pycolmap.incremental_mapping(db, image_dir, out_root, options=options)
    timings["mapping"] = time.perf_counter() - t0

    best = max(recs.values(), key=lambda r: r.num_reg_images(), default=None)
    registered = sorted(best.images[i].name for i in best.reg_image_ids()) if best is not None else []
    n, k = len(names), len(registered)
    report = {
        "num_images": n,
        "num_registered": k,
        "registered": registered,
        "unregistered": sorted(set(names) - set(registered)),
        "num_models": len(recs),
        "num_points": best.num_points3D() if best is not None else 0,
        "mean_reprojection_error_px": float(best.compute_mean_reprojection_error())
        if best is not None
        else None,
        "timings_s": {key: round(v, 3) for key, v in timings.items()},
    }
    log.info(
        "SfM: %d of %d images registered, %d points, reprojection error %s px; features %.1f s, matching %.1f s, "
        "mapping %.1f s",
        k, n, report["num_points"], report["mean_reprojection_error_px"],
        timings["features"], timings["matching"], timings["mapping"],
    )  # fmt: skip
    if k < cfg.min_registered:
        raise T23dError(
            f"photos have too little overlap: only {k} of {n} images registered; need at least "
            f"{cfg.min_registered}. Take more photos moving around the object in small steps (each photo "
            "should share most of its view with the next), keep the object textured, in focus and static"
        )
    model_dir = work_dir / "sparse" / "best"
    model_dir.mkdir(parents=True, exist_ok=True)
    best.write(str(model_dir))
    return model_dir, report


def read_photos_with_sfm(image_paths: list[Path], cfg: SfmConfig) -> SceneFrames:
    """Pose a folder of photos with SfM and read the result as COLMAP frames (``source_format="images"``)."""
    tmp = None
    work_dir = cfg.work_dir
    if work_dir is None:
        tmp = tempfile.mkdtemp(prefix="t23d_sfm_")
        work_dir = Path(tmp)
    try:
        model_dir, report = run_sfm(image_paths, cfg, Path(work_dir))
        scene = read_colmap_scene(model_dir, images_dir=image_paths[0].parent, source_format="images")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    scene.sfm_report = report
    return scene
