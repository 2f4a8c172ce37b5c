"""Structure from motion for unposed photos, with pycolmap (imported only here, when used).

One attempt: SIFT features (photos smaller than ``min_feature_image_size`` upsampled first; one shared
camera, its focal length from ``focal_length_px`` or EXIF when known), matching (exhaustive, or
sequential with the loop closed: wrap-around pairs plus a vocabulary tree trained on the capture's
own features), guided re-matching, incremental mapping. When too few photos register, a second
attempt with relaxed settings runs and the attempt that registered more is kept
(:class:`SfmConfig` says what is relaxed). Photos that do not register are listed with the reason
(:mod:`t23d.data.sfm_diagnose`); too few registered photos is an error with advice.

The chosen model (cameras rescaled back to the photos as given) is written as a COLMAP binary model
to ``work_dir/sparse/best`` and then read like any COLMAP input (:mod:`t23d.data.colmap`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from t23d.common.errors import ConfigError, T23dError
from t23d.data.cameras import SceneFrames
from t23d.data.colmap import (
    import_pycolmap,
    read_colmap_scene,
    read_reconstruction,
    shrink_model,
    write_reconstruction,
)
from t23d.data.config import SfmConfig
from t23d.data.images import image_size, load_image

log = logging.getLogger(__name__)
#: Name of the chosen model's folder under ``work_dir/sparse``.
BEST_MODEL = "best"


@dataclass(frozen=True)
class Attempt:
    """Settings of one SfM attempt (the first from :class:`SfmConfig`, the retry relaxed)."""

    name: str
    """``default`` or ``relaxed``."""
    upsample: int
    """Whole factor by which photos are enlarged before feature extraction."""
    peak_threshold: float
    """SIFT contrast threshold."""
    affine: bool
    """Affine-adapted SIFT regions."""
    dsp: bool
    """Domain-size pooled SIFT descriptors."""
    matcher: str
    """``exhaustive`` or ``sequential``."""
    init_min_num_inliers: int
    """Inlier matches the first image pair needs."""
    abs_pose_min_num_inliers: int
    """2D-3D inliers a photo needs to be added to the model."""
    abs_pose_min_inlier_ratio: float
    """Inlier ratio a photo needs to be added to the model."""
    min_num_inliers: int
    """Inliers a photo pair needs to count as matched (two-view verification and mapping)."""


def upsample_factor(long_side: int, min_size: int) -> int:
    """Whole factor (1 to 4) by which photos whose long side is ``long_side`` pixels are enlarged before
    feature extraction, so that it reaches ``min_size`` (0: never enlarged)."""
    if min_size > 0 and long_side < min_size:
        return min(4, math.ceil(min_size / long_side))
    return 1


def plan_attempts(cfg: SfmConfig, num_images: int, long_side: int) -> list[Attempt]:
    """The first attempt from ``cfg`` and, with ``cfg.retry``, the relaxed second one."""
    up = upsample_factor(long_side, cfg.min_feature_image_size)
    matcher = cfg.matcher
    if matcher == "auto":
        matcher = "exhaustive" if num_images <= cfg.exhaustive_max_images else "sequential"
    first = Attempt(
        "default", up, cfg.peak_threshold, cfg.features in ("sift_affine", "sift_affine_dsp"),
        cfg.features in ("sift_dsp", "sift_affine_dsp"), matcher, 100, 30, 0.25, 15,
    )  # fmt: skip
    if not cfg.retry:
        return [first]
    relaxed = Attempt(
        "relaxed",
        min(8, max(2 * up, math.ceil(2 * cfg.min_feature_image_size / long_side))) if cfg.min_feature_image_size > 0 else up,
        cfg.peak_threshold / 2,
        True,
        first.dsp,
        "exhaustive" if cfg.matcher != "sequential" and num_images <= 2 * cfg.exhaustive_max_images else matcher,
        50, 20, 0.2, 12,
    )  # fmt: skip
    return [first, relaxed]


def validate_sfm_config(cfg: SfmConfig) -> None:
    """Refuse option values that cannot work, naming the key and what is accepted."""
    checks = [
        ("min_registered", cfg.min_registered >= 2, ">= 2"),
        ("min_registered_fraction", 0.0 <= cfg.min_registered_fraction <= 1.0, "between 0 and 1"),
        ("retry_below", 0.0 <= cfg.retry_below <= 1.0, "between 0 and 1"),
        ("sequential_overlap", cfg.sequential_overlap >= 1, ">= 1"),
        ("exhaustive_max_images", cfg.exhaustive_max_images >= 2, ">= 2"),
        ("min_feature_image_size", 0 <= cfg.min_feature_image_size <= 4096, "0 (off) to 4096"),
        ("max_image_size", cfg.max_image_size >= 64, ">= 64"),
        ("max_num_features", cfg.max_num_features >= 64, ">= 64"),
        ("peak_threshold", 0.0 < cfg.peak_threshold < 1.0, "between 0 and 1"),
        (
            "keep_known_focal_chi2",
            math.isfinite(cfg.keep_known_focal_chi2),
            "a finite number (negative: off)",
        ),
        (
            "focal_length_px",
            cfg.focal_length_px is None or (math.isfinite(cfg.focal_length_px) and cfg.focal_length_px > 0),
            "a finite number > 0 (pixels) or null",
        ),
    ]
    for key, ok, accepted in checks:
        if not ok:
            raise ConfigError(
                f"config key 'data.sfm.{key}': invalid value {getattr(cfg, key)!r}; accepted: {accepted}"
            )


# ---------------------------------------------------------------- the stages of one attempt


def _prepare_images(image_dir: Path, names: list[str], factor: int, out_dir: Path) -> Path:
    """The folder SIFT reads: ``image_dir`` itself, or ``out_dir`` with copies enlarged ``factor`` times."""
    if factor == 1:
        return image_dir
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        with Image.open(image_dir / name) as im:
            rgb = im.convert("RGB")
            rgb.resize((rgb.width * factor, rgb.height * factor), Image.BICUBIC).save(out_dir / f"{name}.png")
    return out_dir


def focal_priors(image_paths: list[Path], cfg: SfmConfig) -> tuple[list[float | None], str]:
    """Initial focal length (pixels of the photos as given) of each photo and where it came from."""
    if cfg.focal_length_px is not None:
        return [float(cfg.focal_length_px)] * len(image_paths), f"given ({cfg.focal_length_px:g} px)"
    if not cfg.use_exif:
        return [None] * len(image_paths), "COLMAP's guess (1.2 x the long side; EXIF not used)"
    from t23d.data.exif import exif_focal_length

    found = [exif_focal_length(p) for p in image_paths]
    if not any(found):
        return [None] * len(image_paths), "COLMAP's guess (1.2 x the long side; no EXIF focal length)"
    known = [f for f in found if f is not None]
    what = f"EXIF ({known[0].source}) for {len(known)} of {len(image_paths)} photos"
    return [None if f is None else f.focal_px for f in found], what


def _extract(
    pc: Any, db: Path, image_dir: Path, names: list[str], att: Attempt, cfg: SfmConfig, focals: list
) -> None:
    reader = pc.ImageReaderOptions()
    reader.camera_model = cfg.camera_model
    known = [f for f in focals if f is not None]
    distinct = len({round(f, 3) for f in known}) > 1
    mode = pc.CameraMode.SINGLE if cfg.single_camera and not distinct else pc.CameraMode.PER_IMAGE
    opts = pc.FeatureExtractionOptions()
    opts.num_threads = cfg.num_threads
    opts.max_image_size = cfg.max_image_size * att.upsample
    opts.sift.max_num_features = cfg.max_num_features
    opts.sift.peak_threshold = att.peak_threshold
    opts.sift.estimate_affine_shape = att.affine
    opts.sift.domain_size_pooling = att.dsp
    feature_names = names if att.upsample == 1 else [f"{n}.png" for n in names]
    pc.extract_features(
        db, image_dir, image_names=feature_names, camera_mode=mode, reader_options=reader,
        extraction_options=opts, device=pc.Device.cpu,
    )  # fmt: skip
    if not known:
        return
    # the known focal lengths (pixels of the photos as given) become the cameras' priors
    database = pc.Database.open(db)
    try:
        focal_of = dict(zip(feature_names, focals))
        camera_focal = {im.camera_id: focal_of.get(im.name) for im in database.read_all_images()}
        for cam in database.read_all_cameras():
            f = camera_focal.get(cam.camera_id)
            if f is None:
                continue
            params = list(cam.params)
            for i in cam.focal_length_idxs():
                params[i] = f * att.upsample
            cam.params = params
            cam.has_prior_focal_length = True
            database.update_camera(cam)
    finally:
        database.close()


def _build_vocab_tree(pc: Any, db: Path, path: Path, num_threads: int) -> bool:
    """Train a small vocabulary tree on the capture's own SIFT descriptors (for loop detection)."""
    database = pc.Database.open(db)
    try:
        descs = [database.read_descriptors(im.image_id).to_float().data for im in database.read_all_images()]
    finally:
        database.close()
    data = np.concatenate([d for d in descs if len(d)]) if any(len(d) for d in descs) else np.zeros((0, 128))
    if len(data) < 1000:
        return False
    if len(data) > 300_000:  # enough to train the words; keeps the k-means fast
        data = data[np.random.default_rng(0).choice(len(data), 300_000, replace=False)]
    index = pc.VisualIndex.create(128, 64)
    build = pc.VisualIndex.BuildOptions()
    build.num_visual_words = int(np.clip(len(data) // 40, 64, 65536))
    build.num_iterations = 20
    build.num_rounds = 1
    build.num_threads = num_threads
    index.build(
        build,
        pc.FeatureDescriptorsFloat(pc.FeatureExtractorType.SIFT, np.ascontiguousarray(data, np.float32)),
    )
    index.write(str(path))
    return True


def sequential_pairs(num: int, overlap: int) -> list[tuple[int, int]]:
    """Pairs of photo indices a walk-around needs: each photo with its ``overlap`` successors, wrapping
    around from the last photos to the first (the loop closes where the walk started)."""
    pairs = set()
    for i in range(num):
        for k in range(1, min(overlap, num - 1) + 1):
            a, b = i, (i + k) % num
            pairs.add((min(a, b), max(a, b)))
    return sorted(pairs)


def _match(pc: Any, db: Path, names: list[str], att: Attempt, cfg: SfmConfig, work: Path) -> dict[str, Any]:
    matching = pc.FeatureMatchingOptions()
    matching.num_threads = cfg.num_threads
    matching.guided_matching = cfg.guided_matching
    verify = pc.TwoViewGeometryOptions()
    verify.min_num_inliers = att.min_num_inliers
    verify.ransac.random_seed = cfg.seed
    info: dict[str, Any] = {"matcher": att.matcher}
    if att.matcher == "exhaustive":
        pc.match_exhaustive(db, matching_options=matching, verification_options=verify, device=pc.Device.cpu)
        return info
    pairing = pc.SequentialPairingOptions()
    pairing.overlap = cfg.sequential_overlap
    pairing.quadratic_overlap = True
    pairing.num_threads = cfg.num_threads
    if cfg.loop_detection and len(names) > 2 * cfg.sequential_overlap:
        vocab = work / "vocab_tree.bin"
        if _build_vocab_tree(pc, db, vocab, cfg.num_threads):
            pairing.loop_detection = True
            pairing.vocab_tree_path = str(vocab)
            pairing.loop_detection_period = 1
            pairing.loop_detection_num_images = min(30, len(names) - 1)
            info["loop_detection"] = "vocabulary tree of the capture's own features"
        else:
            log.warning("SfM: too few features to train a vocabulary tree; no loop detection")
    pc.match_sequential(db, matching_options=matching, pairing_options=pairing, verification_options=verify,
                        device=pc.Device.cpu)  # fmt: skip
    # close the walk-around: the last photos with the first (pairs already matched are skipped)
    database = pc.Database.open(db)
    try:
        by_name = {im.name: im for im in database.read_all_images()}
    finally:
        database.close()
    feature_names = sorted(by_name)
    wrap = [
        (a, b)
        for a, b in sequential_pairs(len(feature_names), cfg.sequential_overlap)
        if b - a > cfg.sequential_overlap
    ]
    if wrap:
        pairs_file = work / "wrap_pairs.txt"
        pairs_file.write_text("".join(f"{feature_names[a]} {feature_names[b]}\n" for a, b in wrap))
        imported = pc.ImportedPairingOptions()
        imported.match_list_path = str(pairs_file)
        pc.match_image_pairs(db, matching_options=matching, pairing_options=imported, verification_options=verify,
                             device=pc.Device.cpu)  # fmt: skip
        info["wrap_around_pairs"] = len(wrap)
    return info


def _map(pc: Any, db: Path, image_dir: Path, out: Path, att: Attempt, cfg: SfmConfig) -> dict[int, Any]:
    options = pc.IncrementalPipelineOptions()
    options.num_threads = cfg.num_threads
    options.random_seed = cfg.seed
    options.min_num_matches = att.min_num_inliers
    options.ba_refine_focal_length = cfg.refine_focal_length
    options.mapper.init_min_num_inliers = att.init_min_num_inliers
    options.mapper.abs_pose_min_num_inliers = att.abs_pose_min_num_inliers
    options.mapper.abs_pose_min_inlier_ratio = att.abs_pose_min_inlier_ratio
    options.mapper.abs_pose_refine_focal_length = cfg.refine_focal_length
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return pc.incremental_mapping(db, image_dir, out, options=options)


@dataclass
class AttemptResult:
    """What one attempt produced."""

    attempt: Attempt
    """Its settings."""
    database: Path
    """Its feature/match database."""
    models: list[Any]
    """Its reconstructions, largest first."""
    timings: dict[str, float]
    """Seconds per stage."""
    matching: dict[str, Any]
    """How pairs were chosen."""

    @property
    def num_registered(self) -> int:
        """Photos in the largest model."""
        return self.models[0].num_reg_images() if self.models else 0


def _run_attempt(
    pc: Any, image_paths: list[Path], att: Attempt, cfg: SfmConfig, focals: list, work: Path
) -> AttemptResult:
    image_dir = image_paths[0].parent
    names = [p.name for p in image_paths]
    work.mkdir(parents=True, exist_ok=True)
    db = work / "database.db"
    db.unlink(missing_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    feature_dir = _prepare_images(image_dir, names, att.upsample, work / "upsampled")
    _extract(pc, db, feature_dir, names, att, cfg, focals)
    timings["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    matching = _match(pc, db, names, att, cfg, work)
    timings["matching"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    recs = _map(pc, db, feature_dir, work / "sparse", att, cfg)
    timings["mapping"] = time.perf_counter() - t0
    from t23d.data.sfm_diagnose import feature_counts, implausible_model

    models = sorted(recs.values(), key=lambda r: (-r.num_reg_images(), r.compute_mean_reprojection_error()))
    result = AttemptResult(att, db, models, timings, matching)
    features = feature_counts(pc, result)
    kept, rejected = [], []
    for model in models:
        why = implausible_model(model, att.upsample, focals, features)
        if why is None:
            kept.append(model)
        else:
            log.warning(
                "SfM attempt '%s': a model of %d photos is discarded: %s",
                att.name,
                model.num_reg_images(),
                why,
            )
            rejected.append({"num_photos": model.num_reg_images(), "reason": why})
    result.models = kept
    if rejected:
        matching["rejected_models"] = rejected
    return result


def squared_reprojection_errors(rec: Any) -> tuple[float, int]:
    """Sum of squared reprojection errors (pixels²) over every observation of ``rec``, and their number."""
    total, count = 0.0, 0
    for image_id in rec.reg_image_ids():
        image = rec.images[image_id]
        observed = [p for p in image.points2D if p.has_point3D()]
        if not observed:
            continue
        xyz = np.array([rec.points3D[p.point3D_id].xyz for p in observed], dtype=np.float64)
        xy = np.array([p.xy for p in observed], dtype=np.float64)
        projected = np.asarray(rec.cameras[image.camera_id].img_from_cam(image.cam_from_world() * xyz))
        total += float(((projected[:, :2] - xy) ** 2).sum())
        count += len(observed)
    return total, count


def prefer_known_focal(
    pc: Any, rec: Any, focals: list, names: list[str], cfg: SfmConfig
) -> tuple[Any, dict | None]:
    """Hold a known focal length when the photos do not determine a better one.

    ``rec`` is the chosen model in pixels of the photos as given; ``focals`` the known focal length of
    each photo in ``names`` (None where unknown). When ``cfg.refine_focal_length`` let bundle adjustment
    move a known focal length, a copy is adjusted again with every camera's focal length set back to
    the known one (the median of its photos') and its lens distortion to zero, both held fixed. The two
    are compared by a likelihood-ratio test: ``n (SSE_known - SSE_refined) / SSE_refined`` (``n``
    observations; chi-squared with as many degrees of freedom as the refined intrinsics had, if the
    known ones are right). The copy is returned unless that exceeds ``cfg.keep_known_focal_chi2``.
    Returns the model to use and what was compared and chosen (None when nothing was known or refined)."""
    if not cfg.refine_focal_length or cfg.keep_known_focal_chi2 < 0:
        return rec, None
    known_of = dict(zip(names, focals))
    per_camera: dict[int, list[float]] = {}
    for image_id in rec.reg_image_ids():
        image = rec.images[image_id]
        f = known_of.get(image.name)
        if f is not None:
            per_camera.setdefault(image.camera_id, []).append(float(f))
    if not per_camera:
        return rec, None
    fixed = pc.Reconstruction(rec)
    for camera_id, known in per_camera.items():
        cam = fixed.cameras[camera_id]
        params = np.array(cam.params, dtype=np.float64)
        params[list(cam.focal_length_idxs())] = float(np.median(known))
        params[list(cam.extra_params_idxs())] = 0.0
        cam.params = params
    options = pc.BundleAdjustmentOptions()
    options.refine_focal_length = False
    options.refine_principal_point = False
    options.refine_extra_params = False
    options.print_summary = False
    for _ in range(2):  # the second pass settles what the first moved
        pc.bundle_adjustment(fixed, options)
    sse_refined, n = squared_reprojection_errors(rec)
    sse_known, _ = squared_reprojection_errors(fixed)
    statistic = n * (sse_known - sse_refined) / max(sse_refined, 1e-12)
    keep_known = statistic <= cfg.keep_known_focal_chi2
    report = {
        "kept": "known" if keep_known else "refined",
        "refined_px": sorted({round(float(c.mean_focal_length()), 2) for c in rec.cameras.values()}),
        "rms_error_refined_px": math.sqrt(sse_refined / max(n, 1)),
        "rms_error_known_px": math.sqrt(sse_known / max(n, 1)),
        "likelihood_ratio": statistic,
    }
    log.info(
        "SfM: known focal length %s px, refined %s px: RMS reprojection error %.4f vs %.4f px over %d "
        "observations (likelihood ratio %.1f, threshold %.1f) -> kept the %s one",
        sorted({round(float(np.median(v)), 2) for v in per_camera.values()}), report["refined_px"],
        report["rms_error_known_px"], report["rms_error_refined_px"], n, statistic, cfg.keep_known_focal_chi2,
        report["kept"],
    )  # fmt: skip
    if not keep_known:
        return rec, report
    fixed.update_point_3d_errors()
    return fixed, report


def _restore_photo_names_and_size(rec: Any, att: Attempt, sizes: dict[str, tuple[int, int]]) -> None:
    """Undo the upsampling in the model: cameras and 2D points in pixels of the photos as given, and
    image names without the ``.png`` the enlarged copies carry."""
    if att.upsample == 1:
        return
    shrink_model(rec, att.upsample)
    for image_id in rec.reg_image_ids():
        image = rec.images[image_id]
        image.name = image.name[: -len(".png")]
    for image_id in rec.reg_image_ids():
        image = rec.images[image_id]
        cam = rec.cameras[image.camera_id]
        if (cam.width, cam.height) != sizes[image.name]:
            raise T23dError(
                f"SfM: camera of {image.name} is {cam.width}x{cam.height} after undoing the upsampling"
            )


# ---------------------------------------------------------------- the whole run


def run_sfm(image_paths: list[Path], cfg: SfmConfig, work_dir: Path) -> tuple[Path, dict]:
    """Run SfM on ``image_paths`` (all in one folder); return the model folder and a report.

    The report holds ``num_images``, ``num_registered``, ``registered_fraction``, ``registered``,
    ``unregistered`` (one entry per photo: ``image``, ``reason``, ``num_features``, ``num_matched_photos``),
    ``photo_issues`` (blurred or badly exposed photos, :mod:`t23d.data.photo_checks`), ``num_models`` and
    ``model_sizes``, ``num_points``, ``mean_reprojection_error_px`` (pixels of the photos as given),
    ``focal_length_px`` (initial, source, estimated), ``attempts`` (settings, registered count,
    timings of each) and ``timings_s`` (totals per stage). Raises :class:`T23dError` with advice when too
    few photos register (:func:`t23d.data.sfm_diagnose.too_few_registered_error`).
    """
    from t23d.data.sfm_diagnose import diagnose_unregistered, feature_counts, too_few_registered_error

    validate_sfm_config(cfg)
    pc = import_pycolmap()
    pc.set_random_seed(cfg.seed)
    names = [p.name for p in image_paths]
    from t23d.data.photo_checks import flag_photos, photo_stats

    # fail on a corrupt photo by name, not by silently skipping it; measure blur and exposure on the way
    stats = {p.name: photo_stats(load_image(p)) for p in image_paths}
    photo_issues = flag_photos(stats)
    for entry in photo_issues:
        log.warning("photo %s: %s", entry["image"], "; ".join(entry["issues"]))
    sizes = {p.name: image_size(p) for p in image_paths}
    long_side = max(max(s) for s in sizes.values())
    focals, focal_source = focal_priors(image_paths, cfg)
    work_dir.mkdir(parents=True, exist_ok=True)

    results: list[AttemptResult] = []
    n = len(names)
    for att in plan_attempts(cfg, n, long_side):
        if results:
            if results[-1].num_registered >= cfg.retry_below * n:
                break
            log.info(
                "SfM: only %d of %d photos registered; retrying with relaxed settings (upsampling x%d, "
                "peak threshold %.4f, affine SIFT, %s matching, fewer inliers needed)",
                results[-1].num_registered, n, att.upsample, att.peak_threshold, att.matcher,
            )  # fmt: skip
        res = _run_attempt(
            pc, image_paths, att, cfg, focals, work_dir / f"attempt_{len(results) + 1}_{att.name}"
        )
        results.append(res)
        log.info(
            "SfM attempt '%s': %d of %d photos registered (%d models; upsampling x%d, %s matching); features "
            "%.1f s, matching %.1f s, mapping %.1f s",
            att.name, res.num_registered, n, len(res.models), att.upsample, att.matcher,
            res.timings["features"], res.timings["matching"], res.timings["mapping"],
        )  # fmt: skip
    chosen = max(results, key=lambda r: (r.num_registered, -results.index(r)))  # ties: the first attempt
    best = chosen.models[0] if chosen.models else None
    registered = sorted(best.images[i].name for i in best.reg_image_ids()) if best is not None else []
    if chosen.attempt.upsample != 1:
        registered = [r[: -len(".png")] for r in registered]
    unregistered = diagnose_unregistered(pc, chosen, names, registered)
    features = feature_counts(pc, chosen)
    k = len(registered)
    error_px = (
        float(best.compute_mean_reprojection_error()) / chosen.attempt.upsample if best is not None else None
    )
    intrinsics = None
    if best is not None:
        _restore_photo_names_and_size(best, chosen.attempt, sizes)
        best, intrinsics = prefer_known_focal(pc, best, focals, names, cfg)
        if intrinsics is not None and intrinsics["kept"] == "known":
            error_px = float(best.compute_mean_reprojection_error())
    estimated = (
        sorted({round(float(c.mean_focal_length()), 2) for c in best.cameras.values()}) if best else []
    )
    report = {
        "num_images": n,
        "num_registered": k,
        "registered_fraction": round(k / n, 4) if n else 0.0,
        "registered": registered,
        "unregistered": unregistered,
        "photo_issues": photo_issues,
        "num_models": len(chosen.models),
        "model_sizes": [m.num_reg_images() for m in chosen.models],
        "features_per_photo": {
            "median": float(np.median(list(features.values()))) if features else 0.0,
            "min": min(features.values(), default=0),
        },
        "num_points": best.num_points3D() if best is not None else 0,
        "mean_reprojection_error_px": error_px,
        "focal_length_px": {
            "initial": sorted({round(f, 2) for f in focals if f is not None}) or None,
            "source": focal_source,
            "estimated": estimated,
            **({"choice": intrinsics} if intrinsics is not None else {}),
        },
        "chosen_attempt": chosen.attempt.name,
        "attempts": [
            {
                **dataclasses.asdict(r.attempt),
                **r.matching,
                "num_registered": r.num_registered,
                "timings_s": {key: round(v, 3) for key, v in r.timings.items()},
            }
            for r in results
        ],
        "timings_s": {
            key: round(sum(r.timings[key] for r in results), 3) for key in ("features", "matching", "mapping")
        },
    }
    log.info(
        "SfM: %d of %d photos registered (attempt '%s'), %d points, reprojection error %s px, focal length %s px (%s)",
        k, n, chosen.attempt.name, report["num_points"],
        "n/a" if error_px is None else f"{error_px:.3f}", estimated or "n/a", focal_source,
    )  # fmt: skip
    for entry in unregistered:
        log.warning("SfM: %s not registered: %s", entry["image"], entry["reason"])
    if k < max(cfg.min_registered, math.ceil(cfg.min_registered_fraction * n)):
        raise too_few_registered_error(report, cfg, features)
    model_dir = work_dir / "sparse" / BEST_MODEL
    write_reconstruction(best, model_dir)
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
        scene.sfm_model = read_reconstruction(model_dir)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    scene.sfm_report = report
    return scene


def read_saved_sfm_model(image_paths: list[Path], model_dir: Path) -> SceneFrames:
    """Pose photos by the SfM model an earlier run saved (a resumed run): the same poses, bit for bit,
    without running SfM again. Every registered photo of the model must still be among ``image_paths``."""
    scene = read_colmap_scene(model_dir, images_dir=image_paths[0].parent, source_format="images")
    have = {p.name for p in image_paths}
    missing = [f.image_path.name for f in scene.frames if f.image_path.name not in have]
    if missing:
        raise T23dError(
            f"the saved SfM model {model_dir} poses photos that are no longer in {image_paths[0].parent}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; restore them, or start a new run"
        )
    scene.sfm_model = read_reconstruction(model_dir)
    log.info("posed %d photos by the saved SfM model %s (SfM not run again)", len(scene.frames), model_dir)
    return scene
