"""Presets and the YAML files in configs/ load strictly; overrides reject unknown keys and bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from t23d.common.config import apply_overrides, from_dict, load_yaml, to_dict
from t23d.common.errors import ConfigError
from t23d.common.schedule import Linear
from t23d.guidance import DeepFloydGuidanceConfig
from t23d.optimise.config import PRESETS, GenerateConfig, preset
from t23d.reconstruct.config import PRESETS as RECONSTRUCT_PRESETS
from t23d.reconstruct.config import reconstruct_preset

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", PRESETS)
def test_presets_round_trip_through_dicts(name):
    cfg = preset(name)
    assert from_dict(GenerateConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize("name", RECONSTRUCT_PRESETS)
def test_reconstruct_presets_exist(name):
    assert reconstruct_preset(name).steps > 0


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_yaml_applies_to_the_presets(path):
    """Each shipped YAML applies to the presets of the command it is for (``refine-*`` files to
    ``t23d refine``'s, the others to ``t23d generate``'s)."""
    if path.name.startswith("refine-"):
        from t23d.optimise.refine_config import refine_preset

        base = refine_preset("fast")
    else:
        base = preset("fast")
    cfg = apply_overrides(base, load_yaml(path))
    assert cfg != base


def test_union_types_switch_by_name():
    cfg = apply_overrides(preset("default"), load_yaml(CONFIGS / "deepfloyd-if.yaml"))
    assert isinstance(cfg.guidance, DeepFloydGuidanceConfig)
    cfg = apply_overrides(
        cfg,
        {
            "regularisers": {
                "orientation": {"type": "Linear", "start": 1.0, "end": 2.0, "start_step": 0, "end_step": 10}
            }
        },
    )
    assert cfg.regularisers.orientation == Linear(1.0, 2.0, 0, 10)
    assert cfg.regularisers.orientation.at(5) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stepz": 3}, "unknown config key 'stepz'"),
        ({"camera": {"resolution": "big"}}, "config key 'camera.resolution': expected an integer"),
        ({"device": "tpu"}, "config key 'device': invalid value 'tpu'"),
        ({"guidance": {"type": "Imagen"}}, "unknown type 'Imagen'"),
    ],
)
def test_bad_overrides_name_the_key_and_what_is_accepted(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(preset("fast"), overrides)


def test_a_value_outside_a_union_names_each_accepted_kind():
    """A union key lists what each of its members accepts (``int | None``: an integer or null)."""
    with pytest.raises(
        ConfigError,
        match=r"config key 'data.max_image_size': invalid value 'big'; accepted: an integer or null",
    ):
        apply_overrides(reconstruct_preset("fast"), {"data": {"max_image_size": "big"}})
    cfg = apply_overrides(reconstruct_preset("fast"), {"data": {"support_fillet_radius": "auto"}})
    assert cfg.data.support_fillet_radius == "auto"
    with pytest.raises(
        ConfigError,
        match=r"'data.support_fillet_radius': invalid value 'maybe'; accepted: a number or 'auto'",
    ):
        apply_overrides(reconstruct_preset("fast"), {"data": {"support_fillet_radius": "maybe"}})


def test_unquoted_yaml_on_and_off_mean_the_choices_on_and_off(tmp_path):
    """YAML 1.1 reads ``off`` as ``False``: a key whose choices are 'auto' / 'on' / 'off' takes it as 'off'."""
    path = tmp_path / "few.yaml"
    path.write_text("few_view:\n  mode: off\n  smooth_sdf: on\n")
    cfg = apply_overrides(reconstruct_preset("fast"), load_yaml(path))
    assert cfg.few_view.mode == "off" and cfg.few_view.smooth_sdf == "on"
    with pytest.raises(ConfigError, match="config key 'export.texture': invalid value True"):
        apply_overrides(reconstruct_preset("fast"), {"export": {"texture": True}})


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge'; accepted: fast, latent, default, quality"):
        preset("huge")
    # image runs have no latent preset: the message lists what they accept
    from t23d.optimise.config import image_preset

    with pytest.raises(
        ConfigError, match="unknown preset 'latent' for --image runs; accepted: fast, default, quality"
    ):
        image_preset("latent")


def test_sdf_presets_switch_geometry_and_its_companion_settings():
    from t23d.cli.common import schedules_for_steps
    from t23d.common.errors import ConfigError
    from t23d.common.schedule import Linear
    from t23d.reconstruct.config import reconstruct_preset

    for name in PRESETS:
        g = preset(name, "sdf")
        assert g.field.geometry == "sdf"
        # density-fog remedies are off for an SDF (its surface is opaque, its normals its gradient)
        assert g.regularisers.orientation.at(0) == 0.0 and g.regularisers.sparsity.at(0) == 0.0
        assert g.sdf_training.sharpness_floor.end_step == g.steps // 2
        # SDS on an SDF: stronger eikonal and curvature than photo runs (a distance, smooth below a cell)
        assert g.sdf_training.eikonal.at(0) == 1.0 and g.sdf_training.curvature.at(0) == 1e-3
        assert preset(name, "density").field.geometry == "density"
    from t23d.optimise.config import image_preset

    image = image_preset("fast").sdf_training  # the reference view is photo supervision: photo weights
    assert image.eikonal.at(0) == 0.1 and image.curvature.at(0) == 1e-4
    assert image.eikonal.at(0) == reconstruct_preset("fast", "sdf").sdf_training.eikonal.at(0)
    for name in RECONSTRUCT_PRESETS:
        r = reconstruct_preset(name, "sdf")
        assert r.field.geometry == "sdf" and r.export.surface_optical_depth is None
        assert r.sdf_training.sharpness_floor.end_step == r.steps // 2
    with pytest.raises(ConfigError, match="unknown geometry 'voxels'; accepted: density, sdf"):
        preset("fast", "voxels")
    with pytest.raises(ConfigError, match="unknown geometry"):
        reconstruct_preset("fast", "voxels")
    # text runs default to SDF geometry (measured with the learned toy prior: its asset exports what the
    # field learned), and so do image runs (their density asset kept half the field's silhouette);
    # Latent-NeRF keeps density (not measured on SDF)
    from t23d.optimise.config import image_preset

    for name in ("fast", "default", "quality"):
        assert preset(name) == preset(name, "sdf")
    assert preset("latent") == preset("latent", "density")
    # bfloat16 only where the CPU runs it natively (emulated it was 35x slower than float32)
    assert preset("latent").guidance.cpu_dtype == "auto"
    assert image_preset("fast").field.geometry == "sdf"
    assert image_preset("fast", "density").field.geometry == "density"
    # photo runs default to SDF geometry; its default preset is shortened, with every schedule
    # following, to fit the 13-CPU-minute budget
    from t23d.reconstruct.config import SDF_DEFAULT_STEPS

    assert reconstruct_preset("default").field.geometry == "sdf"
    r = reconstruct_preset("default", "sdf")
    d = reconstruct_preset("default", "density")
    assert r.steps == SDF_DEFAULT_STEPS < d.steps
    assert r.lr_decay_start == d.lr_decay_start * r.steps // d.steps
    assert reconstruct_preset("fast", "sdf").steps == reconstruct_preset("fast", "density").steps
    # --steps rescales the preset's ramps before YAML overrides
    half = schedules_for_steps(r, r.steps // 2)
    floor = half.sdf_training.sharpness_floor
    assert isinstance(floor, Linear) and floor.end_step == r.sdf_training.sharpness_floor.end_step // 2
    # ... and where the learning rates start decaying (else a short run would never decay)
    assert half.lr_decay_start == r.lr_decay_start * (r.steps // 2) // r.steps < r.lr_decay_start
    short = schedules_for_steps(reconstruct_preset("default", "density"), 500)
    assert short.lr_decay_start < 500
    # SDF photo runs start from a density warm start (carves concavities), except the fast smoke preset;
    # --steps scales it with the run
    from t23d.reconstruct.config import SDF_WARM_START_STEPS

    assert r.warm_start.steps == SDF_WARM_START_STEPS > 0
    assert reconstruct_preset("quality", "sdf").warm_start.steps == SDF_WARM_START_STEPS
    assert reconstruct_preset("fast", "sdf").warm_start.steps == 0 == d.warm_start.steps
    assert half.warm_start.steps == SDF_WARM_START_STEPS // 2
    assert schedules_for_steps(r, None) is r


@pytest.mark.parametrize("geometry", ["density", "sdf"])
@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_and_shipped_yaml_passes_validation(name, geometry):
    """The checks that refuse bad input before a run starts accept everything t23d ships."""
    from t23d.optimise.config import validate_generate_config
    from t23d.reconstruct.config import reconstruct_preset, validate_reconstruct_config

    validate_generate_config(preset(name, geometry))
    if name in RECONSTRUCT_PRESETS:  # `latent` is a text-to-3D preset only
        validate_reconstruct_config(reconstruct_preset(name, geometry))
    for path in sorted(CONFIGS.glob("*.yaml")):
        if not path.name.startswith("refine-"):
            validate_generate_config(apply_overrides(preset(name, geometry), load_yaml(path)))


@pytest.mark.parametrize("name", ["fast", "default"])
def test_every_refine_preset_passes_validation(name):
    from t23d.optimise.refine_config import REFINE_PRESETS, refine_preset, validate_refine_config

    assert name in REFINE_PRESETS
    validate_refine_config(refine_preset(name))
    for path in sorted(CONFIGS.glob("refine-*.yaml")):
        validate_refine_config(apply_overrides(refine_preset(name), load_yaml(path)))
