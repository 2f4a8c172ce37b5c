"""Configuration of a ``t23d generate`` run (score distillation) and its presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Literal, Optional

from t23d.common.schedule import Constant, Linear
from t23d.export.config import ExportConfig
from t23d.field.background import BackgroundConfig, ConstantBackground, MLPBackground
from t23d.field.hashgrid import HashGridConfig
from t23d.field.nerf import FieldConfig
from t23d.field.sdf import SDFTrainingConfig, rescale_sdf_training, sdf_training_for
from t23d.guidance.config import GuidanceConfig, StableDiffusionGuidanceConfig, Zero123GuidanceConfig
from t23d.optimise.reference import ReferenceLossConfig, ReferenceViewConfig
from t23d.optimise.regularisers import RegularisersConfig
from t23d.render.cameras import RandomCameraConfig, WorldDistance
from t23d.render.occupancy import OccupancyGridConfig
from t23d.render.shading import ShadingConfig
from t23d.render.volume import RenderConfig
from t23d.run.config import OptimConfig


@dataclass
class PreviewConfig:
    """Previews written during and at the end of a run."""

    num_views: int = 8
    """Views in the preview grid."""
    resolution: int = 128
    """Preview image size in pixels."""
    turntable_frames: int = 24
    """Frames in the turntable GIF (0 disables it)."""
    live_every_s: float = 30.0
    """Seconds between live previews during training (``previews/latest.png``: one view, turning with the
    steps, for ``t23d serve``'s queue); 0 disables them. Rendering takes no random numbers, so training
    stays bit-exact."""


@dataclass
class GenerateConfig:
    """Everything a ``t23d generate`` run needs; written resolved to ``config.yaml`` in the run directory."""

    prompt: str = ""
    """What to generate, e.g. ``"stone grotto"``."""
    negative_prompt: str = ""
    """What the prior should steer away from (used as the unconditional prompt of CFG)."""
    seed: int = 0
    """Random seed: fixes initial weights, cameras, timesteps and noise."""
    steps: int = 10000
    """Optimisation steps."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` uses CUDA when available."""
    field: FieldConfig = _field(default_factory=FieldConfig)
    """The NeRF field."""
    background: BackgroundConfig = _field(default_factory=MLPBackground)
    """Background model."""
    camera: RandomCameraConfig = _field(default_factory=RandomCameraConfig)
    """Random training cameras."""
    render: RenderConfig = _field(default_factory=RenderConfig)
    """Ray sampling."""
    shading: ShadingConfig = _field(default_factory=ShadingConfig)
    """Random shading modes."""
    guidance: GuidanceConfig = _field(default_factory=StableDiffusionGuidanceConfig)
    """The frozen 2D prior."""
    optim: OptimConfig = _field(default_factory=OptimConfig)
    """Optimiser."""
    regularisers: RegularisersConfig = _field(default_factory=RegularisersConfig)
    """Loss weights."""
    sdf_training: SDFTrainingConfig = _field(default_factory=SDFTrainingConfig)
    """Eikonal and curvature losses (SDF geometry only)."""
    checkpoint_every: int = 500
    """Save a checkpoint every this many steps (and always at the end or on Ctrl-C)."""
    keep_checkpoints: int = 2
    """How many checkpoints to keep."""
    preview: PreviewConfig = _field(default_factory=PreviewConfig)
    """End-of-run previews."""
    export: ExportConfig = _field(default_factory=ExportConfig)
    """Asset export at the end of the run."""
    export_at_end: bool = True
    """Export the asset when training finishes."""
    reference: Optional[ReferenceViewConfig] = None
    """Image -> 3D (``--image``): the input photo and its camera, whose losses join SDS; None for text runs."""


PresetName = Literal["fast", "latent", "default", "quality"]
PRESETS: tuple[str, ...] = ("fast", "latent", "default", "quality")


GEOMETRIES: tuple[str, ...] = ("density", "sdf")
DEFAULT_GEOMETRY = "sdf"
"""The geometry of text runs (``t23d generate PROMPT``) unless ``--geometry`` says otherwise. Measured
with the learned toy prior (``benchmarks/RESULTS.md``, "Stage 1 with the learned prior: SDF vs
density"): the SDF field is opaque, so its zero level set exports what SDS learned, where a density
field's fog does not survive marching cubes."""
DENSITY_DEFAULT_PRESETS: tuple[str, ...] = ("latent",)
"""Presets whose default geometry stays ``density``: Latent-NeRF (``latent``) was not measured on SDF."""
TEXT_SDF_EIKONAL = 1.0
"""Eikonal weight of SDS on SDF geometry: ten times the photo runs' (NeuS's 0.1). The prior's gradients
leave the SDF far from a distance and rough below a marching-cubes cell; measured with the learned toy
prior over 3 prompts x 2 seeds (``benchmarks/RESULTS.md``, session 9), with :data:`TEXT_SDF_CURVATURE`
the asset's fidelity to the field rose by 1.0-4.7 dB on whole images on all six runs."""
TEXT_SDF_CURVATURE = 1e-3
"""Curvature weight of SDS on SDF geometry (photo runs: 1e-4; 1e-2 measured worse on one of two)."""
IMAGE_SDF_EIKONAL, IMAGE_SDF_CURVATURE = 0.1, 1e-4
"""Image runs keep the photo runs' SDF weights: the reference view is photo supervision, and the Image
-> 3D measurement was made with them."""
IMAGE_DEFAULT_GEOMETRY = "sdf"
"""The geometry of image runs (``t23d generate --image``) unless ``--geometry`` says otherwise. Measured
with ``benchmarks/bench_image_reference.py`` (``benchmarks/RESULTS.md``, "Image -> 3D"): a density field
fits the photo at the reference camera only and its asset keeps half the silhouette (IoU 0.44-0.54 vs
the field); the SDF's asset matches the field's shape (IoU 0.94-0.95)."""


def default_geometry(name: str) -> str:
    """The geometry a text run with preset ``name`` gets when ``--geometry`` is not given."""
    return "density" if name in DENSITY_DEFAULT_PRESETS else DEFAULT_GEOMETRY


def preset(name: str, geometry: str | None = None) -> GenerateConfig:
    """A named preset (:func:`density_preset`) with ``geometry`` ``density`` or ``sdf`` (None:
    :func:`default_geometry`). SDF presets start from a sphere of radius 0.5, render NeuS-style and
    drop DreamFusion's orientation and sparsity losses (remedies for density fog: an SDF's normals are
    its gradient and its surface is opaque by construction)."""
    from t23d.common.errors import ConfigError

    geometry = default_geometry(name) if geometry is None else geometry
    if geometry not in GEOMETRIES:
        raise ConfigError(f"unknown geometry {geometry!r}; accepted: {', '.join(GEOMETRIES)}")
    cfg = density_preset(name)
    if geometry == "sdf":
        cfg = dataclasses.replace(
            cfg,
            field=dataclasses.replace(cfg.field, geometry="sdf"),
            regularisers=dataclasses.replace(
                cfg.regularisers, orientation=Constant(0.0), sparsity=Constant(0.0)
            ),
            sdf_training=dataclasses.replace(
                sdf_training_for(cfg.steps, floor=(30.0, 300.0)),
                eikonal=Constant(TEXT_SDF_EIKONAL),
                curvature=Constant(TEXT_SDF_CURVATURE),
            ),
        )
    return cfg


def density_preset(name: str) -> GenerateConfig:
    """Build a named preset.

    - ``default``: DreamFusion with Stable Diffusion (64x64 renders, 10k steps, CFG 100) as in
      stable-dreamfusion/threestudio's ``dreamfusion-sd``. Meant for a CUDA GPU.
    - ``fast``: CPU-feasible smoke preset: smaller grid (2^16), 32x32 renders, the VAE fed at 128 px,
      fewer samples, 1,000 steps. With a real-sized SD 2.1 prior on 2 CPU cores a step takes about 2.5 s (UNet 1.6 s, VAE 0.75 s).
    - ``latent``: the CPU-practical text-to-3D preset: ``fast`` in Latent-NeRF mode. The field renders
      Stable Diffusion's 4-channel latent at 32x32 (a 256 px image's latent) straight into the UNet:
      no VAE forward or backward, no shading; an RGB head learns the latent's colour for previews and
      export. On CPU the UNet runs in bfloat16 where the CPU has native bfloat16 dot products
      (``guidance.cpu_dtype: auto``; 2.1x faster than float32 on an EPYC with AVX512-BF16) and in float32
      elsewhere (emulated bfloat16 was 35x slower). See ``benchmarks/RESULTS.md`` (SDS step-time
      breakdown) for its cost beside ``fast``.
    - ``quality``: for GPUs: 128x128 renders, 20k steps, 2048 px textures at export.
    """
    from t23d.common.errors import ConfigError

    if name == "default":
        return GenerateConfig()
    if name == "fast":
        return GenerateConfig(
            steps=1000,
            field=FieldConfig(
                grid=HashGridConfig(n_levels=12, log2_hashmap_size=16, max_resolution=512),
            ),
            camera=RandomCameraConfig(resolution=32),
            render=RenderConfig(
                num_samples=96, occupancy=OccupancyGridConfig(resolution=32, warmup_steps=64)
            ),
            shading=ShadingConfig(albedo_only_steps=200),
            guidance=StableDiffusionGuidanceConfig(vae_resolution=128),
            regularisers=RegularisersConfig(),
            checkpoint_every=100,
            preview=PreviewConfig(num_views=4, resolution=64, turntable_frames=12),
            export=ExportConfig(resolution=128, faces=20000, texture_size=512),
        )
    if name == "latent":
        cfg = density_preset("fast")
        return dataclasses.replace(
            cfg,
            camera=dataclasses.replace(cfg.camera, resolution=32),  # the latent of a 256 px image
            guidance=StableDiffusionGuidanceConfig(input_space="latent", cpu_dtype="auto"),
        )
    if name == "quality":
        return GenerateConfig(
            steps=20000,
            camera=RandomCameraConfig(resolution=128),
            render=RenderConfig(num_samples=512, occupancy=OccupancyGridConfig(resolution=128)),
            export=ExportConfig(resolution=384, faces=100000, texture_size=2048),
        )
    raise ConfigError(f"unknown preset {name!r}; accepted: {', '.join(PRESETS)}")


def sds_rules() -> list:
    """Constraints on the keys of the score-distillation loops (``generate`` and ``refine``): random
    cameras, shading and the prior (:class:`t23d.common.config.Rule` list)."""
    from t23d.common.config import Rule, is_int, is_number, is_range

    prob = is_number(0, 1)
    return [
        Rule("camera.resolution", is_int(8, 4096), "an integer in 8 .. 4096 (pixels)"),
        Rule("camera.batch_size", is_int(1), "an integer >= 1"),
        Rule("camera.azimuth_range", is_range(), "[min, max] degrees with min <= max"),
        Rule("camera.elevation_range", is_range(-90, 90), "[min, max] degrees within [-90, 90]"),
        Rule("camera.distance.distance_range", is_range(0, open_lo=True), "[min, max] with 0 < min <= max"),
        Rule(
            "camera.distance.scale_range", is_range(0, open_lo=True), "[min, max] factors with 0 < min <= max"
        ),
        Rule("camera.distance.radius", is_number(0, open_lo=True), "a number > 0 (world units)"),
        Rule("camera.fov_range", is_range(0, 180, open_lo=True), "[min, max] degrees within (0, 180)"),
        Rule("camera.jitter", is_number(0), "a number >= 0"),
        Rule("camera.eval_distance", is_number(0, open_lo=True), "a number > 0"),
        Rule("camera.eval_fov", is_number(0, 179, open_lo=True), "degrees in (0, 179]"),
        Rule("shading.albedo_probability", prob, "a probability in [0, 1]"),
        Rule("shading.lambertian_probability", prob, "a probability in [0, 1]"),
        Rule("shading.textureless_probability", prob, "a probability in [0, 1]"),
        Rule("shading.albedo_only_steps", is_int(0), "an integer >= 0"),
        Rule("guidance.guidance_scale", is_number(0, open_lo=True), "a finite number > 0"),
        Rule(
            "guidance.grad_clip", lambda v: v is None or is_number(0, open_lo=True)(v), "a number > 0 or null"
        ),
        Rule(
            "guidance.vae_resolution",
            lambda v: is_int(8, 2048)(v) and v % 8 == 0,
            "a multiple of 8 in 8 .. 2048",
        ),
        Rule("guidance.resolution", is_int(8, 1024), "an integer in 8 .. 1024"),
        Rule("guidance.guidance_rescale", is_number(0, 1), "a number in [0, 1]"),
        Rule(
            "guidance.num_views", is_int(1), "an integer >= 1 (the released MVDream checkpoints are 4-view)"
        ),
    ]


def validate_generate_config(cfg: GenerateConfig) -> None:
    """Refuse a bad ``generate`` config before any work starts (nothing loaded, nothing written): every
    number finite, the shared training rules, the cameras, shading, prior and previews, and the export
    options when the run exports at the end. Errors name the key (and flag), the value and what is
    accepted."""
    from t23d.common.config import Rule, is_int
    from t23d.export.config import validate_export_config
    from t23d.run.config import training_rules, validate_training_config

    rules = (
        training_rules()
        + sds_rules()
        + [
            Rule("preview.num_views", is_int(1), "an integer >= 1"),
            Rule("preview.resolution", is_int(8, 4096), "an integer in 8 .. 4096 (pixels)"),
            Rule("preview.turntable_frames", is_int(0), "an integer >= 0 (0 disables the GIF)"),
        ]
    )
    validate_training_config(cfg, rules)
    if cfg.export_at_end:
        validate_export_config(cfg.export)


IMAGE_STEPS: dict[str, int] = {"fast": 400, "default": 1000, "quality": 2000}
"""Optimisation steps of the image presets (threestudio's zero123 recipe: 600 steps at batch 12 -> 4)."""
IMAGE_CAMERA_DISTANCE = 2.5
"""Distance of the SDS and reference cameras of image runs (world units; the field's cube is [-1, 1]^3)."""
IMAGE_CAMERA_FOV = 40.0
"""Vertical field of view (degrees) of image runs: the recentred object (80 % of the frame) is then about
1.46 world units across, inside the field's cube from every side."""


def image_preset(name: str, geometry: str | None = None, steps: int | None = None) -> GenerateConfig:
    """The image -> 3D variant of a preset: threestudio's zero123 recipe on t23d's field.

    Differences from the text preset of the same name (and ``geometry``, see :func:`preset`): the Zero123
    prior (``Zero123GuidanceConfig``, its timestep range annealed over the first third of the run); every
    camera at one distance and field of view (:data:`IMAGE_CAMERA_DISTANCE`, :data:`IMAGE_CAMERA_FOV`, as
    Zero123 assumes) at elevations -10 to 80 degrees; albedo-only shading (the photo's lighting is baked
    into its colours); a white background (Zero123's training renders are on white); and the reference
    view of the input photo (``reference``, rendered at twice the SDS resolution). ``reference.image`` is
    filled in by ``--image``. Step-based schedules follow ``steps`` (None: the preset's).

    - ``fast``: 400 steps, 32 px SDS renders (one view), the VAE fed at 128 px, 64 px reference; CPU runs
      with small priors.
    - ``default``: 1,000 steps, 64 px renders in batches of 4, the VAE at 256 px (Zero123's size), 128 px reference.
    - ``quality``: 2,000 steps, 128 px renders in batches of 4, 256 px reference.
    """
    from t23d.common.errors import ConfigError

    if name not in IMAGE_STEPS:
        raise ConfigError(f"unknown preset {name!r} for --image runs; accepted: {', '.join(IMAGE_STEPS)}")
    base = preset(name, IMAGE_DEFAULT_GEOMETRY if geometry is None else geometry)
    steps = IMAGE_STEPS[name] if steps is None or steps < 1 else steps
    image_weights = dataclasses.replace(
        base.sdf_training, eikonal=Constant(IMAGE_SDF_EIKONAL), curvature=Constant(IMAGE_SDF_CURVATURE)
    )
    base = dataclasses.replace(
        base, steps=steps, sdf_training=rescale_sdf_training(image_weights, base.steps, steps)
    )
    batch = 1 if name == "fast" else 4
    res = base.camera.resolution
    d, fov = IMAGE_CAMERA_DISTANCE, IMAGE_CAMERA_FOV
    camera = dataclasses.replace(
        base.camera,
        batch_size=batch,
        elevation_range=(-10.0, 80.0),
        distance=WorldDistance((d, d)),
        fov_range=(fov, fov),
        eval_distance=d,
        eval_fov=fov,
    )
    ramp = (steps // 12, steps // 3)  # threestudio: steps 50 -> 200 of 600
    guidance = Zero123GuidanceConfig(
        vae_resolution=128 if name == "fast" else 256,
        min_step_percent=Linear(0.7, 0.3, *ramp),
        max_step_percent=Linear(0.98, 0.8, *ramp),
    )
    losses = ReferenceLossConfig(rgb=Linear(5000.0, 10000.0, steps // 6, (2 * steps) // 3))
    return dataclasses.replace(
        base,
        steps=steps,
        camera=camera,
        background=ConstantBackground((1.0, 1.0, 1.0)),
        shading=ShadingConfig(
            albedo_probability=1.0,
            lambertian_probability=0.0,
            textureless_probability=0.0,
            albedo_only_steps=0,
        ),
        guidance=guidance,
        reference=ReferenceViewConfig(resolution=2 * res, losses=losses),
    )
