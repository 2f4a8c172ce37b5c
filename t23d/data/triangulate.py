"""Sparse points for posed photos that come without them: features matched and triangulated with the
given poses (pycolmap, imported only here, when used).

Posed captures (Blender or nerfstudio camera files, phone AR apps) usually carry no point cloud, and
unmasked ones then give the loader nothing to tell the object from its surroundings: the object region
is a guess from the field of view, no table is found, and the surroundings end up in the asset. Raw
photos do not have this problem because structure from motion makes points. This module makes the same
points for posed photos, without estimating any pose: SIFT on the training photos (small photos
enlarged first, a low contrast threshold so that plain surfaces such as a table top get features),
each photo matched with its nearest neighbours (camera centre and viewing direction), and
``pycolmap.triangulate_points`` with the given cameras fixed. The points then serve as SfM points do:
object region and support plane (:mod:`t23d.data.normalise`), and the SfM-point surface loss of
unmasked SDF runs (:mod:`t23d.reconstruct.fewview`).

The triangulated model (the given poses and the new points) is returned so a run can save it and read
the same points on resume instead of matching again (matching on several threads is not bit-exact).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from t23d.common.errors import ConfigError, T23dError
from t23d.data.cameras import Frame, opencv_to_opengl
from t23d.data.colmap import camera_to_colmap_params, import_pycolmap, reconstruction_points, shrink_model
from t23d.data.config import TriangulationConfig
from t23d.data.sfm import upsample_factor

log = logging.getLogger(__name__)


def validate_triangulation_config(cfg: TriangulationConfig) -> None:
    """Refuse option values that cannot work, naming the key and what is accepted."""
    checks = [
        ("mode", cfg.mode in ("auto", "off"), "auto, off"),
        ("neighbours", cfg.neighbours >= 1, ">= 1"),
        ("peak_threshold", 0.0 < cfg.peak_threshold < 1.0, "between 0 and 1"),
        ("min_feature_image_size", 0 <= cfg.min_feature_image_size <= 4096, "0 (off) to 4096"),
        ("max_images", cfg.max_images >= 2, ">= 2"),
        ("min_track_length", cfg.min_track_length >= 2, ">= 2"),
        ("min_points", cfg.min_points >= 0, ">= 0"),
    ]
    for key, ok, accepted in checks:
        if not ok:
            raise ConfigError(
                f"config key 'data.triangulation.{key}': invalid value {getattr(cfg, key)!r}; accepted: {accepted}"
            )


def neighbour_pairs(c2w: np.ndarray, neighbours: int) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of each OpenGL camera ``c2w [N, 4, 4]`` with its ``neighbours`` nearest:
    distance between camera centres (over their median distance from the centroid) plus one minus the
    cosine between viewing directions, so object-centric rings pair cameras that see the same side and
    forward-facing captures pair cameras that stand close."""
    n = len(c2w)
    origins = c2w[:, :3, 3]
    dirs = -c2w[:, :3, 2] / np.linalg.norm(c2w[:, :3, 2], axis=1, keepdims=True)
    spread = float(np.median(np.linalg.norm(origins - origins.mean(0), axis=1)))
    spread = spread if spread > 1e-9 else 1.0
    dist = np.linalg.norm(origins[:, None] - origins[None], axis=-1) / spread + (1.0 - dirs @ dirs.T)
    np.fill_diagonal(dist, np.inf)
    k = min(neighbours, n - 1)
    pairs = set()
    for i in range(n):
        for j in np.argsort(dist[i], kind="stable")[:k]:
            pairs.add((min(i, int(j)), max(i, int(j))))
    return sorted(pairs)


def _even_subset(n: int, limit: int) -> list[int]:
    """At most ``limit`` indices of ``range(n)``, evenly spread."""
    if n <= limit:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, limit)})


def triangulation_images(num_frames: int, cfg: TriangulationConfig) -> dict[str, int]:
    """The image names :func:`triangulate_posed` gives ``num_frames`` posed frames in its model (an even
    subset of at most ``cfg.max_images``), each with its index in those frames."""
    return {f"{k:04d}.png": i for k, i in enumerate(_even_subset(num_frames, cfg.max_images))}


def triangulate_posed(
    frames: list[Frame], cfg: TriangulationConfig, num_threads: int = -1, seed: int = 0
) -> tuple[np.ndarray, Any, dict]:
    """Triangulate sparse points seen by posed ``frames`` (cameras fixed at their poses).

    Returns ``points [P, 3]`` (the frames' world frame), the ``pycolmap.Reconstruction`` (the given
    cameras, images named as :func:`triangulation_images` says, and the points) and a report:
    ``num_images`` (used), ``num_pairs``, ``num_points`` (kept), ``num_dropped_short_tracks`` (points seen
    in fewer than ``cfg.min_track_length`` photos), ``mean_reprojection_error_px`` (of the kept points,
    pixels of the photos as given), ``upsample``, ``peak_threshold`` and ``timings_s``.
    """
    validate_triangulation_config(cfg)
    if len(frames) < 2:
        raise T23dError("triangulating sparse points needs at least two posed photos")
    pc = import_pycolmap()
    pc.set_random_seed(seed)
    images = triangulation_images(len(frames), cfg)
    names = list(images)
    used = [frames[i] for i in images.values()]
    long_side = max(max(f.camera.width, f.camera.height) for f in used)  # type: ignore[union-attr]
    up = upsample_factor(long_side, cfg.min_feature_image_size)
    timings: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="t23d_triangulate_"))
    try:
        from PIL import Image

        t0 = time.perf_counter()
        image_dir = work / "images"
        image_dir.mkdir()
        for name, f in zip(names, used):
            with Image.open(f.image_path) as im:
                rgb = im.convert("RGB")
                if (rgb.width, rgb.height) != (f.camera.width, f.camera.height):  # type: ignore[union-attr]
                    raise T23dError(
                        f"image {f.image_path} is {rgb.width}x{rgb.height} but its camera says "
                        f"{f.camera.width}x{f.camera.height}; the camera file and the image do not match"  # type: ignore[union-attr]
                    )
                if up > 1:
                    rgb = rgb.resize((rgb.width * up, rgb.height * up), Image.BICUBIC)
                rgb.save(image_dir / name)
        db = work / "database.db"
        reader = pc.ImageReaderOptions()
        reader.camera_model = "PINHOLE"  # replaced by the given cameras below
        extraction = pc.FeatureExtractionOptions()
        extraction.num_threads = num_threads
        extraction.max_image_size = max(long_side * up, 64)
        extraction.sift.peak_threshold = cfg.peak_threshold
        pc.extract_features(
            db, image_dir, image_names=names, camera_mode=pc.CameraMode.PER_IMAGE, reader_options=reader,
            extraction_options=extraction, device=pc.Device.cpu,
        )  # fmt: skip
        timings["features"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        c2w = np.stack([f.c2w for f in used])
        pairs = neighbour_pairs(c2w, cfg.neighbours)
        pairs_file = work / "pairs.txt"
        pairs_file.write_text("".join(f"{names[a]} {names[b]}\n" for a, b in pairs))
        matching = pc.FeatureMatchingOptions()
        matching.num_threads = num_threads
        imported = pc.ImportedPairingOptions()
        imported.match_list_path = str(pairs_file)
        verify = pc.TwoViewGeometryOptions()
        verify.ransac.random_seed = seed
        pc.match_image_pairs(db, matching_options=matching, pairing_options=imported, verification_options=verify,
                             device=pc.Device.cpu)  # fmt: skip
        timings["matching"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        database = pc.Database.open(db)
        try:
            by_name = {im.name: im for im in database.read_all_images()}
        finally:
            database.close()
        rec = pc.Reconstruction()
        for name, f in zip(names, used):
            entry = by_name[name]
            cam = f.camera.scaled(f.camera.width * up, f.camera.height * up)  # type: ignore[union-attr]
            model, params = camera_to_colmap_params(cam)
            rec.add_camera_with_trivial_rig(
                pc.Camera(
                    model=model, width=cam.width, height=cam.height, params=params, camera_id=entry.camera_id
                )
            )
            w2c = np.linalg.inv(opencv_to_opengl(np.asarray(f.c2w, dtype=np.float64)))
            rec.add_image_with_trivial_frame(
                pc.Image(name=name, camera_id=entry.camera_id, image_id=entry.image_id), pc.Rigid3d(w2c[:3])
            )
        options = pc.IncrementalPipelineOptions()
        options.num_threads = num_threads
        options.random_seed = seed
        out = work / "model"
        out.mkdir()
        rec = pc.triangulate_points(rec, db, image_dir, out, options=options)
        timings["triangulation"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    short = [pid for pid, p in rec.points3D.items() if p.track.length() < cfg.min_track_length]
    for pid in short:  # a match in two photos triangulates wherever it lies on the epipolar line
        rec.delete_point3D(pid)
    error = float(rec.compute_mean_reprojection_error()) / up if rec.num_points3D() else None
    if up > 1:  # cameras and 2D points back in pixels of the photos as given
        shrink_model(rec, up)
        rec.update_point_3d_errors()  # the points' stored errors, in the photos' pixels too
    points, _ = reconstruction_points(rec)
    report = {
        "num_images": len(used),
        "num_pairs": len(pairs),
        "num_points": len(points),
        "num_dropped_short_tracks": len(short),
        "mean_reprojection_error_px": error,
        "upsample": up,
        "peak_threshold": cfg.peak_threshold,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    log.info(
        "triangulated %d sparse points from %d posed photos (%d pairs, features on photos enlarged x%d; "
        "reprojection error %s px) in %.1f s",
        len(points), len(used), len(pairs), up, "n/a" if error is None else f"{error:.3f}", sum(timings.values()),
    )  # fmt: skip
    return points, rec, report
