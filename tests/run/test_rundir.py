"""Run directories: saved configs of earlier versions still load."""

from __future__ import annotations

import yaml

from t23d.common.config import from_dict, to_dict
from t23d.reconstruct.config import ReconstructConfig, reconstruct_preset
from t23d.run.rundir import CONFIG_YAML, read_config


def test_a_config_saved_with_the_old_sdf_section_name_loads(tmp_path):
    cfg = reconstruct_preset("fast", "sdf")
    saved = to_dict(cfg)
    section = saved.pop("sdf_training")
    section["type"] = "SDFRegularisersConfig"  # as runs saved before the rename wrote it
    saved["sdf_regularisers"] = section
    (tmp_path / CONFIG_YAML).write_text(yaml.safe_dump(saved))

    loaded = from_dict(ReconstructConfig, read_config(tmp_path))

    assert loaded.sdf_training == cfg.sdf_training
    assert loaded == cfg


def test_a_current_config_is_read_unchanged(tmp_path):
    saved = to_dict(reconstruct_preset("fast", "density"))
    (tmp_path / CONFIG_YAML).write_text(yaml.safe_dump(saved))
    assert read_config(tmp_path) == saved
