"""What a photo run decides from its capture: the ground plane of SDF runs."""

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
