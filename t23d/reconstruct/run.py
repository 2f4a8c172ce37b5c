"""``t23d reconstruct``: load photos, train the field photometrically, evaluate held-out views, export.

The run directory holds, beside the usual files, ``scene.json``: the transform from the normalised
training frame back to the input's world frame, the object's bounds, and every camera (normalised
frame) with its split, so ``t23d export`` and ``t23d render`` work without reloading the photos.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t23d.common.atomic import write_json_atomic
from t23d.common.errors import T23dError
from t23d.reconstruct.capture import learnt_capture_report, resolve_for_capture
from t23d.reconstruct.config import ReconstructConfig, validate_reconstruct_config
from t23d.reconstruct.metrics import SSIM_WINDOW
from t23d.reconstruct.support import over_support, sparse_point_colors
from t23d.reconstruct.train import (
    TrainImages,
    build_reconstruct_state,
    photo_appearance,
    train_photometric,
)
from t23d.reconstruct.warm_start import WARM_START_DIR
from t23d.render.cameras import Cameras
from t23d.run.lifecycle import (
    create_locked_run,
    open_resumed_run,
    record_new_run,
    record_resumed_run,
    recorded_run,
    timed_export,
    timed_training,
)
from t23d.run.rundir import check_writable, read_run, read_run_config, update_run
from t23d.run.state import (
    StepCallback,
    TrainingState,
    resolve_device,
)

logger = logging.getLogger(__name__)
SCENE_JSON = "scene.json"
#: Folder of the run directory holding the COLMAP model SfM posed raw photos with, or the one posed
#: photos' sparse points were triangulated into (reused on resume).
SFM_MODEL_DIR = "sfm"
#: Entries of the SfM report copied into ``metrics.json`` (the registration's accuracy report).
REGISTRATION_KEYS = (
    "num_images",
    "num_registered",
    "registered_fraction",
    "mean_reprojection_error_px",
    "num_points",
    "focal_length_px",
    "unregistered",
    "photo_issues",
)


def scene_record(dataset: Any) -> dict[str, Any]:
    """What later stages need from the dataset (no images)."""
    return {
        "world_from_normalised": np.asarray(dataset.world_from_normalised).tolist(),
        "aabb": dataset.aabb.tolist(),
        "width": dataset.width,
        "height": dataset.height,
        "c2w": dataset.c2w.tolist(),
        "intrinsics": dataset.intrinsics.tolist(),
        "train_indices": list(dataset.train_indices),
        "test_indices": list(dataset.test_indices),
        "image_paths": [str(p) for p in dataset.image_paths],
        "source_format": dataset.source_format,
        "has_alpha": dataset.alphas is not None,
        "support_plane": None if dataset.support_plane is None else dataset.support_plane.to_dict(),
    }


def cameras_of(scene: dict[str, Any], indices: list[int] | None = None) -> Cameras:
    """Cameras (normalised frame) of the scene record, optionally a subset."""
    c2w = torch.tensor(scene["c2w"], dtype=torch.float32)
    intr = torch.tensor(scene["intrinsics"], dtype=torch.float32)
    if indices is not None:
        c2w, intr = c2w[indices], intr[indices]
    return Cameras(c2w, intr, int(scene["width"]), int(scene["height"]))


def _camera_tuples(cams: Cameras) -> list[tuple[Any, Any, int, int]]:
    """``(c2w, intrinsics, H, W)`` per camera, as the export stage takes them."""
    return [(cams.c2w[i], cams.intrinsics[i], cams.height, cams.width) for i in range(len(cams))]


def _train_images(
    dataset: Any, background_color: torch.Tensor | None, device: torch.device, cfg: ReconstructConfig
) -> TrainImages:
    from t23d.data.normalise import isolated_points
    from t23d.reconstruct.fewview import sparse_points_inside
    from t23d.reconstruct.free_space import dataset_segments

    bound = cfg.field.bound

    images = dataset.images
    alphas = dataset.alphas
    if alphas is not None and background_color is not None:
        # the loader composited RGBA photos onto its background; keep colour * alpha
        images = images - (1 - alphas[..., None]) * background_color
    cams = Cameras(dataset.c2w, dataset.intrinsics, dataset.width, dataset.height).to(device)
    pts = sparse_points_inside(dataset.points, bound)
    if pts is not None:  # SfM outliers would pull the surface into the air
        pts = pts[~torch.from_numpy(isolated_points(pts.numpy()))]
        pts = pts if len(pts) else None
    free_space = dataset_segments(cfg.free_space, dataset, bound)
    free_space = free_space.to(device) if free_space is not None and len(free_space) else None
    return TrainImages(
        cams,
        images.clamp(0, 1).to(device),
        None if alphas is None else alphas.to(device),
        torch.tensor(dataset.train_indices, dtype=torch.long),
        points=None if pts is None else pts.to(device),
        free_space=free_space,
    )


_DATA_BACKGROUND = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "random": (0.0, 0.0, 0.0)}


def _saved_sfm_model(run_dir: Path) -> Path | None:
    """The COLMAP model a run saved: for raw photos, the SfM model, to pose the photos identically on
    resume (a run saved before models were kept is posed again, with a warning); for posed photos, the
    model their sparse points were triangulated into (:mod:`t23d.data.triangulate`), to read the same
    points. None when there is none."""
    from t23d.data.colmap import model_extension

    model_dir = run_dir / SFM_MODEL_DIR
    if read_scene(run_dir).get("source_format") != "images":
        return model_dir if model_extension(model_dir) is not None else None
    if model_extension(model_dir) is None:
        logger.warning(
            "%s has no saved SfM model (%s/); the photos are posed again, so the cameras may differ slightly "
            "from the checkpoint's",
            run_dir,
            SFM_MODEL_DIR,
        )
        return None
    return model_dir


def training_photos(run_dir: Path, cfg: ReconstructConfig, scene: dict[str, Any], dataset: Any = None):
    """The run's training photos with their cameras (normalised frame), for a texture projected from
    photos (:class:`t23d.texture.photos.PhotoSet`). ``dataset`` is the loaded input; None loads
    ``cfg.input`` again (posed with the run's saved SfM model) and checks its cameras are the run's."""
    from t23d.data import load_dataset
    from t23d.texture.photos import PhotoSet

    if dataset is None:
        if not cfg.input or not Path(cfg.input).exists():
            raise T23dError(
                f"texture_source 'photos' reads the run's photos from {cfg.input!r}, which is not there any "
                "more: restore it, or export with --texture-source field"
            )
        dataset = load_dataset(Path(cfg.input), cfg.data, _saved_sfm_model(run_dir), min_size=SSIM_WINDOW)
        run_c2w = np.asarray(scene["c2w"], dtype=np.float64)
        c2w = dataset.c2w.double().numpy()
        if c2w.shape != run_c2w.shape or np.abs(c2w - run_c2w).max() > 1e-3:
            raise T23dError(
                f"the photos in {cfg.input} are not posed as when {run_dir} was trained (the folder changed): "
                "export with --texture-source field, or train a new run on the photos as they are now"
            )
    idx = list(scene["train_indices"])
    cams = _camera_tuples(cameras_of(scene, idx))
    cams = [(np.asarray(c), np.asarray(k), h, w) for c, k, h, w in cams]
    images = [dataset.images[i].numpy() for i in idx]
    alphas = None if dataset.alphas is None else [dataset.alphas[i].numpy() for i in idx]
    return PhotoSet(cams, images, alphas)


def _warm_starts(cfg: ReconstructConfig) -> bool:
    """Whether ``cfg``'s SDF field starts from a density warm start (:mod:`t23d.reconstruct.warm_start`)."""
    return cfg.field.geometry == "sdf" and cfg.warm_start.steps > 0


def load_reconstruct_config(run_dir: Path) -> ReconstructConfig:
    """The resolved config saved in a reconstruct run directory."""
    return read_run_config(run_dir, "reconstruct", ReconstructConfig)


def load_reconstruct_state(
    run_dir: Path, device: torch.device | None = None
) -> tuple[ReconstructConfig, TrainingState]:
    """Config and trained state of a reconstruct run (latest checkpoint)."""
    from t23d.reconstruct.fewview import apply_visible_levels

    cfg = load_reconstruct_config(run_dir)
    device = device or resolve_device(cfg.device)
    assert cfg.background is not None  # resolved when the run was created
    scene = read_scene(run_dir)
    state = build_reconstruct_state(
        cfg, cfg.background, device, len(scene["c2w"]), list(scene["train_indices"])
    )
    state.load(run_dir / "checkpoints")
    apply_visible_levels(state.field, cfg, state.step)  # the encoding as it was at that step
    return cfg, state


def read_scene(run_dir: Path) -> dict[str, Any]:
    """The run's ``scene.json``."""
    path = run_dir / SCENE_JSON
    if not path.is_file():
        raise T23dError(f"{run_dir} has no {SCENE_JSON}; it was not written by 't23d reconstruct'")
    return json.loads(path.read_text())


@torch.no_grad()
def evaluate_views(
    cfg: ReconstructConfig, state: TrainingState, dataset: Any, background_color: torch.Tensor | None
) -> dict[str, Any]:
    """PSNR/SSIM of held-out views (rendered on the eval background, photos composited on the same), with
    the neutral appearance code (the training photos' average exposure and lighting) and the poses as given
    (held-out photos have no learnt pose correction)."""
    from t23d.reconstruct.metrics import psnr, ssim
    from t23d.render.rays import camera_rays
    from t23d.render.volume import measured_occupancy, render_images

    state.field.eval()
    state.background.eval()
    occupancy = measured_occupancy(state.field, state.occupancy)
    dev = next(state.field.parameters()).device
    per_view = []
    for i in dataset.test_indices:
        cams = Cameras(
            dataset.c2w[i : i + 1], dataset.intrinsics[i : i + 1], dataset.width, dataset.height
        ).to(dev)
        out = render_images(
            state.field,
            state.background,
            cams,
            cfg.render,
            occupancy,
            appearance=photo_appearance(state),
        )
        pred = out["rgb"][0].cpu()
        gt = dataset.images[i]
        if dataset.alphas is not None:
            a = dataset.alphas[i][..., None]
            rays = camera_rays(cams)
            h, w = dataset.height, dataset.width
            eval_bg = state.background(rays.directions, origins=rays.origins).reshape(h, w, 3).cpu()
            fg = gt - (1 - a) * (background_color if background_color is not None else 0)
            gt = fg + (1 - a) * eval_bg
        per_view.append(
            {"image": str(dataset.image_paths[i].name), "psnr": psnr(pred, gt), "ssim": ssim(pred, gt)}
        )
    if not per_view:
        return {"num_test_views": 0}
    return {
        "num_test_views": len(per_view),
        "psnr": float(np.mean([v["psnr"] for v in per_view])),
        "ssim": float(np.mean([v["ssim"] for v in per_view])),
        "per_view": per_view,
    }


def run_reconstruct(
    cfg: ReconstructConfig,
    out_parent: Path = Path("outputs"),
    *,
    resume: Path | None = None,
    callback: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Run (or resume) a reconstruct job; returns the run directory (see ``optimise.generate.run_generate``).

    The run directory is locked (:mod:`t23d.run.lock`) from its creation, or from the start of a resume,
    to the end."""
    with contextlib.ExitStack() as held:
        return _run_reconstruct(held, cfg, out_parent, resume, callback, should_stop)


def _run_reconstruct(
    held: contextlib.ExitStack,
    cfg: ReconstructConfig,
    out_parent: Path,
    resume: Path | None,
    callback: StepCallback | None,
    should_stop: Callable[[], bool] | None,
) -> Path:
    from t23d.data import load_dataset

    if resume is not None:
        run_dir, _, cfg = open_resumed_run(
            held, resume, "reconstruct", cfg, load_reconstruct_config, validate_reconstruct_config,
            first_stage=WARM_START_DIR,
        )  # fmt: skip
    else:
        if not cfg.input:
            raise T23dError("no input given; pass photos or a camera file, e.g. t23d reconstruct photos/")
        validate_reconstruct_config(cfg)
        check_writable(Path(out_parent))
    device = resolve_device(cfg.device)
    t_load = time.perf_counter()
    # held-out SSIM needs images of at least its window's size
    saved_sfm = _saved_sfm_model(run_dir) if resume is not None else None
    dataset = load_dataset(Path(cfg.input), cfg.data, saved_sfm, min_size=SSIM_WINDOW)
    t_load = time.perf_counter() - t_load
    if not dataset.train_indices:
        raise T23dError(f"{cfg.input}: no training images after the hold-out split")
    if cfg.export.albedo_reference is not None:
        from t23d.data.albedo_reference import parse_albedo_reference, reference_photo_index

        reference_photo_index(
            parse_albedo_reference(cfg.export.albedo_reference), [str(p) for p in dataset.image_paths]
        )
    has_alpha = dataset.alphas is not None
    capture: dict[str, Any] = {}
    if resume is None:
        cfg, capture = resolve_for_capture(cfg, dataset)
    else:
        capture = dict(read_run(run_dir).get("capture") or {})
    bg_color = torch.tensor(_DATA_BACKGROUND[cfg.data.background]) if has_alpha else None
    assert cfg.background is not None  # resolved above (new runs) or saved resolved (resumes)
    state = build_reconstruct_state(
        cfg,
        cfg.background,
        device,
        dataset.num_images,
        list(dataset.train_indices),
        image_size=(dataset.height, dataset.width),
    )
    if resume is None:
        warm_start = _warm_starts(cfg)
        run_dir = create_locked_run(held, Path(out_parent), Path(cfg.input).resolve().name or "scene")
        write_json_atomic(run_dir / SCENE_JSON, scene_record(dataset))
        if dataset.sfm_model is not None:
            from t23d.data.colmap import write_reconstruction

            write_reconstruction(dataset.sfm_model, run_dir / SFM_MODEL_DIR)
        record_new_run(
            run_dir,
            cfg,
            "reconstruct",
            input=str(cfg.input),
            source_format=dataset.source_format,
            num_images=dataset.num_images,
            num_train=len(dataset.train_indices),
            num_test=len(dataset.test_indices),
            image_size=[dataset.width, dataset.height],
            sfm=dataset.sfm_report,
            triangulation=dataset.triangulation,
            capture=capture,
            scale=dataset.scale_report,
            steps=cfg.steps,
            seed=cfg.seed,
            device=str(device),
            implementation=state.field.implementation,
            torch=torch.__version__,
            timings={"load_s": t_load},
        )
    else:
        from t23d.run.checkpoint import has_checkpoint

        warm_start = _warm_starts(cfg) and not has_checkpoint(run_dir / "checkpoints")
        if not warm_start:  # (a warm start saves the main run's first checkpoint when it ends)
            state.load(run_dir / "checkpoints")
        record_resumed_run(run_dir, cfg, state.step)
    timings = dict(read_run(run_dir).get("timings", {}))
    with recorded_run(run_dir, state):
        if resume is not None:
            logger.info("resumed from step %d", state.step)
        logger.info(
            "training on %d photos (%dx%d) for %d steps on %s (%s hash grid)",
            len(dataset.train_indices),
            dataset.width,
            dataset.height,
            cfg.steps,
            device,
            state.field.implementation,
        )
        data = _train_images(dataset, bg_color, device, cfg)

        def train() -> None:
            if warm_start:
                from t23d.reconstruct.warm_start import run_warm_start

                train_cams = _camera_tuples(cameras_of(read_scene(run_dir), list(dataset.train_indices)))
                report = run_warm_start(cfg, state, data, run_dir, train_cams, callback, should_stop)
                update_run(run_dir, warm_start=report)
            if (
                cfg.field.geometry == "sdf" and cfg.warm_start.unseen_weight > 0
            ):  # the opt-in pull (resumes too)
                from t23d.reconstruct.warm_start import load_unseen

                data.unseen = load_unseen(run_dir, device)
            train_photometric(cfg, state, data, run_dir, callback, should_stop)

        timed_training(run_dir, state, timings, train)
        t0 = time.perf_counter()
        metrics = evaluate_views(cfg, state, dataset, bg_color)
        metrics["steps"] = state.step
        metrics["train_s"] = timings["train_s"]
        metrics.update(capture)
        metrics.update(learnt_capture_report(state, dataset))
        recorded = read_run(run_dir)
        if recorded.get("sfm"):
            metrics["registration"] = {k: recorded["sfm"].get(k) for k in REGISTRATION_KEYS}
        if recorded.get("scale"):
            metrics["scale"] = recorded["scale"]
        if recorded.get("triangulation"):
            metrics["triangulation"] = recorded["triangulation"]
        metrics["support_plane"] = read_scene(run_dir).get("support_plane")
        write_json_atomic(run_dir / "metrics.json", metrics)
        timings["eval_s"] = time.perf_counter() - t0
        logger.info(
            "held-out views: PSNR %.2f dB, SSIM %.4f",
            metrics.get("psnr", float("nan")),
            metrics.get("ssim", float("nan")),
        )
        summary = {k: metrics.get(k) for k in ("psnr", "ssim", "num_test_views")}
        update_run(run_dir, metrics=summary)
        export_info = None
        if cfg.export_at_end:
            export_info = timed_export(
                run_dir, timings, lambda: export_reconstruct_run(run_dir, cfg, state, dataset=dataset)
            )
        update_run(
            run_dir, status="completed", completed_steps=state.step, timings=timings, export=export_info
        )
        return run_dir


def export_reconstruct_run(
    run_dir: Path,
    cfg: ReconstructConfig,
    state: TrainingState,
    export_cfg: Any = None,
    out_dir: Path | None = None,
    dataset: Any = None,
) -> dict[str, Any]:
    """Export the asset of a reconstruct run in the input's world frame (converted to glTF Y-up).

    ``export_cfg.texture`` picks what the texture holds: ``radiance`` (the neutral appearance code: the
    training photos' average exposure and lighting) or ``albedo`` (needs the run's shading model). The
    fidelity check compares the asset with field renders of the same quantity. ``albedo_reference``
    scales the albedo to a grey card marked in a photo (:mod:`t23d.reconstruct.calibrate`).
    ``export_cfg.texture_source == "photos"`` projects the training photos (``dataset``, or loaded again
    from ``cfg.input``, posed as the run was) onto the mesh."""
    from t23d.common.errors import ConfigError
    from t23d.export import export_asset
    from t23d.render.field_fns import (
        bake_color_fn_of,
        density_fn_of,
        normal_fn_of,
        render_depth_fn_of,
        render_field_fn_of,
        sdf_fn_of,
    )
    from t23d.render.volume import measured_occupancy, step_size
    from t23d.run.rundir import slug

    scene = read_scene(run_dir)
    export_cfg = export_cfg or cfg.export
    model = state.extras.get("appearance")
    if export_cfg.texture == "albedo" and (model is None or not model.shaded):  # type: ignore[union-attr]
        raise ConfigError(
            "texture: 'albedo' needs a run trained with a shading model (appearance.shading 'sh', or "
            f"'t23d reconstruct --texture albedo'); {run_dir} learnt radiance only: use texture 'radiance'"
        )
    appearance = photo_appearance(state, None, export_cfg.texture)
    state.field.eval()
    for module in state.extras.values():
        module.eval()
    occupancy = measured_occupancy(state.field, state.occupancy)
    calibration = None
    if export_cfg.albedo_reference is not None and appearance is not None:
        from t23d.data.albedo_reference import parse_albedo_reference
        from t23d.reconstruct.calibrate import albedo_gain

        gain, calibration = albedo_gain(
            state.field,
            model,
            occupancy,
            cfg.render,
            scene,
            parse_albedo_reference(export_cfg.albedo_reference),
        )
        appearance = dataclasses.replace(appearance, albedo_gain=gain)
    cams = cameras_of(scene, scene["test_indices"] or scene["train_indices"][:8])
    fidelity = _camera_tuples(cams)
    sdf_fn = sdf_fn_of(state.field)
    base = over_support(
        sdf_fn,
        scene,
        torch.tensor(scene["aabb"], dtype=torch.float32),
        cfg.data,
        color_fn=bake_color_fn_of(
            state.field,
            torch.tensor(scene["aabb"], dtype=torch.float32),
            export_cfg.resolution,
            appearance=photo_appearance(state, None, "radiance"),  # the photos' colours, as the points have
            normal_eps=cfg.render.normal_eps,
        ),
        sparse=lambda: sparse_point_colors(
            _saved_sfm_model(run_dir), scene, (read_run(run_dir).get("scale") or {}).get("factor", 1.0)
        ),
    )
    aabb = base.aabb
    voxel = float((aabb[1] - aabb[0]).max()) / export_cfg.resolution
    report = export_asset(
        density_fn_of(state.field),
        base.bake_color_fn(
            bake_color_fn_of(
                state.field,
                aabb,
                export_cfg.resolution,
                appearance=appearance,
                normal_eps=cfg.render.normal_eps,
            ),
            lift=2.0 * voxel,  # above the colour segment's reach (1.5 voxels) along a level view
        ),
        aabb,
        out_dir or run_dir / "export",
        slug(Path(cfg.input).resolve().name or "scene"),
        export_cfg,
        world_transform=np.asarray(scene["world_from_normalised"], dtype=np.float64),
        render_field_fn=render_field_fn_of(
            state.field,
            cfg.render,
            occupancy,
            appearance=appearance,
            supersample=export_cfg.fidelity_supersample,
            # unmasked photos: the field holds the surroundings too, which the asset leaves out
            region=None if scene.get("has_alpha", True) else base.region_fn(),
        ),
        fidelity_cameras=fidelity,
        render_step=step_size(state.field, cfg.render),
        sdf_fn=base.sdf_fn,
        render_depth_fn=render_depth_fn_of(state.field, cfg.render, occupancy),
        tsdf_cameras=_camera_tuples(cameras_of(scene, scene["train_indices"])),
        normal_fn=normal_fn_of(
            state.field,
            eps=float((state.field.aabb()[1] - state.field.aabb()[0]).max()) / export_cfg.resolution,
        ),
        cut_plane=base.mesh_cut,
        fidelity_cut=base.cut if base.extended else None,
        texture_calibration=calibration,
        support_fillet=base.fillet,
        region=base.region,
        photos=training_photos(run_dir, cfg, scene, dataset)
        if export_cfg.texture_source == "photos"
        else None,
    )
    return report.to_dict() if hasattr(report, "to_dict") else dataclasses.asdict(report)
