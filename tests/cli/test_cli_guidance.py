"""``t23d generate --prior`` picks the guidance from the prior's folder; ``t23d render`` writes alpha."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.cli import CONFIGS, run_t23d
from PIL import Image

SMOKE = str(CONFIGS / "cpu-smoke.yaml")


@pytest.fixture(scope="module")
def if_run(tiny_if_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generate run of an SD preset (cpu-smoke says StableDiffusionGuidanceConfig) given an IF folder."""
    out = tmp_path_factory.mktemp("if_run")
    res = run_t23d(
        "generate", "a red apple", "--preset", "fast", "--config", SMOKE, "--prior", str(tiny_if_dir),
        "--steps", "3", "--no-export", "--device", "cpu", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    (run_dir,) = out.iterdir()
    (run_dir / "stderr.txt").write_text(res.stderr)
    return run_dir


def test_if_folder_with_prior_loads_as_deepfloyd(if_run: Path) -> None:
    info = json.loads((if_run / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["prior"]["kind"] == "deepfloyd-if"
    cfg = yaml.safe_load((if_run / "config.yaml").read_text())
    assert cfg["guidance"]["type"] == "DeepFloydGuidanceConfig"
    assert cfg["camera"]["resolution"] == 32  # the preset's render size, not IF's 64
    stderr = (if_run / "stderr.txt").read_text()
    assert "its model_index.json names IFPipeline, so the guidance is DeepFloydGuidanceConfig" in stderr
    log = (if_run / "log.txt").read_text()
    assert "renders of 32x32 px (camera.resolution) are resized (bilinear) to 64x64 px" in log


def test_render_writes_rgba_that_recomposites_to_the_rgb_render(if_run: Path, tmp_path: Path) -> None:
    args = ("render", str(if_run), "--resolution", "32", "--frames", "2")
    res = run_t23d(*args, "--out", str(tmp_path / "rgba"))
    assert res.returncode == 0, res.stderr[-2000:]
    res = run_t23d(*args, "--out", str(tmp_path / "rgb"), "--background", "composite")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "rgba" / "turntable.gif").is_file()
    for i in range(2):
        rgba_img = Image.open(tmp_path / "rgba" / f"frame_{i:04d}.png")
        rgb_img = Image.open(tmp_path / "rgb" / f"frame_{i:04d}.png")
        assert rgba_img.mode == "RGBA" and rgb_img.mode == "RGB"
        rgba = np.asarray(rgba_img, dtype=np.float64) / 255.0
        alpha = rgba[..., 3:]
        assert alpha.min() < 0.5 < alpha.max()  # the object and empty space around it
        # straight alpha over the run's background gives back the composited render (up to 8-bit rounding)
        from t23d.optimise.generate import load_generate_state
        from t23d.render.cameras import orbit_cameras
        from t23d.render.volume import render_images

        cfg, state = load_generate_state(if_run)
        c = cfg.camera
        views = orbit_cameras(2, 32, c.eval_distance, c.eval_fov, c.eval_elevation)
        bg = render_images(state.field, state.background, views.cameras, cfg.render)["background"][i].numpy()
        recomposited = rgba[..., :3] * alpha + (1 - alpha) * bg
        rgb = np.asarray(rgb_img, dtype=np.float64) / 255.0
        assert np.abs(recomposited - rgb).max() < 3.0 / 255.0


@pytest.mark.slow  # 17 s; by default tests/guidance covers the MVDream prior and the latent-preset test the CLI path
def test_generate_end_to_end_with_the_tiny_mvdream_prior(tiny_mvdream_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_t23d(
        "generate", "a stone grotto", "--preset", "fast", "--config", SMOKE, "--prior", str(tiny_mvdream_dir),
        "--steps", "3", "--device", "cpu", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert (
        "its model_index.json names MVDreamPipeline, so the guidance is MVDreamGuidanceConfig" in res.stderr
    )
    (run_dir,) = out.iterdir()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["completed_steps"] == 3
    assert info["prior"]["kind"] == "mvdream" and info["prior"]["num_views"] == 4
    assert (
        yaml.safe_load((run_dir / "config.yaml").read_text())["guidance"]["type"] == "MVDreamGuidanceConfig"
    )
    (glb,) = (run_dir / "export").glob("*.glb")
    assert glb.stat().st_size > 0


def test_generate_end_to_end_with_the_latent_preset(tiny_sd_dir: Path, tmp_path: Path) -> None:
    """Latent-NeRF: the field renders the latent, no VAE is loaded, previews and the asset read the RGB head."""
    out = tmp_path / "out"
    res = run_t23d(
        "generate", "a red apple", "--preset", "latent", "--config", SMOKE, "--prior", str(tiny_sd_dir),
        "--steps", "3", "--device", "cpu", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    (run_dir,) = out.iterdir()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["prior"]["input_space"] == "latent"
    log = (run_dir / "log.txt").read_text()
    assert "renders of 32x32 latents go to the UNet directly" in log and "loading vae" not in log
    assert (run_dir / "previews" / "grid.png").is_file()
    (glb,) = (run_dir / "export").glob("*.glb")
    assert glb.stat().st_size > 0
