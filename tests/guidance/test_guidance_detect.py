"""The prior's model_index.json picks the guidance config; IF's pixel size never changes the render size."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from t23d.common.config import apply_overrides, load_yaml
from t23d.common.errors import T23dError
from t23d.common.schedule import Constant
from t23d.guidance import DeepFloydGuidanceConfig, StableDiffusionGuidanceConfig, build_guidance
from t23d.guidance.detect import guidance_config_for_prior, read_pipeline_class
from t23d.optimise.config import preset

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_pipeline_class_is_read_from_the_folder(tiny_sd_dir: Path, tiny_if_dir: Path, tmp_path: Path) -> None:
    assert read_pipeline_class(str(tiny_sd_dir)) == "StableDiffusionPipeline"
    assert read_pipeline_class(str(tiny_if_dir)) == "IFPipeline"
    assert read_pipeline_class(str(tmp_path)) is None  # no model_index.json: the loader says what is missing
    assert read_pipeline_class(str(tmp_path / "nope")) is None
    assert read_pipeline_class("someone/not-cached-anywhere", local_files_only=True) is None


def test_if_folder_switches_an_sd_preset_to_deepfloyd(tiny_if_dir: Path) -> None:
    sd = preset("fast").guidance
    sd = type(sd)(**{**sd.__dict__, "min_step_percent": Constant(0.1)})
    cfg = guidance_config_for_prior(sd, str(tiny_if_dir))
    assert isinstance(cfg, DeepFloydGuidanceConfig)
    assert cfg.pretrained == str(tiny_if_dir)
    assert cfg.min_step_percent == Constant(0.1)  # changed by the user: kept
    assert cfg.guidance_scale == DeepFloydGuidanceConfig().guidance_scale  # SD's default 100 is not IF's
    assert cfg.resolution == 64


def test_same_kind_only_changes_the_path(tiny_sd_dir: Path) -> None:
    sd = StableDiffusionGuidanceConfig(vae_resolution=128, guidance_scale=7.5)
    cfg = guidance_config_for_prior(sd, str(tiny_sd_dir))
    assert cfg == StableDiffusionGuidanceConfig(
        pretrained=str(tiny_sd_dir), vae_resolution=128, guidance_scale=7.5
    )
    # a hub id whose model_index.json cannot be read keeps the configured kind
    cfg = guidance_config_for_prior(DeepFloydGuidanceConfig(local_files_only=True), "someone/not-cached")
    assert isinstance(cfg, DeepFloydGuidanceConfig) and cfg.pretrained == "someone/not-cached"


def test_unknown_or_broken_model_index(tmp_path: Path) -> None:
    folder = tmp_path / "xl"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(T23dError, match=r"names the pipeline class 'StableDiffusionXLPipeline'.*accepted: "):
        guidance_config_for_prior(StableDiffusionGuidanceConfig(), str(folder))
    (folder / "model_index.json").write_text("{broken")
    with pytest.raises(T23dError, match="is not a diffusers model_index.json"):
        guidance_config_for_prior(StableDiffusionGuidanceConfig(), str(folder))


def test_wrong_kind_error_names_the_fix(tiny_if_dir: Path) -> None:
    with pytest.raises(
        T23dError, match=r"missing vae/.*names IFPipeline: pass it with `t23d generate --prior"
    ):
        build_guidance(
            StableDiffusionGuidanceConfig(pretrained=str(tiny_if_dir)), "a stone grotto", "", "cpu"
        )


def test_deepfloyd_yaml_keeps_the_preset_render_resolution() -> None:
    for name, resolution in (("fast", 32), ("default", 64), ("quality", 128)):
        cfg = apply_overrides(preset(name), load_yaml(CONFIGS / "deepfloyd-if.yaml"))
        assert isinstance(cfg.guidance, DeepFloydGuidanceConfig)
        assert cfg.camera.resolution == resolution == preset(name).camera.resolution


def test_deepfloyd_resizes_inside_the_guidance_and_says_so(tiny_if_dir: Path, caplog) -> None:
    g = build_guidance(
        DeepFloydGuidanceConfig(pretrained=str(tiny_if_dir), resolution=24), "a stone grotto", "", "cpu"
    )
    seen = []
    inner = g.unet

    def spy(sample, timestep, encoder_hidden_states):
        seen.append(tuple(sample.shape))
        return inner(sample, timestep, encoder_hidden_states=encoder_hidden_states)

    g.unet = spy
    images = torch.rand(2, 16, 16, 3, requires_grad=True)
    with caplog.at_level(logging.INFO, logger="t23d.guidance.sds"):
        for _ in range(2):
            g.compute(images, torch.zeros(2), torch.zeros(2), 0, torch.Generator().manual_seed(0))
    assert seen[0] == (4, 3, 24, 24)
    messages = [r.getMessage() for r in caplog.records if "resized" in r.getMessage()]
    assert messages == [
        "deepfloyd-if: renders of 16x16 px (camera.resolution) are resized (bilinear) to 24x24 px "
        "(guidance.resolution) for the prior"
    ]
    _ = shutil
