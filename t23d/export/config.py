"""Configuration of the asset stage (extraction, texturing, export, fidelity check)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from t23d.common.errors import ConfigError

ExportFormat = Literal["glb", "gltf", "obj", "ply"]
FORMATS: tuple[str, ...] = ("glb", "gltf", "obj", "ply")
ORIGINS: tuple[str, ...] = ("center", "bottom", "world")


@dataclass
class ExportConfig:
    """How a trained field becomes a textured asset file."""

    format: ExportFormat = "glb"
    """Output format: "glb" (one binary glTF 2.0 file), "gltf" (.gltf JSON + .bin + .png), "obj" (.obj +
    .mtl + .png) or "ply" (binary PLY with per-vertex sRGB colours; no UVs or texture)."""
    resolution: int = 256
    """Density-grid cells along the longest aabb axis (voxels are cubic); 256 means 257^3 samples."""
    faces: int = 50_000
    """Target triangle count after decimation (decimation runs before UV unwrapping, which is slow on
    dense meshes)."""
    texture_size: int = 1024
    """Texture width and height in texels; must be a power of two (4 ... 16384)."""
    threshold: float | None = None
    """Density iso-level (1/length) of the surface. None = automatic: ln 2 / step, the density at which
    one step is 50 % opaque, where step is the renderer's sample spacing for a trained run (so the
    surface does not move with ``resolution``) and the voxel size otherwise."""
    height: float | None = None
    """If set, scale the asset uniformly so that its height (glTF Y extent) is this many metres."""
    origin: Literal["center", "bottom", "world"] = "center"
    """Where the asset's origin goes: "center" = bounding-box centre at (0, 0, 0); "bottom" = x/z
    centred and lowest point at y = 0 (stands on the ground); "world" = keep the frame given by
    ``world_transform`` (photo reconstructions that must line up with their input)."""
    padding: int = 4
    """Texels of dilation around every UV chart (and of gap between charts), so seams never show the
    background under bilinear filtering and mip-mapping."""
    fill_cavities: bool = True
    """Fill closed empty pockets inside the object before meshing, so only the outer surface is meshed
    (a field's interior is never seen by a camera, and inner shells would waste faces and texture)."""
    visibility_views: int = 64
    """Remove faces that none of this many views around the mesh sees, with their 1-ring kept (inner
    shells and sheets the field leaves inside an object); 0 keeps every face."""
    surface_optical_depth: float | None = None
    """If set, move every vertex after decimation along its normal to where the field's optical depth
    seen from outside reaches this value (0.2 = 18 % opacity), so the mesh sits where renders see the
    surface rather than on the density iso-level. The reconstruct presets use 0.2: on the photo
    benchmark it put the surface within 0.0001 (median) of the true one and lifted the .glb from 27 to
    31 dB, as the texture no longer slides sideways in oblique views. None (the default, used for
    ``generate``) keeps the marching-cubes positions: SDS fields are semi-transparent inside, where a
    ray along the normal accumulates depth more slowly than the grazing rays that make the silhouette,
    and the refined mesh came out 0.6 voxel smaller than the field's silhouette."""
    extraction: Literal["level_set", "tsdf"] = "level_set"
    """Where the surface comes from: "level_set" = the field's own surface (a density field's iso-level,
    an SDF field's zero level); "tsdf" = a truncated signed distance fused from depth maps the field
    renders (the training cameras of photo runs, else ``tsdf_views`` views around the object): the
    surface renders terminate on, for foggy density fields (:mod:`t23d.extract.fusion`)."""
    tsdf_views: int = 64
    """Views on a sphere around the object whose depth maps are fused when no cameras are given."""
    tsdf_view_size: int = 192
    """Width and height in pixels of those depth maps."""
    tsdf_truncation_voxels: float = 4.0
    """TSDF truncation distance, in voxels of the extraction grid."""
    tsdf_backend: Literal["auto", "open3d", "numpy"] = "auto"
    """TSDF fusion implementation: "open3d" (``UniformTSDFVolume``, C++, ~10x faster), "numpy" (no extra
    dependency) or "auto" (open3d when it imports)."""
    min_component_fraction: float = 0.05
    """Drop connected mesh components whose surface area is below this fraction of the largest
    component's (floaters). 0 keeps everything."""
    normal_map: bool = False
    """Bake a tangent-space normal map from the higher-detail surface onto the (decimated) asset and write
    it as glTF ``normalTexture`` with TANGENT attributes (glb/gltf only; OBJ and PLY carry none). The
    detail comes from the refined mesh before decimation (``t23d refine``) or from the field's
    density/SDF gradient (``generate``, ``reconstruct``). On for refine runs and the reconstruct presets,
    where it measured right (benchmarks/RESULTS.md); off by default for SDS fields, whose density
    gradients are noisy."""
    normal_map_size: int | None = None
    """Normal-map width = height in texels (a power of two); None = ``texture_size``."""
    texture: Literal["radiance", "albedo"] = "radiance"
    """What ``baseColorTexture`` holds for photo runs: ``radiance`` (the colours the photos show, their
    lighting baked in: looks like the photos in an unlit viewer) or ``albedo`` (the surface colour with the
    capture's lighting removed by the run's shading model, ``appearance.shading = "sh"``: relights in an
    engine). Fields of ``generate`` runs are albedo fields either way."""
    albedo_reference: str | None = None
    """With ``texture = "albedo"``: a surface of known reflectance marked in one photo,
    ``"PHOTO:x0,y0,x1,y1=REFLECTANCE"`` (a grey card; syntax in :mod:`t23d.data.albedo_reference`). The
    albedo texture is scaled per colour channel so that the card comes out at its reflectance: the shading
    model alone leaves that scale open. None: the albedo as learnt."""
    texture_source: Literal["field", "photos"] = "field"
    """Where the texels' colours come from: ``field`` (the colour field, baked) or ``photos`` (photo runs
    with ``texture = "radiance"``: the training photos projected onto the mesh, the best ``photo_top_k``
    per texel, occlusion-tested against the mesh; the field's colour where no photo sees the surface;
    :mod:`t23d.texture.photos`; textured formats only: PLY's vertex colours stay the field's). On the
    benchmark's 256-px captures it measured 0.1-0.4 dB below the field's bake (benchmarks/RESULTS.md):
    there the field holds the photos' detail and the geometry limits the asset. It is meant for photos
    sharper than the field resolves (not measured)."""
    photo_top_k: int = 3
    """With ``texture_source = "photos"``: how many photos (the ones with the most pixels on the texel's
    surface) are blended per texel."""
    photo_match_exposure: bool = False
    """With ``texture_source = "photos"``: scale each photo's colours per channel to the field's at the
    texels it sees (the capture's neutral exposure and white balance), so photos of different exposure
    blend without seams; ``export.json`` → ``photo_texture.gain_range`` reports the gains."""
    color_mode: Literal["albedo", "normal_view"] = "albedo"
    """How the colour field is read for the texture: "albedo" = one query per texel looking straight
    at the surface (view dir = -normal); "normal_view" = mean of five views within 30 degrees of the
    normal, which averages out view-dependent highlights."""
    fidelity_views: int = 8
    """Orbit views generated for the fidelity check when no cameras are given; 0 disables the check."""
    fidelity_resolution: int = 128
    """Width and height in pixels of the generated fidelity views."""
    fidelity_supersample: int = 2
    """Rays per pixel along each axis when the fidelity check renders the mesh (anti-aliasing, as an
    engine's multisampling; 1 = one ray through each pixel centre). Field renders made by
    :func:`t23d.render.field_fns.render_field_fn_of` are anti-aliased the same way (adaptively: only
    pixels near an edge get the extra rays), so that aliasing on either side does not count as
    disagreement."""
    fidelity_min_psnr: float = 25.0
    """Log a warning when the mesh-vs-field PSNR (dB) is below this."""
    fidelity_min_iou: float = 0.9
    """Log a warning when the mesh-vs-field silhouette IoU is below this."""
    preview_size: int = 512
    """Width and height in pixels of ``<name>_preview.png``."""
    chunk_size: int = 262_144
    """Points per call of ``density_fn`` / ``color_fn`` (bounds peak memory)."""
    render_backend: Literal["auto", "open3d", "raster"] = "auto"
    """Mesh renderer for preview and fidelity: "open3d" (Embree ray casting, exact, multi-threaded),
    "raster" (t23d's PyTorch z-buffer, the torch backend of :mod:`t23d.render.diffrast`; no extra
    dependency) or "auto" (open3d when it imports, otherwise raster)."""


#: Bytes of working memory per density-grid sample during extraction: the float32 grid, marching cubes'
#: float64 padded copy, the cavity fill's int32 labels and boolean masks.
GRID_BYTES_PER_SAMPLE = 20


def physical_memory_bytes() -> int | None:
    """This machine's physical memory (None where the OS does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def grid_memory_bytes(resolution: int) -> int:
    """Upper estimate of the extraction's working memory at ``resolution`` (cells on the longest axis)."""
    return (resolution + 1) ** 3 * GRID_BYTES_PER_SAMPLE


def _gib(n: float) -> str:
    return f"{n / 2**40:.1f} TiB" if n >= 2**40 else f"{n / 2**30:.1f} GiB"


def check_export_memory(
    resolution: int,
    memory: int | None = None,
    option: str = "--resolution {} (config key 'export.resolution')",
) -> None:
    """Refuse a ``resolution`` whose density grid cannot fit in this machine's memory, with the largest
    resolution that does (an oversized grid would otherwise fail after minutes, or swap the machine).
    ``option`` names the setting in the message (``{}`` is the value)."""
    memory = physical_memory_bytes() if memory is None else memory
    if memory is None or grid_memory_bytes(resolution) <= memory:
        return
    largest = int((memory / GRID_BYTES_PER_SAMPLE) ** (1 / 3)) - 1
    raise ConfigError(
        f"{option.format(resolution)}: the density grid of {resolution + 1}^3 "
        f"samples needs about {_gib(grid_memory_bytes(resolution))} of memory and this machine has "
        f"{_gib(memory)}; accepted: a resolution of at most {largest} here (256 is the default, 384 the "
        "quality preset's)"
    )


def validate_export_config(cfg: ExportConfig) -> None:
    """Raise :class:`ConfigError` naming the option, the value and what is accepted, for a bad config.

    Also bounds ``resolution`` by this machine's memory (:func:`check_export_memory`) and refuses
    non-finite numbers."""
    from t23d.common.config import check_finite_numbers

    check_finite_numbers(cfg, "export")
    from t23d.texture.bake import check_texture_size

    if cfg.format not in FORMATS:
        raise ConfigError(f"format: unknown export format {cfg.format!r}; accepted: {', '.join(FORMATS)}")
    if cfg.origin not in ORIGINS:
        raise ConfigError(f"origin: invalid value {cfg.origin!r}; accepted: {', '.join(ORIGINS)}")
    if cfg.texture not in ("radiance", "albedo"):
        raise ConfigError(f"texture: invalid value {cfg.texture!r}; accepted: 'radiance', 'albedo'")
    if cfg.albedo_reference is not None:
        from t23d.data.albedo_reference import parse_albedo_reference

        parse_albedo_reference(cfg.albedo_reference)
        if cfg.texture != "albedo":
            raise ConfigError(
                "albedo_reference: a reference of known reflectance calibrates an albedo texture; this "
                f"export's texture is {cfg.texture!r}: add --texture albedo (a run trained with the shading "
                "model) or drop --albedo-reference"
            )
    if cfg.texture_source not in ("field", "photos"):
        raise ConfigError(
            f"texture_source: invalid value {cfg.texture_source!r}; accepted: 'field', 'photos'"
        )
    if cfg.texture_source == "photos" and cfg.texture == "albedo":
        raise ConfigError(
            "texture_source: 'photos' projects the photos, with the capture's lighting in them, onto the "
            "mesh; an albedo texture comes from the run's shading model: use texture_source 'field' with "
            "texture 'albedo', or texture 'radiance' with the photos"
        )
    if cfg.color_mode not in ("albedo", "normal_view"):
        raise ConfigError(f"color_mode: invalid value {cfg.color_mode!r}; accepted: 'albedo', 'normal_view'")
    if cfg.render_backend not in ("auto", "open3d", "raster"):
        raise ConfigError(
            f"render_backend: invalid value {cfg.render_backend!r}; accepted: 'auto', 'open3d', 'raster'"
        )
    if cfg.extraction not in ("level_set", "tsdf"):
        raise ConfigError(f"extraction: invalid value {cfg.extraction!r}; accepted: 'level_set', 'tsdf'")
    if cfg.tsdf_backend not in ("auto", "open3d", "numpy"):
        raise ConfigError(
            f"tsdf_backend: invalid value {cfg.tsdf_backend!r}; accepted: 'auto', 'open3d', 'numpy'"
        )
    check_texture_size(cfg.texture_size)
    if cfg.normal_map_size is not None:
        try:
            check_texture_size(cfg.normal_map_size)
        except ConfigError as e:
            raise ConfigError(f"normal_map_size: {e}") from e
    checks = [
        ("resolution", cfg.resolution, cfg.resolution >= 2, "an integer >= 2"),
        ("faces", cfg.faces, cfg.faces >= 4, "an integer >= 4"),
        ("padding", cfg.padding, cfg.padding >= 0, "an integer >= 0"),
        ("fidelity_views", cfg.fidelity_views, cfg.fidelity_views >= 0, "an integer >= 0"),
        ("fidelity_resolution", cfg.fidelity_resolution, cfg.fidelity_resolution >= 8, "an integer >= 8"),
        (
            "fidelity_supersample",
            cfg.fidelity_supersample,
            1 <= cfg.fidelity_supersample <= 8,
            "an integer in 1..8",
        ),
        ("preview_size", cfg.preview_size, cfg.preview_size >= 8, "an integer >= 8"),
        ("tsdf_views", cfg.tsdf_views, cfg.tsdf_views >= 1, "an integer >= 1"),
        ("tsdf_view_size", cfg.tsdf_view_size, 8 <= cfg.tsdf_view_size <= 4096, "an integer in 8..4096"),
        (
            "tsdf_truncation_voxels",
            cfg.tsdf_truncation_voxels,
            0 < cfg.tsdf_truncation_voxels <= 64,
            "a number in (0, 64]",
        ),
        ("chunk_size", cfg.chunk_size, cfg.chunk_size >= 1, "an integer >= 1"),
        ("photo_top_k", cfg.photo_top_k, cfg.photo_top_k >= 1, "an integer >= 1"),
        (
            "min_component_fraction",
            cfg.min_component_fraction,
            0.0 <= cfg.min_component_fraction <= 1.0,
            "a number in [0, 1]",
        ),
    ]
    for key, value, ok, accepted in checks:
        if not ok:
            raise ConfigError(f"{key}: invalid value {value!r}; expected {accepted}")
    check_export_memory(cfg.resolution)
    if cfg.threshold is not None and not cfg.threshold > 0:
        raise ConfigError(
            f"threshold: invalid value {cfg.threshold!r}; expected a density > 0 or None (automatic)"
        )
    if cfg.surface_optical_depth is not None and not 0 < cfg.surface_optical_depth < 5:
        raise ConfigError(
            f"surface_optical_depth: invalid value {cfg.surface_optical_depth!r}; expected a number in (0, 5) "
            "or None (keep the marching-cubes surface)"
        )
    if cfg.height is not None and not cfg.height > 0:
        raise ConfigError(f"height: invalid value {cfg.height!r}; expected metres > 0 or None (keep scale)")
