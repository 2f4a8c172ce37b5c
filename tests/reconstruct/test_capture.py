"""What a photo run decides from its capture and reports of it: the ground plane of SDF runs, the
learnt appearance (local codes)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from t23d.data.normalise import SupportPlane
from t23d.reconstruct.capture import ground_plane_for
from t23d.reconstruct.config import reconstruct_preset, validate_reconstruct_config


def on_a_table(offset: float = -0.6):
    plane = SupportPlane(np.array([0.0, 0.6, 0.8]), offset, num_inliers=300, fraction=0.4, rms=0.004)
    return SimpleNamespace(support_plane=plane)


def test_an_sdf_run_on_a_table_makes_the_table_part_of_its_geometry_when_asked():
    cfg = dataclasses.replace(reconstruct_preset("default", "sdf"), ground="auto")
    assert ground_plane_for(cfg, on_a_table(-0.6)) == pytest.approx([0.0, 0.6, 0.8, -0.6])
    # opt-in (it measured worse on the monkey-head capture: benchmarks/RESULTS.md, session 18)
    assert ground_plane_for(reconstruct_preset("default", "sdf"), on_a_table(-0.6)) is None


def test_no_ground_plane_without_a_table_for_density_fields_or_when_off():
    sdf = dataclasses.replace(reconstruct_preset("default", "sdf"), ground="auto")
    assert ground_plane_for(sdf, SimpleNamespace(support_plane=None)) is None  # masked photos: no table
    density = dataclasses.replace(reconstruct_preset("default", "density"), ground="auto")
    assert ground_plane_for(density, on_a_table()) is None
    off = dataclasses.replace(sdf, ground="off")
    assert ground_plane_for(off, on_a_table()) is None
    # a plane given by hand stays, whatever the capture
    manual = dataclasses.replace(
        off, field=dataclasses.replace(off.field, ground_plane=[0.0, 0.0, 1.0, -0.5])
    )
    assert ground_plane_for(manual, on_a_table()) == [0.0, 0.0, 1.0, -0.5]


def test_a_bad_ground_mode_is_refused_by_name():
    from t23d.common.errors import ConfigError

    cfg = dataclasses.replace(reconstruct_preset("fast", "sdf"), input="x", ground="on")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ground"):
        validate_reconstruct_config(cfg)


def test_local_codes_train_for_the_training_photos_alone_and_are_reported():
    """A run with local codes: a training step moves the training photos' codes (from zero) and leaves the
    held-out photo's alone; metrics.json's capture report gives their size."""
    import torch

    from t23d.field.appearance import AppearanceConfig
    from t23d.field.background import ContractedBackground
    from t23d.reconstruct.capture import learnt_capture_report
    from t23d.reconstruct.run import _train_images
    from t23d.reconstruct.train import build_reconstruct_state, photometric_step
    from t23d.render.cameras import look_at

    cfg = dataclasses.replace(
        reconstruct_preset("fast", "sdf"), rays_per_batch=256, appearance=AppearanceConfig(local_codes=3)
    )
    centres = torch.tensor([[0.0, 0.0, 3.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [-3.0, 0.0, 0.0]])
    c2w = look_at(centres, torch.zeros(4, 3))
    capture = SimpleNamespace(
        images=torch.rand(4, 8, 8, 3, generator=torch.Generator().manual_seed(0)),
        alphas=None,
        c2w=c2w,
        intrinsics=torch.tensor([[8.0, 8.0, 4.0, 4.0]] * 4),
        width=8,
        height=8,
        train_indices=[0, 1, 3],
        points=None,
        point_views=None,
    )
    data = _train_images(capture, None, torch.device("cpu"), cfg)
    state = build_reconstruct_state(
        cfg, ContractedBackground(), torch.device("cpu"), 4, capture.train_indices
    )
    codes = state.extras["appearance"].image_local
    assert codes.shape == (4, 3) and not codes.any()
    for _ in range(3):
        photometric_step(cfg, state, data)
    moved = codes.detach().abs().sum(1)
    assert (moved[[0, 1, 3]] > 0).all() and moved[2] == 0, moved  # photo 2 is held out
    report = learnt_capture_report(state, capture)["appearance"]
    assert report["local_codes"]["size"] == 3 and report["local_codes"]["norm_mean"] > 0
    assert report["neutral_code"].startswith("zero")


def test_a_bad_local_code_size_is_refused_by_name_before_the_run():
    from t23d.common.errors import ConfigError
    from t23d.field.appearance import AppearanceConfig

    cfg = dataclasses.replace(
        reconstruct_preset("fast", "sdf"), input="x", appearance=AppearanceConfig(local_codes=-2)
    )
    with pytest.raises(
        ConfigError,
        match=r"--local-codes \(config key 'appearance.local_codes'\): invalid value -2; accepted: 'auto' or",
    ):
        validate_reconstruct_config(cfg)


def test_local_codes_auto_are_on_for_unmasked_photos_and_off_for_masked_ones():
    """``auto`` (the reconstruct default, every preset): 32 codes for unmasked photos, none for masked."""
    from t23d.field.appearance import AppearanceConfig
    from t23d.reconstruct.capture import AUTO_LOCAL_CODES, local_codes_for

    auto = reconstruct_preset("default", "sdf").appearance
    assert auto.local_codes == "auto" == reconstruct_preset("fast", "density").appearance.local_codes
    unmasked, record = local_codes_for(auto, masked=False)
    assert (
        unmasked.local_codes == AUTO_LOCAL_CODES == 32 == record["codes"] and "unmasked" in record["reason"]
    )
    masked, record = local_codes_for(auto, masked=True)
    assert masked.local_codes == 0 == record["codes"] and record["reason"].startswith("auto: masked")
    given, record = local_codes_for(AppearanceConfig(local_codes=3), masked=True)
    assert given.local_codes == 3 and record == {"codes": 3, "reason": "set in the config"}


def test_an_unresolved_auto_builds_no_local_codes_and_the_model_refuses_it():
    """``auto`` is resolved from the capture when a run starts; a state built from an unresolved config
    (the API used directly) gets no codes, and the model itself refuses ``auto``."""
    import torch

    from t23d.common.errors import ConfigError
    from t23d.field.appearance import Appearance, AppearanceConfig
    from t23d.field.background import ContractedBackground
    from t23d.reconstruct.train import build_reconstruct_state

    cfg = dataclasses.replace(
        reconstruct_preset("fast", "sdf"),
        appearance=AppearanceConfig(per_image="exposure", local_codes="auto"),
    )
    state = build_reconstruct_state(cfg, ContractedBackground(), torch.device("cpu"), 3)
    assert state.extras["appearance"].image_local is None
    with pytest.raises(ConfigError, match="'auto' must be resolved from the capture"):
        Appearance(AppearanceConfig(local_codes="auto"), num_images=2)


def test_unmasked_photos_learn_view_independent_colour_unless_the_field_is_asked_for():
    """``view_dependence: auto`` (the default) turns the colour's view dependence off for unmasked photos
    and keeps it for masked ones; ``field`` keeps ``field.view_dependent`` for both; a field already
    view-independent stays so. Each decision is recorded with its reason."""
    from t23d.reconstruct.capture import view_dependence_for

    cfg = reconstruct_preset("default", "sdf")
    assert cfg.view_dependence == "auto" and cfg.field.view_dependent
    field, record = view_dependence_for(cfg, cfg.field, masked=False)
    assert not field.view_dependent and record == {"on": False, "reason": "auto: unmasked photos"}
    assert dataclasses.replace(field, view_dependent=True) == cfg.field  # nothing else changed
    field, record = view_dependence_for(cfg, cfg.field, masked=True)
    assert field is cfg.field and record["on"] and "masked" in record["reason"]
    kept = dataclasses.replace(cfg, view_dependence="field")
    field, record = view_dependence_for(kept, kept.field, masked=False)
    assert field.view_dependent and record["on"]
    off = dataclasses.replace(cfg.field, view_dependent=False)
    assert view_dependence_for(kept, off, masked=True) == (
        off,
        {"on": False, "reason": "off already (field.view_dependent, or the shading model an albedo needs)"},
    )
