"""Configuration of a ``t23d refine`` run (Magic3D-style stage 2) and its presets."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as _field
from typing import Literal

from t23d.common.schedule import Constant, Schedule
from t23d.export.config import ExportConfig
from t23d.field.background import BackgroundConfig, MLPBackground
from t23d.field.color_field import ColorFieldConfig
from t23d.field.hashgrid import HashGridConfig
from t23d.guidance.config import GuidanceConfig, StableDiffusionGuidanceConfig
from t23d.optimise.config import PreviewConfig
from t23d.render.cameras import RandomCameraConfig
from t23d.render.diffrast import RasterizerConfig
from t23d.render.shading import ShadingConfig


@dataclass
class MeshInitConfig:
    """How the initial mesh is extracted from the stage-1 field (the export stage's ``extract_mesh``)."""

    resolution: int = 256
    """Density-grid cells along the longest side of the field's box."""
    faces: int = 100_000
    """Triangles of the mesh that is optimised (decimated to this after marching cubes)."""
    threshold: float | None = None
    """Density iso-level; None = automatic (``ln 2 / render step`` of the stage-1 renderer; the zero
    level for SDF fields)."""
    min_component_fraction: float = 0.05
    """Drop floaters smaller than this fraction of the largest component's area."""
    fill_cavities: bool = True
    """Mesh only the outer surface (fill closed empty pockets first)."""
    visibility_views: int = 64
    """Remove faces no view around the mesh sees (0 keeps all)."""
    surface_optical_depth: float | None = None
    """Move vertices onto the surface seen from outside (see ``ExportConfig``); None keeps them."""
    chunk_size: int = 262_144
    """Points per density query."""


@dataclass
class RefineOptimConfig:
    """Adam with one learning rate per part."""

    lr_offsets: float = 1e-4
    """Learning rate of the vertex offsets (world units per step, roughly: Adam's steps are ~lr)."""
    lr_grid: float = 1e-2
    """Learning rate of the colour field's hash table."""
    lr_mlp: float = 1e-3
    """Learning rate of the colour field's MLP."""
    lr_background: float = 1e-3
    """Learning rate of the background (initialised from the stage-1 run's)."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam's betas."""
    eps: float = 1e-15
    """Adam's epsilon."""


@dataclass
class MeshRegularisersConfig:
    """Loss weights of the refine stage, each a schedule over steps."""

    laplacian: Schedule = _field(default_factory=lambda: Constant(1.0))
    """Weight of the offsets' Laplacian (dimensionless: in units of the mean edge length)."""
    normal_consistency: Schedule = _field(default_factory=lambda: Constant(1.0))
    """Weight of ``1 - cos`` between adjacent face normals."""


@dataclass
class DistillConfig:
    """Initialising the colour field from the stage-1 field's colours on the mesh surface."""

    steps: int = 500
    """Adam steps of the fit (0 = start from random colours)."""
    num_points: int = 65_536
    """Surface points (area-uniform) whose stage-1 colours are the targets."""
    batch_size: int = 16_384
    """Points per step."""
    lr: float = 1e-2
    """Learning rate of the fit (hash table; the MLP uses a tenth)."""


@dataclass
class RefineConfig:
    """Everything a ``t23d refine`` run needs; written resolved to ``config.yaml`` in its run directory.

    ``prompt``, ``negative_prompt``, ``guidance`` and ``background`` are taken from the stage-1 run when
    the refine run is created (``--prior`` replaces the prior's ``pretrained``).
    """

    source: str = ""
    """The stage-1 (``t23d generate``) run directory the mesh and colours come from."""
    prompt: str = ""
    """The stage-1 run's prompt."""
    negative_prompt: str = ""
    """The stage-1 run's negative prompt."""
    bound: float = 1.0
    """Half-size of the stage-1 field's cube ``[-bound, bound]^3`` (world units), where the colour
    field lives."""
    seed: int = 0
    """Random seed: cameras, timesteps, noise, colour-field initialisation."""
    steps: int = 5000
    """Optimisation steps."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` uses CUDA when available."""
    mesh: MeshInitConfig = _field(default_factory=MeshInitConfig)
    """Initial mesh extraction."""
    color: ColorFieldConfig = _field(default_factory=ColorFieldConfig)
    """The colour field."""
    distill: DistillConfig = _field(default_factory=DistillConfig)
    """Colour-field initialisation from the stage-1 colours."""
    camera: RandomCameraConfig = _field(default_factory=lambda: RandomCameraConfig(resolution=512))
    """Random training cameras; ``resolution`` is the render size (Magic3D: 512)."""
    shading: ShadingConfig = _field(default_factory=lambda: ShadingConfig(albedo_only_steps=0))
    """Random shading modes (albedo / Lambertian / textureless), as stage 1."""
    rasterizer: RasterizerConfig = _field(default_factory=RasterizerConfig)
    """Differentiable rasteriser backend."""
    guidance: GuidanceConfig = _field(default_factory=StableDiffusionGuidanceConfig)
    """The frozen 2D prior (the stage-1 run's unless ``--prior`` is given). For Stable Diffusion the VAE
    input is set to the render resolution, so SDS sees every rendered pixel."""
    background: BackgroundConfig = _field(default_factory=MLPBackground)
    """Background model (the stage-1 run's, with its trained weights)."""
    optim: RefineOptimConfig = _field(default_factory=RefineOptimConfig)
    """Optimiser."""
    regularisers: MeshRegularisersConfig = _field(default_factory=MeshRegularisersConfig)
    """Mesh regulariser weights."""
    checkpoint_every: int = 500
    """Save a checkpoint every this many steps (and always at the end or on Ctrl-C)."""
    keep_checkpoints: int = 2
    """How many checkpoints to keep."""
    preview: PreviewConfig = _field(default_factory=lambda: PreviewConfig(resolution=256))
    """End-of-run previews (rasterised)."""
    export: ExportConfig = _field(
        default_factory=lambda: ExportConfig(faces=50_000, texture_size=2048, normal_map=True)
    )
    """Asset export at the end of the run (straight from the refined mesh; with a normal map baked from the
    refined mesh before decimation)."""
    export_at_end: bool = True
    """Export the asset when training finishes."""


REFINE_PRESETS: tuple[str, ...] = ("fast", "default")


def refine_preset(name: str) -> RefineConfig:
    """Build a named refine preset.

    - ``default``: Magic3D's second stage on a GPU: 512 px renders, 5,000 steps, a 100k-face mesh,
      a 2^19 x 16-level colour grid, 2048 px textures at export.
    - ``fast``: CPU-feasible: 128 px renders, 400 steps, a 20k-face mesh, a smaller colour grid, 1024 px
      textures.
    """
    from t23d.common.errors import ConfigError

    if name == "default":
        return RefineConfig()
    if name == "fast":
        return RefineConfig(
            steps=400,
            mesh=MeshInitConfig(resolution=128, faces=20_000),
            color=ColorFieldConfig(
                grid=HashGridConfig(n_levels=12, log2_hashmap_size=17, max_resolution=1024), hidden_dim=32
            ),
            distill=DistillConfig(steps=200, num_points=32_768, batch_size=8192),
            camera=RandomCameraConfig(resolution=128),
            checkpoint_every=100,
            preview=PreviewConfig(num_views=4, resolution=128, turntable_frames=12),
            export=ExportConfig(faces=20_000, texture_size=1024, resolution=128, normal_map=True),
        )
    raise ConfigError(f"unknown refine preset {name!r}; accepted: {', '.join(REFINE_PRESETS)}")


def validate_refine_config(cfg: RefineConfig) -> None:
    """Refuse a bad ``refine`` config before any work starts: every number finite, the shared training
    and score-distillation rules, the mesh initialisation (its grid bounded by memory like an export's)
    and the export options when the run exports at the end."""
    from t23d.common.config import Rule, is_int
    from t23d.export.config import check_export_memory, validate_export_config
    from t23d.optimise.config import sds_rules
    from t23d.run.config import training_rules, validate_training_config

    rules = (
        training_rules()
        + sds_rules()
        + [
            Rule("mesh.resolution", is_int(2), "an integer >= 2"),
            Rule("mesh.faces", is_int(4), "an integer >= 4"),
            Rule("distill.steps", is_int(0), "an integer >= 0"),
            Rule("distill.num_points", is_int(1), "an integer >= 1"),
            Rule("distill.batch_size", is_int(1), "an integer >= 1"),
        ]
    )
    validate_training_config(cfg, rules)
    check_export_memory(cfg.mesh.resolution, option="config key 'mesh.resolution' {}")
    if cfg.export_at_end:
        validate_export_config(cfg.export)
