"""Why photos did not register in SfM, and what to tell the user when too few did.

Reasons come from the attempt's own database and models, in this order: the photo has few SIFT
features (blurred, badly exposed or plain); it matched no other photo (too little overlap); it was
registered only in a separate, smaller model (the capture broke into parts); or it matched photos but
could not be placed (its matches see too few reconstructed points).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from t23d.common.errors import T23dError

if TYPE_CHECKING:  # pragma: no cover
    from t23d.data.config import SfmConfig
    from t23d.data.sfm import AttemptResult

#: Fewer SIFT features than this in a photo (at the attempt's upsampling) is "few features".
FEW_FEATURES = 150
#: A median below this many features per photo means the scene itself is too plain for SfM.
PLAIN_SCENE_FEATURES = 300


def _photo_name(name: str, upsample: int) -> str:
    return name[: -len(".png")] if upsample != 1 and name.endswith(".png") else name


def feature_counts(pc: Any, result: AttemptResult) -> dict[str, int]:
    """SIFT features per photo (by the photo's own name) in an attempt's database."""
    database = pc.Database.open(result.database)
    try:
        return {
            _photo_name(im.name, result.attempt.upsample): int(database.num_keypoints_for_image(im.image_id))
            for im in database.read_all_images()
        }
    finally:
        database.close()


def _verified_partners(pc: Any, result: AttemptResult) -> dict[str, list[tuple[str, int]]]:
    """For each photo, the photos it matched with enough geometrically verified inliers."""
    bad = {
        pc.TwoViewGeometryConfiguration.UNDEFINED,
        pc.TwoViewGeometryConfiguration.DEGENERATE,
        pc.TwoViewGeometryConfiguration.WATERMARK,
    }
    database = pc.Database.open(result.database)
    try:
        names = {
            im.image_id: _photo_name(im.name, result.attempt.upsample) for im in database.read_all_images()
        }
        pair_ids, geometries = database.read_two_view_geometries()
    finally:
        database.close()
    partners: dict[str, list[tuple[str, int]]] = {}
    for pair_id, geom in zip(pair_ids, geometries):
        inliers = len(geom.inlier_matches)
        if geom.config in bad or inliers < result.attempt.min_num_inliers:
            continue
        a, b = (names[i] for i in pc.pair_id_to_image_pair(pair_id))
        partners.setdefault(a, []).append((b, inliers))
        partners.setdefault(b, []).append((a, inliers))
    return partners


def diagnose_unregistered(
    pc: Any, result: AttemptResult, names: list[str], registered: list[str]
) -> list[dict[str, Any]]:
    """One entry per photo of ``names`` missing from ``registered``: ``image``, ``reason``,
    ``num_features`` and ``num_matched_photos`` (see the module docstring for the reasons)."""
    features = feature_counts(pc, result)
    partners = _verified_partners(pc, result)
    other_model: dict[str, int] = {}
    for model in result.models[1:]:
        for image_id in model.reg_image_ids():
            other_model.setdefault(
                _photo_name(model.images[image_id].name, result.attempt.upsample), model.num_reg_images()
            )
    out = []
    done = set(registered)
    for name in names:
        if name in done:
            continue
        num = features.get(name)
        matched = sorted(partners.get(name, []), key=lambda p: -p[1])
        if num is None:
            reason = "COLMAP could not read the photo"
        elif num < FEW_FEATURES:
            reason = (
                f"few features ({num}): the photo is blurred, too dark or too bright, or shows plain surfaces"
            )
        elif not matched:
            reason = (
                "matched no other photo: it shares too little of its view with the others "
                "(take photos in smaller steps around the object)"
            )
        elif name in other_model:
            reason = (
                f"registered only in a separate model of {other_model[name]} photos: the capture broke into "
                "parts that do not overlap (add photos between them)"
            )
        else:
            reason = (
                f"matched {len(matched)} photos (most: {matched[0][1]} inlier matches with {matched[0][0]}) but "
                "could not be placed: its matches see too few reconstructed points"
            )
        out.append({"image": name, "reason": reason, "num_features": num, "num_matched_photos": len(matched)})
    return out


def too_few_registered_error(report: dict[str, Any], cfg: SfmConfig, features: dict[str, int]) -> T23dError:
    """The error for a capture that did not register well enough, with advice fitting the cause:
    too little texture (few features in most photos: plain objects on plain backgrounds) or too
    little overlap between the photos."""
    import math

    n, k = report["num_images"], report["num_registered"]
    need = max(cfg.min_registered, math.ceil(cfg.min_registered_fraction * n))
    median = float(np.median(list(features.values()))) if features else 0.0
    if median < PLAIN_SCENE_FEATURES:
        return T23dError(
            f"photos have too little texture: only {k} of {n} images registered; need at least {need}. "
            f"SfM found a median of {median:.0f} features per photo: a plain object on a plain background "
            "cannot be posed. Put texture in the scene: lay a newspaper or a printed sheet under the object, "
            "put textured things around it (they stay out of the asset), use a patterned backdrop; or give "
            "posed photos (transforms.json or a COLMAP model)"
        )
    return T23dError(
        f"photos have too little overlap: only {k} of {n} images registered; need at least {need}. Take more "
        "photos moving around the object in small steps (each photo should share most of its view with the "
        "next), keep the object textured, in focus and static"
    )


#: A model whose focal length is off its known prior (EXIF or given) by more than this factor is wrong.
FOCAL_PRIOR_TOLERANCE = 1.4
#: In a texture-poor capture, a model whose 3D points are seen by fewer photos than this on average is
#: made of matches that slide along silhouettes and shading, not of surface points.
MIN_TRACK_LENGTH_PLAIN = 3.0


def implausible_model(
    model: Any, upsample: int, focals: list[float | None], features: dict[str, int]
) -> str | None:
    """Why a registered model cannot be trusted, or None. Plain objects on plain backgrounds can
    "register" from features on silhouettes and shading, which slide along epipolar lines and pass
    verification; such models have a focal length far from the EXIF one and short tracks."""
    known = [f for f in focals if f is not None]
    if known:
        prior = float(np.median(known))
        est = float(np.median([c.mean_focal_length() for c in model.cameras.values()])) / upsample
        if not (1 / FOCAL_PRIOR_TOLERANCE <= est / prior <= FOCAL_PRIOR_TOLERANCE):
            return (
                f"its focal length ({est:.0f} px) is far from the known one ({prior:.0f} px): the matches are "
                "not surface points"
            )
    median = float(np.median(list(features.values()))) if features else 0.0
    track = float(model.compute_mean_track_length())
    if median < PLAIN_SCENE_FEATURES and track < MIN_TRACK_LENGTH_PLAIN:
        return (
            f"its points are seen by {track:.1f} photos on average in a capture with few features (median "
            f"{median:.0f} per photo): the matches are not surface points"
        )
    return None
