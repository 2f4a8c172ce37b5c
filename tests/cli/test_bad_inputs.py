"""The catalogue of bad inputs: every one fails before any work starts, with exit code 2 and a message
that names the option (or config key, or frame), the value and what is accepted, and leaves nothing
behind: no run directory, no partial file, an existing run unchanged.

New bad inputs join :data:`CASES` (one line each). Each case runs the real ``t23d`` entry point
(``t23d.cli.main.main``) in this process, which is what ``python -m t23d.cli.main`` calls, so the whole
catalogue costs about one run's set-up; tests/cli/test_cli_*.py check the subprocess exit codes.

Placeholders in the arguments: ``{prior}`` a tiny prior folder, ``{out}`` a fresh output folder,
``{run}`` a trained generate run (tests/cli/conftest.py), ``{data}`` a small nerfstudio capture (edited by the case's ``edit``),
``{yaml}`` a YAML file holding the case's ``yaml``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from t23d.cli.main import main

MAX_SEED = "9223372036854775806"


@dataclasses.dataclass
class Case:
    """One bad input: the command line, the exit code, and a fragment the error message must contain."""

    id: str
    argv: list[str]
    message: str
    code: int = 2
    yaml: str | None = None
    """Contents of ``{yaml}``."""
    edit: Callable[[Path], None] | None = None
    """Damages the capture in ``{data}`` (or the run in ``{run}``) before the command runs."""


def _frame_matrix(value) -> Callable[[Path], None]:
    def edit(data: Path) -> None:
        meta = json.loads((data / "transforms.json").read_text())
        meta["frames"][1]["transform_matrix"] = value(meta["frames"][1]["transform_matrix"])
        (data / "transforms.json").write_text(json.dumps(meta))

    return edit


def _set_key(key: str, value) -> Callable[[Path], None]:
    def edit(data: Path) -> None:
        meta = json.loads((data / "transforms.json").read_text())
        meta[key] = value
        (data / "transforms.json").write_text(json.dumps(meta))

    return edit


def _nan_at_0_3(m: list) -> list:
    m[0][3] = float("nan")
    return m


def _truncate_checkpoints(run: Path) -> None:
    for p in (run / "checkpoints").glob("*.safetensors"):
        p.write_bytes(p.read_bytes()[:64])


GEN = ["generate", "a red ball", "--prior", "{prior}", "--device", "cpu", "--out", "{out}"]
REC = ["reconstruct", "{data}", "--preset", "fast", "--device", "cpu", "--out", "{out}"]

CASES = [
    # --- generate: flags and config, refused before the prior is loaded
    Case("seed-huge", GEN + ["--seed", "99999999999999999999999"], f"--seed (config key 'seed'): invalid value 99999999999999999999999; accepted: an integer in 0 .. {MAX_SEED}"),
    Case("seed-negative", GEN + ["--seed", "-1"], "--seed (config key 'seed'): invalid value -1"),
    Case("checkpoint-every-0", GEN + ["--config", "{yaml}"], "config key 'checkpoint_every': invalid value 0; accepted: an integer >= 1", yaml="checkpoint_every: 0"),
    Case("camera-resolution-negative", GEN + ["--config", "{yaml}"], "config key 'camera.resolution': invalid value -4; accepted: an integer in 8 .. 4096", yaml="camera: {resolution: -4}"),
    Case("guidance-scale-nan", GEN + ["--config", "{yaml}"], "config key 'guidance.guidance_scale': invalid value nan; accepted: a finite number", yaml="guidance: {type: StableDiffusionGuidanceConfig, guidance_scale: .nan}"),
    Case("lr-grid-inf", GEN + ["--config", "{yaml}"], "config key 'optim.lr_grid': invalid value inf; accepted: a finite number", yaml="optim: {lr_grid: .inf}"),
    Case("lr-negative", GEN + ["--config", "{yaml}"], "config key 'optim.lr_mlp': invalid value -0.1; accepted: a finite number >= 0", yaml="optim: {lr_mlp: -0.1}"),
    Case("num-samples-0", GEN + ["--config", "{yaml}"], "config key 'render.num_samples': invalid value 0", yaml="render: {num_samples: 0}"),
    Case("fov-range-reversed", GEN + ["--config", "{yaml}"], "config key 'camera.fov_range': invalid value (70.0, 40.0); accepted: [min, max] degrees within (0, 180)", yaml="camera: {fov_range: [70, 40]}"),
    Case("camera-distance-reversed", GEN + ["--config", "{yaml}"], "config key 'camera.distance.scale_range': invalid value (1.25, 1.0); accepted: [min, max] factors with 0 < min <= max", yaml="camera: {distance: {type: SphereFitDistance, scale_range: [1.25, 1.0]}}"),
    Case("camera-world-distance-0", GEN + ["--config", "{yaml}"], "config key 'camera.distance.distance_range': invalid value (0.0, 3.0)", yaml="camera: {distance: {type: WorldDistance, distance_range: [0, 3]}}"),
    Case("guidance-rescale-2", GEN + ["--config", "{yaml}"], "config key 'guidance.guidance_rescale': invalid value 2.0; accepted: a number in [0, 1]", yaml="guidance: {type: StableDiffusionGuidanceConfig, guidance_rescale: 2.0}"),
    Case("export-resolution-10000", GEN + ["--config", "{yaml}"], "--resolution 10000 (config key 'export.resolution'): the density grid of 10001^3 samples needs about 18.2 TiB", yaml="export: {resolution: 10000}"),
    Case("steps-0", GEN + ["--steps", "0"], "--steps must be a positive integer"),
    # --- reconstruct: flags, config and cameras, refused before training (and before any image is decoded)
    Case("rec-export-resolution", REC + ["--resolution", "10000"], "--resolution 10000 (config key 'export.resolution')"),
    Case("rec-seed-huge", REC + ["--seed", "99999999999999999999999"], "--seed (config key 'seed'): invalid value"),
    Case("rec-checkpoint-every-0", REC + ["--config", "{yaml}"], "config key 'checkpoint_every': invalid value 0", yaml="checkpoint_every: 0"),
    Case("rec-downscale-too-far", REC + ["--downscale", "4"], "--downscale 4 (config key 'data.downscale') leaves 8x8 px images of the 32x32 photos; at least 11 px a side are needed (the held-out SSIM's window): use --downscale 2 or less"),
    Case("rec-matrix-nan", REC, "frame 1 (frame_00001.png): the camera-to-world matrix ('transform_matrix') has nan at row 0, column 3; accepted: finite numbers only", edit=_frame_matrix(_nan_at_0_3)),
    Case("rec-matrix-inf", REC, "has inf at row 2, column 2", edit=_frame_matrix(lambda m: [m[0], m[1], [m[2][0], m[2][1], float("inf"), m[2][3]], m[3]])),
    Case("rec-matrix-zeros", REC, "frame 1 (frame_00001.png): the camera-to-world matrix's bottom row is [0.0, 0.0, 0.0, 0.0]; accepted: [0, 0, 0, 1]", edit=_frame_matrix(lambda m: [[0.0] * 4] * 4)),
    Case("rec-rotation-zeros", REC, "rotation is singular (determinant 0; all zeros)", edit=_frame_matrix(lambda m: [[0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 0, 3], [0, 0, 0, 1]])),
    Case("rec-focal-zero", REC, "frame 0 (frame_00000.png): focal length fx (fl_x) is 0.0; accepted: a finite number > 0 (pixels)", edit=_set_key("fl_x", 0)),
    Case("rec-focal-negative", REC, "focal length fy (fl_y) is -50.0", edit=_set_key("fl_y", -50)),
    Case("rec-albedo-reference-radiance", REC + ["--albedo-reference", "frame_00001.png:4,4,8,8=0.18"], "albedo_reference: a reference of known reflectance calibrates an albedo texture; this export's texture is 'radiance': add --texture albedo"),
    Case("rec-albedo-reference-syntax", REC + ["--texture", "albedo", "--albedo-reference", "frame_00001.png:4,4,8,8"], "--albedo-reference): invalid value 'frame_00001.png:4,4,8,8': expected PHOTO:x0,y0,x1,y1=REFLECTANCE"),
    Case("rec-albedo-reference-photo", REC + ["--texture", "albedo", "--albedo-reference", "IMG_1.jpg:4,4,8,8=0.18"], "--albedo-reference names the photo 'IMG_1.jpg', which is not one of this capture's photos (frame_00000.png"),
    Case("export-albedo-reference-generate", ["export", "{run}", "--texture", "albedo", "--albedo-reference", "a.png:4,4,8,8=0.18", "--out", "{out}"], "--albedo-reference calibrates the albedo of photo runs;"),
    # --- an existing run: damaged checkpoints, an oversized export, a run another process is training
    Case("export-resolution", ["export", "{run}", "--resolution", "10000"], "needs about 18.2 TiB of memory and this machine has"),
    Case("export-truncated-checkpoint", ["export", "{run}", "--out", "{out}"], "no readable checkpoint in", edit=_truncate_checkpoints),
    Case("render-truncated-checkpoint", ["render", "{run}", "--out", "{out}"], "no readable checkpoint in", edit=_truncate_checkpoints),
    Case("resume-truncated-checkpoint", ["generate", "--resume", "{run}"], "no readable checkpoint in", edit=_truncate_checkpoints),
    Case("resume-while-training", ["generate", "--resume", "{run}"], "is in use by process"),
    Case("export-into-run-while-training", ["export", "{run}"], "is in use by process"),
]  # fmt: skip


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    from t23d.data.synthetic import SyntheticScene
    from t23d.data.synthetic_writers import write_nerfstudio

    data = tmp_path_factory.mktemp("capture")
    write_nerfstudio(SyntheticScene(), data, n_views=4, resolution=32)
    return data


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file's size and mtime, but the run lock's (taking the lock records its holder there)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.name != ".lock"
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_before_any_work(case, tiny_sd_dir, trained_run, capture, tmp_path, capsys):
    run, data, out = trained_run, capture, tmp_path / "out"
    if "{run}" in case.argv and case.edit is not None:
        run = tmp_path / "run"
        shutil.copytree(trained_run, run)
        case.edit(run)
    if "{data}" in case.argv and case.edit is not None:
        data = tmp_path / "data"
        shutil.copytree(capture, data)
        case.edit(data)
    if case.yaml is not None:
        (tmp_path / "case.yaml").write_text(case.yaml + "\n")
    values = {"{prior}": str(tiny_sd_dir), "{out}": str(out), "{run}": str(run), "{data}": str(data)}
    values["{yaml}"] = str(tmp_path / "case.yaml")
    argv = [values.get(a, a) for a in case.argv]

    lock = None
    if case.id.endswith("while-training"):  # another process (here: this one) holds the run's lock
        from t23d.run.lock import RunLock

        lock = RunLock(run, "train").acquire()
    before = snapshot(run)
    try:
        code = main(argv)
    finally:
        if lock is not None:
            lock.release()
    err = capsys.readouterr().err

    assert code == case.code, err[-3000:]
    assert case.message in err, err[-3000:]
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))
    assert snapshot(run) == before  # an existing run is left exactly as it was


def test_a_full_disk_anywhere_is_a_clear_error(monkeypatch, capsys):
    """Checkpoint writes say which checkpoint is kept (tests/run/test_checkpoint.py); any other write
    that finds the disk full ends with a message too, not a traceback."""
    import errno

    import t23d.cli.render

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/renders/view_0000.png")

    monkeypatch.setattr(t23d.cli.render, "main", full)
    assert main(["render", "/runs/x"]) == 2
    err = capsys.readouterr().err
    assert "no space left on the device writing /runs/x/renders/view_0000.png; free some space" in err
