"""The ``t23d`` process under signals and concurrent use: SIGTERM is handled like Ctrl-C (checkpoint,
``interrupted``, exit 143), Ctrl-C during the end-of-run export keeps the trained run (exit 130), and a
run that is still training refuses a second ``--resume`` or an ``export`` into it, while an export
elsewhere warns that it is a snapshot. Two training processes serve the signal cases (subprocesses
cost seconds each); the export cases run in this process, which holds the run lock as a trainer would."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from helpers.cli import CONFIGS, run_t23d, start_t23d, wait_for_log

from t23d.run.lock import is_locked

SMOKE = str(CONFIGS / "cpu-smoke.yaml")


# generous: these machines are shared, and a loaded 2-core machine slows a step 10-30x
TIMEOUT = 900


def start_generate(prior: Path, out: Path, *extra: str) -> subprocess.Popen:
    return start_t23d(
        "generate", "a red ball", "--preset", "fast", "--config", SMOKE,
        "--prior", str(prior), "--device", "cpu", "--out", str(out), *extra,
    )  # fmt: skip


def no_temporary_files(run_dir: Path) -> bool:
    return not [p for p in run_dir.rglob(".*") if p.name != ".lock"]


def test_sigterm_is_ctrl_c_and_a_training_run_is_locked(tiny_sd_dir, tmp_path):
    out = tmp_path / "out"
    proc = start_generate(tiny_sd_dir, out, "--steps", "100000", "--no-export")
    try:
        run_dir = wait_for_log(out, "training 'a red ball'", proc, TIMEOUT)
        resume = run_t23d(
            "generate", "--resume", str(run_dir), timeout=TIMEOUT
        )  # refused at the lock, before loading anything
        assert resume.returncode == 2, resume.stderr
        assert f"in use by process {proc.pid} (train" in resume.stderr and "Traceback" not in resume.stderr
        assert proc.poll() is None  # the training process did not notice
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT)

    assert proc.returncode == 143, err[-3000:]
    assert "SIGTERM: interrupted at step" in err and f"t23d generate --resume {run_dir}" in err
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and info["completed_steps"] >= 1
    step = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"]
    assert step == info["completed_steps"]
    assert no_temporary_files(run_dir)

    assert not is_locked(run_dir)  # the lock died with the process (resuming: tests/optimise)


def test_export_of_a_training_run_refuses_its_own_folder_and_warns_elsewhere(
    trained_run, tmp_path, capsys, caplog
):
    """In-process: this process holds the run's lock as a training process would."""
    import logging

    from t23d.cli.main import main
    from t23d.run.lock import RunLock

    with RunLock(trained_run, "train"):
        assert main(["export", str(trained_run)]) == 2
        err = capsys.readouterr().err
        assert "is in use by process" in err and f"t23d export {trained_run} --out DIR" in err
        snap = tmp_path / "snapshot"
        with caplog.at_level(logging.WARNING, logger="t23d"):
            code = main(
                ["export", str(trained_run), "--out", str(snap), "--resolution", "16", "--faces", "200"]
            )
        err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    assert "is still training: exporting its latest checkpoint (step 2), a snapshot" in caplog.text
    assert (snap / "a_red_ball.glb").is_file()
    assert not (trained_run / "export").exists()


@pytest.mark.slow  # ~30 s of CLI subprocess; tests/run/test_lifecycle.py covers the same rule in-process
def test_ctrl_c_during_the_export_keeps_the_trained_run(tiny_sd_dir, tmp_path):
    heavy_export = tmp_path / "heavy-export.yaml"  # an export of several seconds, so the signal lands in it
    heavy_export.write_text(
        "export:\n  resolution: 128\n  faces: 20000\n  texture_size: 512\n  fidelity_views: 8\n"
        "  fidelity_resolution: 128\n  preview_size: 256\n"
    )
    out = tmp_path / "out"
    proc = start_generate(tiny_sd_dir, out, "--steps", "3", "--config", str(heavy_export))
    run_dir = wait_for_log(out, "exporting the asset", proc, TIMEOUT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)

    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert "SIGINT: stopped after training finished (step 3)" in err and f"t23d export {run_dir}" in err
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and info["completed_steps"] == 3, info
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"] == 3
    assert not (run_dir / "export" / "export.json").exists()
    assert no_temporary_files(run_dir)
