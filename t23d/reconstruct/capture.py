"""What a photo run decides from its capture before training, and reports about it afterwards.

:func:`resolve_for_capture` turns the user's config into the run's resolved config (written to
``config.yaml``, so resumes and re-exports use the same choices): the background model, the shading
model an albedo texture needs, the per-photo local light codes, the few-view regularisers
(:mod:`t23d.reconstruct.fewview`) and how the training pixels are drawn. :func:`learnt_capture_report`
summarises what training learnt about the capture (environment light, per-photo exposure and local
codes, pose corrections) for ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import torch

from t23d.field.appearance import AppearanceConfig
from t23d.field.nerf import FieldConfig
from t23d.reconstruct.config import ReconstructConfig, default_background
from t23d.reconstruct.ray_sampling import RaySamplingConfig
from t23d.run.state import TrainingState

log = logging.getLogger(__name__)


def resolve_for_capture(cfg: ReconstructConfig, dataset: Any) -> tuple[ReconstructConfig, dict[str, Any]]:
    """The run's resolved config for ``dataset`` (a :class:`~t23d.data.dataset.PhotoDataset`), and a record
    of the decisions (``{"few_view": ...}``) for ``run.json`` and ``metrics.json``."""
    from t23d.reconstruct.fewview import plan_few_view

    cfg = dataclasses.replace(cfg, background=default_background(cfg, dataset.alphas is not None))
    appearance, local_light = local_codes_for(cfg.appearance, masked=dataset.alphas is not None)
    if cfg.export.texture == "albedo" and appearance.shading == "none":
        log.info(
            "texture 'albedo': learning a shading model (appearance.shading 'sh') to separate the albedo"
        )
        appearance = dataclasses.replace(appearance, shading="sh")
    field_cfg = cfg.field
    if appearance.shading == "sh" and field_cfg.view_dependent:
        log.info(
            "shading 'sh': the field's colour is the albedo (view-independent); view-dependent effects "
            "go to the specular residual"
        )
        field_cfg = dataclasses.replace(field_cfg, view_dependent=False)
    field_cfg, view = view_dependence_for(cfg, field_cfg, masked=dataset.alphas is not None)
    ground = ground_plane_for(cfg, dataset)
    if ground is not None:
        log.info(
            "the support plane is part of the SDF's geometry (ground: auto): the object's surface is "
            "learnt apart from the table"
        )
        field_cfg = dataclasses.replace(field_cfg, ground_plane=ground)
    sampling, rays = ray_sampling_for(cfg, masked=dataset.alphas is not None)
    cfg = dataclasses.replace(cfg, appearance=appearance, field=field_cfg, ray_sampling=sampling)
    train = list(dataset.train_indices)
    positions = dataset.c2w[train, :3, 3]
    centre = dataset.aabb.float().mean(0)
    cfg, plan = plan_few_view(cfg, positions, centre, dataset.points, masked=dataset.alphas is not None)
    log.info(
        "capture: %d training photos, neighbours %.1f deg apart, %.0f%% of directions covered%s; "
        "few-view regularisation %s (%s)%s",
        plan.num_views,
        plan.spacing_deg,
        100 * plan.coverage,
        f", {plan.num_points} SfM points" if plan.num_points else "",
        "on" if plan.sparse else "off",
        plan.reason,
        f": {plan.regularisers}" if plan.regularisers else "",
    )
    return cfg, {
        "few_view": plan.to_dict(),
        "ground_plane": ground,
        "free_space": free_space_plan(cfg, dataset),
        "local_light": local_light,
        "view_dependence": view,
        "ray_sampling": rays,
    }


def ray_sampling_for(cfg: ReconstructConfig, masked: bool) -> tuple[RaySamplingConfig, dict[str, Any]]:
    """``cfg.ray_sampling`` with ``mode: auto`` resolved for photos that are ``masked`` or not, and the
    decision (logged; for ``run.json`` and ``metrics.json``). Unmasked photos draw half their rays by the
    error map: side by side at 13 CPU-minutes it gave the candlestick +0.67 dB and Chamfer-L1 -0.0011,
    the monkey head in a room +1.67 dB and -0.0008. Masked photos draw uniformly: on the masked duck the
    map gained 0.23 dB for a third more CPU time per step (benchmarks/RESULTS.md, session 26)."""
    sampling = cfg.ray_sampling
    if sampling.mode != "auto":
        return sampling, {"mode": sampling.mode, "reason": "set in the config"}
    mode, reason = ("uniform", "auto: masked photos") if masked else ("error", "auto: unmasked photos")
    log.info("training pixels: %s (%s)", "half by the error map" if mode == "error" else "uniform", reason)
    return dataclasses.replace(sampling, mode=mode), {"mode": mode, "reason": reason}


def view_dependence_for(
    cfg: ReconstructConfig, field_cfg: FieldConfig, masked: bool
) -> tuple[FieldConfig, dict[str, Any]]:
    """``field_cfg`` with the colour's view dependence
    ``cfg.view_dependence`` gives photos that are ``masked`` or not, and the decision (logged; for
    ``run.json`` and ``metrics.json``): ``auto`` turns it off for unmasked photos."""
    if not field_cfg.view_dependent:
        return field_cfg, {
            "on": False,
            "reason": "off already (field.view_dependent, or the shading model an albedo needs)",
        }
    if cfg.view_dependence == "field":
        return field_cfg, {"on": True, "reason": "view_dependence 'field': field.view_dependent"}
    if masked:
        return field_cfg, {"on": True, "reason": "auto: masked photos (the object alone)"}
    log.info(
        "view dependence: off (auto: unmasked photos; the asset bakes one colour per point, and the "
        "surroundings' changes are not fitted with the object's colour)"
    )
    return dataclasses.replace(field_cfg, view_dependent=False), {
        "on": False,
        "reason": "auto: unmasked photos",
    }


AUTO_LOCAL_CODES = 32
"""Size of the per-photo local light codes ``appearance.local_codes: auto`` gives unmasked photos."""


def local_codes_for(appearance: AppearanceConfig, masked: bool) -> tuple[AppearanceConfig, dict[str, Any]]:
    """``appearance`` with ``local_codes: auto`` resolved for a capture whose photos are ``masked`` (have
    alpha) or not, and the decision (logged; for ``run.json`` and ``metrics.json``).

    Unmasked photos get :data:`AUTO_LOCAL_CODES`: the surroundings are part of them, and where the light
    changes between photos the shadows move across the table and walls. Masked photos get none (not
    measured; each step costs more). ``auto`` is the reconstruct default: with view-independent colour,
    32 codes gave the monkey head in a room +0.6 dB under changing light at both seeds tried (half the
    skirt left after the carve), the same asset under fixed light, and the candlestick 0.5 dB less
    (benchmarks/RESULTS.md, session 25; with view-dependent colour 8 codes had grown a skirt under fixed
    light, session 22)."""
    if appearance.local_codes != "auto":
        size = int(appearance.local_codes)
        return appearance, {"codes": size, "reason": "set in the config"}
    if masked:
        size, reason = 0, "auto: masked photos (the object alone)"
    else:
        size, reason = (
            AUTO_LOCAL_CODES,
            "auto: unmasked photos (light on the surroundings may change between photos)",
        )
    log.info("local light codes: %s (%s)", size or "off", reason)
    return dataclasses.replace(appearance, local_codes=size), {"codes": size, "reason": reason}


def free_space_plan(cfg: ReconstructConfig, dataset: Any) -> dict[str, Any]:
    """Whether the run uses the free-space loss on ``dataset`` and why (logged; for ``run.json`` and
    ``metrics.json``)."""
    from t23d.reconstruct.free_space import dataset_segments, free_space_report

    segments = dataset_segments(cfg.free_space, dataset, cfg.field.bound)
    masked, views = dataset.alphas is not None, getattr(dataset, "point_views", None)
    report = free_space_report(cfg.free_space, masked, views, 0 if segments is None else len(segments))
    log.info(
        "free space in front of the sparse points: %s (%s)", "on" if report["on"] else "off", report["reason"]
    )
    return report


def ground_plane_for(cfg: ReconstructConfig, dataset: Any) -> list[float] | None:
    """``field.ground_plane`` for ``dataset`` under ``cfg.ground``: the dataset's support plane
    ``(nx, ny, nz, d)`` (normalised frame) for SDF runs with ``ground: auto``; else ``cfg``'s own value
    (None unless set by hand)."""
    plane = getattr(dataset, "support_plane", None)
    if cfg.ground != "auto" or cfg.field.geometry != "sdf" or plane is None:
        return cfg.field.ground_plane
    return [float(v) for v in plane.normal] + [float(plane.offset)]


@torch.no_grad()
def learnt_capture_report(state: TrainingState, dataset: Any) -> dict[str, Any]:
    """What training learnt about the capture: the environment's SH irradiance, how much the
    per-photo exposure varies and the size of the local codes (``appearance``), the pose corrections
    (``poses``)."""
    out: dict[str, Any] = {}
    app = state.extras.get("appearance")
    if app is not None:
        info: dict[str, Any] = {"shading": app.cfg.shading, "per_image": app.cfg.per_image}
        if app.shaded:
            info["environment_sh"] = [[round(float(v), 5) for v in row] for row in app.sh.cpu()]
        if app.cfg.per_image != "none":
            train = app.train_ids
            stops = app._centred(app.image_log_gain)[train] / math.log(2.0)  # [T, 3] exposure in stops
            info["exposure_stops"] = {
                "min": round(float(stops.min()), 4),
                "max": round(float(stops.max()), 4),
                "std": round(float(stops.std()), 4) if len(stops) > 1 else 0.0,
            }
        if app.image_local is not None:
            codes = app._centred(app.image_local)[app.train_ids]  # [T, D]
            info["local_codes"] = {
                "size": codes.shape[1],
                "norm_mean": round(float(codes.norm(dim=-1).mean()), 4),
            }
        if app.cfg.per_image != "none" or app.image_local is not None:
            info["neutral_code"] = "zero (the training photos' average appearance)"
        out["appearance"] = info
    poses = state.extras.get("poses")
    if poses is not None:
        c2w = dataset.c2w.to(poses.correction.device)
        rot, shift = poses.magnitudes(c2w)
        train = list(dataset.train_indices)
        scale = float(dataset.world_from_normalised[0, 0])
        out["poses"] = {
            "refined": True,
            "rotation_deg": {"mean": float(rot[train].mean()), "max": float(rot[train].max())},
            "shift": {
                "mean": float(shift[train].mean()) * scale,
                "max": float(shift[train].max()) * scale,
                "units": "input world units",
            },
        }
    return out
