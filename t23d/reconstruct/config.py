"""Configuration of a ``t23d reconstruct`` run and its presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Literal

from t23d.common.schedule import Constant, Schedule
from t23d.data.config import DataConfig
from t23d.export.config import ExportConfig
from t23d.field.appearance import AppearanceConfig
from t23d.field.background import BackgroundConfig, ContractedBackground, RandomBackground
from t23d.field.hashgrid import HashGridConfig
from t23d.field.nerf import DensityBlobConfig, FieldConfig
from t23d.field.sdf import SDFTrainingConfig, sdf_training_for
from t23d.reconstruct.fewview import FewViewConfig
from t23d.reconstruct.free_space import FreeSpaceConfig
from t23d.reconstruct.ray_sampling import RaySamplingConfig
from t23d.render.occupancy import OccupancyGridConfig
from t23d.render.pose_refine import PoseRefinementConfig
from t23d.render.volume import RenderConfig
from t23d.run.config import OptimConfig


def photo_export(**changes) -> ExportConfig:
    """The asset stage of photo runs: the input's world frame, the colour seen around the normal, and
    vertices moved onto the surface the photos see (``surface_optical_depth`` 0.2)."""
    return ExportConfig(origin="world", color_mode="normal_view", surface_optical_depth=0.2, **changes)


def _photo_field() -> FieldConfig:
    return FieldConfig(
        view_dependent=True,
        density_activation="exp",
        density_bias=-1.0,
        blob=DensityBlobConfig(kind="none"),
        color_num_hidden_layers=2,
    )


@dataclass
class WarmStartConfig:
    """A density warm start for SDF geometry (:mod:`t23d.reconstruct.warm_start`): train a density
    field first, fuse its depth into a TSDF and fit the SDF to it, so that NeuS training starts from
    the photographed shape (concavities carved) rather than a sphere. Unused by density runs."""

    steps: int = 0
    """Density steps before SDF training; 0 starts the SDF from a sphere."""
    views: int = 24
    """Training cameras (evenly spread) whose depth is fused."""
    view_size: int = 96
    """Longer side (pixels) of those depth renders."""
    resolution: int = 128
    """TSDF lattice cells along the field's box."""
    fit_steps: int = 200
    """Regression steps fitting the SDF to the fused shape (4,096 points each)."""
    rays_per_batch: int = 2048
    """Rays per density step (the main run's own count applies to the SDF steps). 2,048 carved the bowl
    at half the cost of 4,096: the warm start needs the shape, not the fine colours."""
    unseen_weight: float = 0.0
    """Weight of the pull that keeps space no warm-start view observed, near the fused surface, at the
    warm start's signed distance during SDF training (L1, world units; 0: off, the default). No photo
    pulls on an unseen underside, but the hash grid's shared coarse levels carry every "more solid here"
    of the seen sides below it. Measured at 1.0 (benchmarks/RESULTS.md, issue 8, session 12): the
    box+sphere's flat, never-seen bottom kept flat (Chamfer-L1 0.0076 -> 0.0058), but the rounded duck
    worse (0.0044 -> 0.0077), so it is opt-in for objects with a flat base."""
    unseen_points: int = 1024
    """Points of that never-observed shell drawn per SDF step."""


@dataclass
class ReconstructConfig:
    """Everything a ``t23d reconstruct`` run needs; written resolved to ``config.yaml``."""

    input: str = ""
    """The input path (transforms.json / Blender folder / COLMAP folder / folder of photos)."""
    data: DataConfig = _field(default_factory=DataConfig)
    """How the photos are read."""
    seed: int = 0
    """Random seed."""
    steps: int = 3000
    """Optimisation steps."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` uses CUDA when available."""
    rays_per_batch: int = 4096
    """Training rays per step (random pixels of random training images)."""
    field: FieldConfig = _field(default_factory=_photo_field)
    """The NeRF field (view-dependent colour for photos)."""
    background: BackgroundConfig | None = None
    """Background model; None chooses: random colours when the photos have alpha (the object alone is
    learnt), else a coarse NeRF of everything beyond the field's box in contracted space (the
    surroundings, with their parallax; see :class:`t23d.field.background.ContractedBackground`)."""
    render: RenderConfig = _field(default_factory=lambda: RenderConfig(num_samples=512))
    """Ray sampling."""
    optim: OptimConfig = _field(default_factory=lambda: OptimConfig(lr_grid=1e-2, lr_mlp=1e-2))
    """Optimiser."""
    distortion: Schedule = _field(default_factory=lambda: Constant(0.0))
    """Weight of mip-NeRF 360's distortion loss (concentrates each ray's weight on one surface; against
    fog and floaters of density fields)."""
    sdf_training: SDFTrainingConfig = _field(default_factory=SDFTrainingConfig)
    """Eikonal and curvature losses (SDF geometry only)."""
    warm_start: WarmStartConfig = _field(default_factory=WarmStartConfig)
    """Density warm start of SDF geometry (off by default)."""
    ground: Literal["auto", "off"] = "off"
    """``auto``: an SDF run whose photos stand the object on a support plane (``data.support_plane``,
    unmasked photos) makes that plane part of its geometry exactly (``field.ground_plane``, set when the
    run starts): the field's SDF is the union of the learnt one and the plane's, the warm start's shape
    is cut above the plane before the SDF is fitted to it, and the curvature loss leaves out samples on
    the plane. The learnt surface, which is exported, then has no crease with the table to round into a
    fillet. ``off`` (the default): the table is learnt like the rest and cut off at export. Opt-in
    because it measured worse (benchmarks/RESULTS.md, session 18): on the unmasked monkey-head capture
    the fillet went, but space under the back of the head filled (Chamfer-L1 0.0066 -> 0.0179)."""
    view_dependence: Literal["auto", "field"] = "auto"
    """Whether the colour depends on the view direction. ``auto`` (the default): unmasked photos learn
    view-independent colour (``field.view_dependent`` off, set when the run starts), masked photos keep
    ``field.view_dependent``. The asset bakes one colour per surface point, and in unmasked captures a
    view-dependent colour also let the field fit the surroundings' changes with the object's surface: on
    the monkey head in a room it gave 31.28 dB / Chamfer-L1 0.0058 under fixed light against 28.25 /
    0.0071, and +0.5 and +2.4 dB under changing light (benchmarks/RESULTS.md, session 23). ``field``:
    ``field.view_dependent`` as set, for every capture."""
    appearance: AppearanceConfig = _field(default_factory=lambda: AppearanceConfig(local_codes="auto"))
    """Shading model (albedo lit by a learnt environment) and per-photo appearance codes (local light
    codes ``auto``: on for unmasked photos, :func:`t23d.reconstruct.capture.local_codes_for`)."""
    pose_refinement: PoseRefinementConfig = _field(default_factory=PoseRefinementConfig)
    """Optional learnt corrections of the photos' camera poses."""
    few_view: FewViewConfig = _field(default_factory=FewViewConfig)
    """When and how sparse captures are regularised (resolved into the fields below at the start)."""
    visible_levels: Schedule | None = None
    """Hash-grid levels visible at each step, coarse to fine (FreeNeRF-style frequency annealing); None:
    all levels from the start."""
    sparse_points: Schedule = _field(default_factory=lambda: Constant(0.0))
    """Weight of the loss pulling the surface through the capture's SfM points (when it has any)."""
    sparse_points_per_step: int = 1024
    """SfM points drawn per step for that loss."""
    sparse_points_max_distance: Schedule = _field(default_factory=lambda: Constant(0.05))
    """SfM points further than this from the surface (normalised units) give that loss no gradient
    (outliers); the few-view plan starts it far and shrinks it (``FewViewConfig.sparse_points_reach``)."""
    free_space: FreeSpaceConfig = _field(default_factory=FreeSpaceConfig)
    """The free-space loss along the rays from each camera to the sparse points it saw (opt-in:
    ``free_space.mode: auto`` for photos without masks; :mod:`t23d.reconstruct.free_space`)."""
    ray_sampling: RaySamplingConfig = _field(default_factory=RaySamplingConfig)
    """How each step's training pixels are drawn: uniformly, or partly by an error map
    (:mod:`t23d.reconstruct.ray_sampling`)."""
    lr_decay_start: int = 1000
    """Learning rates decay exponentially (to 10% at the last step) after this step."""
    checkpoint_every: int = 1000
    """Save a checkpoint every this many steps (and at the end or on Ctrl-C)."""
    keep_checkpoints: int = 2
    """How many checkpoints to keep."""
    eval_resolution_scale: float = 1.0
    """Held-out views are rendered at this fraction of the image size for metrics.json."""
    export: ExportConfig = _field(default_factory=photo_export)
    """Asset export at the end of the run (in the input's world frame by default)."""
    export_at_end: bool = True
    """Export the asset when training finishes."""


PRESETS: tuple[str, ...] = ("fast", "default", "quality")
GEOMETRIES: tuple[str, ...] = ("density", "sdf")
DEFAULT_GEOMETRY = "sdf"
"""The geometry photo runs use unless ``--geometry`` says otherwise: a signed distance gives a clean
surface where a density level set is noise (plain-coloured surfaces; measured in benchmarks/RESULTS.md,
issue 8)."""
SDF_DEFAULT_STEPS = 2400
"""SDF steps of the ``default`` preset, after its density warm start (:data:`SDF_WARM_START_STEPS`). The
warm start (~3 CPU-min), 2,400 SDF steps (0.3-0.5 CPU-s each since the occupancy grid forgets where the
surface was) and the export fit the 13-CPU-minute budget of a 100-photo run: the bowl, the costliest
scene, used 10 (benchmarks/RESULTS.md, issue 8)."""
SDF_WARM_START_STEPS = 300
"""Density steps of the warm start of the ``default`` and ``quality`` SDF presets: from a sphere an
SDF never carves a concavity the silhouettes do not show (a bowl came out lidded: Chamfer-L1 0.066); 300
density steps of 2,048 rays (~3 CPU-min with the fusion and the fit) carve it (0.0087), and the plain
duck keeps its clean surface (0.0046). ``fast`` keeps the sphere start (smoke runs; not measured)."""


def reconstruct_preset(name: str, geometry: str | None = None) -> ReconstructConfig:
    """``fast`` (smoke runs, tests), ``default`` (CPU-friendly, minutes), ``quality`` (GPU), with
    ``geometry`` ``density`` or ``sdf`` (None: :data:`DEFAULT_GEOMETRY`). SDF presets use a signed
    distance on the same hash grid (NeuS rendering, eikonal + curvature, sharpness floor scaled to the
    run's steps) and export its zero level set (no surface refinement needed); ``default`` and
    ``quality`` start the SDF from a density warm start (:data:`SDF_WARM_START_STEPS`)."""
    from t23d.common.errors import ConfigError

    geometry = DEFAULT_GEOMETRY if geometry is None else geometry
    if geometry not in GEOMETRIES:
        raise ConfigError(f"unknown geometry {geometry!r}; accepted: {', '.join(GEOMETRIES)}")
    cfg = _density_preset(name)
    if geometry == "sdf":
        if name == "default":
            steps = SDF_DEFAULT_STEPS
            cfg = dataclasses.replace(
                cfg, steps=steps, lr_decay_start=cfg.lr_decay_start * steps // cfg.steps
            )
        cfg = dataclasses.replace(
            cfg,
            field=dataclasses.replace(cfg.field, geometry="sdf"),
            sdf_training=sdf_training_for(cfg.steps, anneal_curvature=True),
            export=dataclasses.replace(cfg.export, surface_optical_depth=None),
        )
        if name != "fast":
            cfg = dataclasses.replace(
                cfg, warm_start=dataclasses.replace(cfg.warm_start, steps=SDF_WARM_START_STEPS)
            )
    return cfg


def _density_preset(name: str) -> ReconstructConfig:
    from t23d.common.errors import ConfigError

    if name == "default":
        return ReconstructConfig()
    if name == "fast":
        return ReconstructConfig(
            steps=300,
            rays_per_batch=2048,
            field=FieldConfig(
                grid=HashGridConfig(n_levels=12, log2_hashmap_size=16, max_resolution=512),
                view_dependent=True,
                density_activation="exp",
                blob=DensityBlobConfig(kind="none"),
            ),
            render=RenderConfig(
                num_samples=256, occupancy=OccupancyGridConfig(resolution=32, warmup_steps=64)
            ),
            lr_decay_start=150,
            checkpoint_every=100,
            export=photo_export(resolution=128, faces=20000, texture_size=512),
        )
    if name == "quality":
        return ReconstructConfig(
            steps=20000,
            rays_per_batch=8192,
            render=RenderConfig(num_samples=1024, occupancy=OccupancyGridConfig(resolution=128)),
            export=photo_export(resolution=384, faces=100000, texture_size=2048),
        )
    raise ConfigError(f"unknown preset {name!r}; accepted: {', '.join(PRESETS)}")


def default_background(cfg: ReconstructConfig, has_alpha: bool) -> BackgroundConfig:
    """The background used when ``cfg.background`` is None: a random colour per image for photos with
    alpha (the field must be transparent there), else the surroundings as a contracted outer field.

    Unmasked photos: on the synthetic COLMAP capture (object in a textured room) the outer field gave
    24.0 dB held-out after 800 fast steps at 128^2 where a direction-only SH environment gave 16.7 dB
    (its fog filled the box) and trained in half the time."""
    if cfg.background is not None:
        return cfg.background
    return RandomBackground() if has_alpha else ContractedBackground()


def validate_reconstruct_config(cfg: ReconstructConfig) -> None:
    """Refuse a bad ``reconstruct`` config before any work starts (no photo loaded, nothing written):
    every number finite, the shared training rules, the loop's own keys, the data options, and the
    export options when the run exports at the end. Errors name the key (and flag), the value and what
    is accepted. Limits that need the photos (the image size left by ``--downscale``) are checked as soon
    as the cameras are read."""
    from t23d.common.config import Rule, is_int, is_number
    from t23d.common.errors import ConfigError
    from t23d.export.config import validate_export_config
    from t23d.run.config import training_rules, validate_training_config

    rules = training_rules() + [
        Rule("rays_per_batch", is_int(1), "an integer >= 1"),
        Rule("lr_decay_start", is_int(0), "an integer >= 0 (a step)"),
        Rule("eval_resolution_scale", is_number(0, 1, open_lo=True), "a number in (0, 1]"),
        Rule("data.downscale", is_int(1), "an integer >= 1", "--downscale"),
        Rule("data.max_image_size", lambda v: v is None or is_int(8)(v), "an integer >= 8 or null"),
        Rule("data.holdout_every", is_int(0), "an integer >= 0 (0 disables the hold-out)"),
        Rule("appearance.shading", lambda v: v in ("none", "sh"), "'none' or 'sh'", "--shading"),
        Rule(
            "appearance.per_image",
            lambda v: v in ("none", "exposure", "lighting"),
            "'none', 'exposure' or 'lighting'",
            "--appearance",
        ),
        Rule(
            "appearance.local_codes",
            lambda v: v == "auto" or is_int(0)(v),
            "'auto' or an integer >= 0 (0: off)",
            "--local-codes",
        ),
        Rule("appearance.local_hidden_dim", is_int(1), "an integer >= 1"),
        Rule("few_view.mode", lambda v: v in ("auto", "on", "off"), "'auto', 'on' or 'off'", "--few-views"),
        Rule("few_view.max_views", is_int(0), "an integer >= 0"),
        Rule("few_view.smooth_sdf", lambda v: v in ("auto", "on", "off"), "'auto', 'on' or 'off'"),
        Rule("pose_refinement.lr", is_number(0), "a number >= 0"),
        Rule("pose_refinement.start_step", is_int(0), "an integer >= 0 (a step)"),
        Rule("warm_start.steps", is_int(0), "an integer >= 0 (0: no warm start)", "--warm-start"),
        Rule("warm_start.views", is_int(1), "an integer >= 1"),
        Rule("warm_start.view_size", is_int(8), "an integer >= 8 (pixels)"),
        Rule("warm_start.resolution", is_int(16), "an integer >= 16"),
        Rule("warm_start.fit_steps", is_int(1), "an integer >= 1"),
        Rule("warm_start.rays_per_batch", is_int(1), "an integer >= 1"),
        Rule("warm_start.unseen_weight", is_number(0), "a number >= 0 (0: off)"),
        Rule("warm_start.unseen_points", is_int(1), "an integer >= 1"),
        Rule("ground", lambda v: v in ("auto", "off"), "'auto' or 'off'"),
        Rule("free_space.mode", lambda v: v in ("auto", "on", "off"), "'auto', 'on' or 'off'"),
        Rule("free_space.weight", is_number(0), "a number >= 0 (0: off)"),
        Rule("free_space.margin", is_number(0), "a number >= 0 (normalised units)"),
        Rule("free_space.samples_per_step", is_int(1), "an integer >= 1"),
        Rule("free_space.cone_px", is_number(0), "a number >= 0 (pixels; 0: the segment alone)"),
        Rule(
            "ray_sampling.mode", lambda v: v in ("auto", "uniform", "error"), "'auto', 'uniform' or 'error'"
        ),
        Rule("ray_sampling.share", is_number(0, 1), "a number in [0, 1]"),
        Rule("ray_sampling.cells", is_int(1), "an integer >= 1"),
        Rule("ray_sampling.memory", is_number(0, 1), "a number in [0, 1]"),
    ]
    validate_training_config(cfg, rules)
    if (
        cfg.appearance.per_image == "lighting"
        and cfg.appearance.shading != "sh"
        and cfg.export.texture != "albedo"
    ):
        raise ConfigError(
            "appearance.per_image (--appearance): 'lighting' needs appearance.shading 'sh' (--shading sh, or "
            "--texture albedo); got shading 'none'. Use --appearance exposure instead"
        )
    if cfg.export_at_end:
        validate_export_config(cfg.export)
