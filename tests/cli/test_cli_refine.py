"""``t23d refine`` and ``t23d generate --refine`` in subprocesses: the refined run, Ctrl-C, bad input."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from helpers.cli import CONFIGS, run_t23d, start_t23d

SMOKE = str(CONFIGS / "cpu-smoke.yaml")
REFINE_SMOKE = str(CONFIGS / "refine-cpu-smoke.yaml")


@pytest.fixture(scope="module")
def chained_runs(tiny_sd_dir, tmp_path_factory) -> tuple[Path, Path]:
    """``t23d generate ... --refine``: a stage-1 run and the refine run made from it, side by side."""
    out = tmp_path_factory.mktemp("cli_refine")
    res = run_t23d(
        "generate", "a red ball", "--preset", "fast", "--config", SMOKE, "--prior", str(tiny_sd_dir),
        "--device", "cpu", "--out", str(out), "--refine", "--refine-config", REFINE_SMOKE, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    stage1, refined = sorted(out.iterdir(), key=lambda p: "refine" in p.name)
    assert "refine" in refined.name and "refine" not in stage1.name
    return stage1, refined


def test_generate_refine_chains_into_a_refine_run_with_a_valid_asset(chained_runs):
    from gltf_validate import error_messages, validate_gltf

    stage1, refined = chained_runs
    info = json.loads((refined / "run.json").read_text())
    assert info["t23d_run"] == "refine" and info["status"] == "completed"
    assert info["source"] == str(stage1.resolve()) and info["prompt"] == "a red ball"
    assert info["completed_steps"] == 4 and info["init"]["mesh_faces"] <= 1000
    assert info["init"]["rasterizer"] == "torch"
    assert info["prior"]["pretrained"] == json.loads((stage1 / "run.json").read_text())["prior"]["pretrained"]
    assert (refined / "config.yaml").is_file() and (refined / "log.txt").read_text()
    assert (refined / "previews" / "grid.png").stat().st_size > 0
    assert (refined / "previews" / "turntable.gif").stat().st_size > 0
    assert json.loads((refined / "checkpoints" / "latest.json").read_text())["step"] == 4
    glb = refined / "export" / "a_red_ball.glb"
    report = validate_gltf(glb)
    assert report["issues"]["numErrors"] == 0, error_messages(report)
    export = json.loads((refined / "export" / "export.json").read_text())
    assert export["threshold"] is None and export["num_faces"] <= 600
    assert export["fidelity"]["iou"] > 0.9  # the asset reproduces the refined mesh's silhouette
    assert export["normal_map"]["size"] == 64  # baked from the refined mesh before decimation
    assert (stage1 / "export" / "a_red_ball.glb").is_file()  # each stage exports its own asset


def test_cli_export_reexports_a_refine_run(chained_runs, tmp_path):
    _, refined = chained_runs
    res = run_t23d("export", str(refined), "--out", str(tmp_path), "--format", "obj", "--texture-size", "32")
    assert res.returncode == 0, res.stderr[-2000:]
    assert {"a_red_ball.obj", "a_red_ball.mtl", "a_red_ball.png", "export.json"} <= {
        p.name for p in tmp_path.iterdir()
    }


def test_cli_render_turntable_of_a_refine_run(chained_runs, capsys):
    from PIL import Image

    from t23d.cli.main import main

    _, refined = chained_runs
    assert main(["render", str(refined), "--frames", "3", "--resolution", "32"]) == 0
    gif = Image.open(refined / "renders" / "turntable.gif")
    assert gif.size == (32, 32) and gif.n_frames == 3
    frame = Image.open(refined / "renders" / "frame_0000.png")  # RGBA: alpha is the mesh's coverage
    alpha = frame.getchannel("A")
    assert frame.mode == "RGBA" and alpha.getextrema()[0] == 0 and alpha.getextrema()[1] > 128


def test_cli_refine_ctrl_c_saves_checkpoint_and_prints_resume_command(chained_runs, tmp_path):
    stage1, _ = chained_runs
    proc = start_t23d(
        "refine", str(stage1), "--preset", "fast", "--config", REFINE_SMOKE, "--steps", "100000",
        "--device", "cpu", "--out", str(tmp_path),
    )  # fmt: skip
    deadline = time.time() + 180
    while time.time() < deadline:  # the first periodic checkpoint (step 2) proves steps are running
        latest = list(tmp_path.glob("*/checkpoints/latest.json"))
        if latest and json.loads(latest[0].read_text())["step"] >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    (run_dir,) = tmp_path.iterdir()
    assert f"t23d refine --resume {run_dir}" in err
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and info["completed_steps"] >= 1
    assert (
        json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"] == info["completed_steps"]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "turbo"], "unknown refine preset 'turbo'; accepted: fast, default"),
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--resolution", "4"], "--resolution must be an integer >= 8"),
        (["--device", "tpu"], "not one of: auto, cpu, cuda"),
    ],
)
def test_cli_refine_bad_input(chained_runs, tmp_path, capsys, args, message):
    from t23d.cli.main import main

    stage1, _ = chained_runs
    assert main(["refine", str(stage1), "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_refine_refuses_what_is_not_a_generate_run(chained_runs, tmp_path, capsys):
    from t23d.cli.main import main

    _, refined = chained_runs
    assert main(["refine", str(refined), "--out", str(tmp_path)]) == 2
    assert "is a 'refine' run, not a 'generate' run" in capsys.readouterr().err
    assert main(["refine", str(tmp_path)]) == 2
    assert "not a t23d run directory" in capsys.readouterr().err
    assert main(["refine"]) == 2
    assert "a stage-1 run directory is required" in capsys.readouterr().err
    assert main(["refine", "--resume", str(refined), "--prior", "x"]) == 2
    assert "--prior cannot change the prior of a run being resumed" in capsys.readouterr().err
