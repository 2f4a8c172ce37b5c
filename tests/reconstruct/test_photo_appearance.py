"""Photo runs with an appearance model, end to end on tiny synthetic captures of known albedo and poses:
the albedo a shaded run learns (vs the true albedo), exposure codes that stay out of the asset, and pose
refinement of perturbed cameras. Thresholds come from measured runs with margin (noted on each).

Slow: each test trains two or three tiny runs (1-5 min of CPU each; shading costs ~2x per step for the
normals). Run with ``--run-slow``, best with ``OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1`` on a loaded
machine (spinning OpenMP threads made these runs 16x slower at load 13 on 2 cores)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from t23d.data.synthetic import SyntheticScene, varied_views
from t23d.data.synthetic_writers import write_blender
from t23d.field.appearance import AppearanceRender
from t23d.field.background import Background, ConstantBackground
from t23d.reconstruct.config import reconstruct_preset
from t23d.reconstruct.run import load_reconstruct_state, read_scene, run_reconstruct
from t23d.render.cameras import Cameras
from t23d.render.pose_refine import axis_angle_to_matrix, pose_errors
from t23d.render.volume import render_images

pytestmark = pytest.mark.slow

LIT = SyntheticScene(lighting="lambert", shading_space="linear", albedo_kind="plain")
"""Plain-coloured parts under a sun + ambient light, shaded in linear colour like a camera records it."""


def tiny_config(data: Path, steps: int, **changes):
    """The fast preset at 512 rays per step, no export."""
    cfg = reconstruct_preset("fast")
    return dataclasses.replace(
        cfg, input=str(data), steps=steps, rays_per_batch=512, device="cpu", export_at_end=False, **changes
    )


def albedo_psnr(
    run: Path, truth: SyntheticScene, capture, output: str, gain: torch.Tensor | None = None
) -> tuple[float, float]:
    """PSNR of the run's colour at the test views vs the true albedo over the object's pixels: raw, and
    after the single global scale that fits best (albedo and light share a scale ambiguity). ``gain``:
    the albedo calibration to apply (``AppearanceRender.albedo_gain``)."""
    cfg, state = load_reconstruct_state(run, torch.device("cpu"))
    scene = read_scene(run)
    model = state.extras.get("appearance")
    app = None if model is None else AppearanceRender(model, None, output, albedo_gain=gain)  # type: ignore[arg-type]
    preds, gts = [], []
    for i in scene["test_indices"]:
        cams = Cameras(
            torch.tensor(scene["c2w"][i]).float()[None],
            torch.tensor(scene["intrinsics"][i]).float()[None],
            scene["width"],
            scene["height"],
        )
        black = Background(ConstantBackground((0.0, 0.0, 0.0)))
        out = render_images(state.field, black, cams, cfg.render, state.occupancy, appearance=app)
        gt = dataclasses.replace(truth, lighting="unlit").render(capture.c2w[i], capture.camera)
        mask = gt[..., 3] > 0.99
        preds.append(out["rgb"][0].numpy()[mask])
        gts.append(gt[..., :3][mask])
    pred, gt = np.concatenate(preds), np.concatenate(gts)
    scale = float((pred * gt).sum() / (pred * pred).sum())
    raw = -10 * math.log10(float(((pred - gt) ** 2).mean()))
    fit = -10 * math.log10(float(((np.clip(pred * scale, 0, 1) - gt) ** 2).mean()))
    return raw, fit


@pytest.fixture(scope="module")
def lit_capture(tmp_path_factory):
    data = tmp_path_factory.mktemp("lit")
    return data, write_blender(LIT, data, n_train=16, n_test=2, resolution=32)


@pytest.fixture(scope="module")
def shaded_run(lit_capture, tmp_path_factory) -> Path:
    """The lit capture trained with the shading model (``--texture albedo``), 200 steps."""
    base = tiny_config(lit_capture[0], 200)
    shaded_cfg = dataclasses.replace(base, export=dataclasses.replace(base.export, texture="albedo"))
    return run_reconstruct(shaded_cfg, tmp_path_factory.mktemp("albedo"))


def test_shading_model_separates_albedo_from_the_light(lit_capture, shaded_run, tmp_path):
    data, capture = lit_capture
    base = tiny_config(data, 200)
    plain = run_reconstruct(base, tmp_path / "radiance")
    shaded = shaded_run
    saved = json.loads((shaded / "metrics.json").read_text())
    assert saved["appearance"]["shading"] == "sh"  # --texture albedo chose the shading model
    radiance_raw, radiance_fit = albedo_psnr(plain, LIT, capture, "radiance")
    albedo_raw, albedo_fit = albedo_psnr(shaded, LIT, capture, "albedo")
    # measured (200 steps, 32 px, 512 rays/step): the radiance vs the true albedo 15.0 dB raw / 19.8 dB after
    # the scale fit; the learnt albedo 14.6 raw / 22.8 fitted (raw: the albedo/light scale is ambiguous)
    assert albedo_fit > radiance_fit + 1.0, (albedo_fit, radiance_fit)
    assert albedo_fit > 20.0, albedo_fit


def test_a_grey_card_pins_the_albedo_scale_the_photos_leave_open(lit_capture, shaded_run, tmp_path):
    """A box on the capture's box-shaped part, whose reflectance is known, marked in a held-out photo: the
    calibrated albedo's raw PSNR comes up to what the best global scale would give."""
    from t23d.data.albedo_reference import parse_albedo_reference
    from t23d.reconstruct.calibrate import albedo_gain

    data, capture = lit_capture
    scene = read_scene(shaded_run)
    i = scene["test_indices"][0]
    # the true albedo of that view: pixels that show the box (one plain colour) away from its edges
    truth = dataclasses.replace(LIT, lighting="unlit").render(capture.c2w[i], capture.camera)
    box_colour = np.asarray(LIT.plain_colors[0])  # the box's; [1] is the sphere's
    on_box = (truth[..., 3] > 0.999) & (np.abs(truth[..., :3] - box_colour).max(-1) < 1e-3)
    inner = on_box[:-2, :-2] & on_box[1:-1, 1:-1] & on_box[2:, 2:] & on_box[:-2, 2:] & on_box[2:, :-2]
    rows, cols = np.nonzero(inner)
    assert len(rows), "the test view shows no inner pixel of the box"
    y, x = int(rows[len(rows) // 2]) + 1, int(cols[len(cols) // 2]) + 1  # centre of a 3x3 on the box
    reflectance = ((box_colour + 0.055) / 1.055) ** 2.4  # linear
    name = "/".join(Path(scene["image_paths"][i]).parts[-2:])
    spec = f"{name}:{x - 1},{y - 1},{x + 2},{y + 2}=" + ",".join(f"{v:.5f}" for v in reflectance)
    cfg, state = load_reconstruct_state(shaded_run, torch.device("cpu"))
    gain, report = albedo_gain(
        state.field,
        state.extras["appearance"],
        state.occupancy,
        cfg.render,
        scene,
        parse_albedo_reference(spec),
    )
    assert report["pixels"] >= 4, report
    raw, fit = albedo_psnr(shaded_run, LIT, capture, "albedo")
    calibrated, _ = albedo_psnr(shaded_run, LIT, capture, "albedo", gain=gain)
    # measured (200 steps, 32 px): raw 14.6 dB, after the best global scale 19.7 dB, calibrated on the
    # 3x3-pixel card 18.5 dB (gain 1.62, 1.53, 1.24)
    assert calibrated > raw + 2.5, (calibrated, raw, fit, report)
    assert calibrated > fit - 2.5, (calibrated, fit, report)
    # the same through `t23d export`: the texture is calibrated and export.json says how
    from t23d.cli.main import main

    out = tmp_path / "calibrated"
    argv = ["export", str(shaded_run), "--texture", "albedo", "--albedo-reference", spec, "--out", str(out)]
    assert main(argv + ["--resolution", "64", "--faces", "3000", "--texture-size", "256"]) == 0
    saved = json.loads((out / "export.json").read_text())["texture_calibration"]
    assert saved["gain"] == pytest.approx(gain.tolist(), rel=1e-3) and saved["photo"] == name


def test_exposure_codes_learn_each_photos_exposure_and_white_balance(tmp_path):
    """Training photos exposed up to +-1 stop apart, white balance +-15 % per channel: the per-photo gains
    learn them (up to the common factor, which the neutral code absorbs)."""
    scene = SyntheticScene()
    data = tmp_path / "exposure"
    views = varied_views(scene, 16, seed=1, exposure_stops=1.0, white_balance=0.15)
    write_blender(scene, data, n_train=16, n_test=2, resolution=32, train_scenes=views)
    base = tiny_config(data, 200)
    run = run_reconstruct(
        dataclasses.replace(base, appearance=dataclasses.replace(base.appearance, per_image="exposure")),
        tmp_path / "coded",
    )
    _, state = load_reconstruct_state(run, torch.device("cpu"))
    model = state.extras["appearance"]
    train = read_scene(run)["train_indices"]
    with torch.no_grad():
        learnt = model.gains(torch.tensor(train)).log().numpy()  # type: ignore[operator]  # [16, 3]
    true = np.log(np.array([v.camera_gain for v in views]))
    true -= true.mean(0)
    corr = float(np.corrcoef(learnt.ravel(), true.ravel())[0, 1])
    error = float(np.abs(learnt - true).mean())
    # measured: correlation 0.92, mean error 0.15 in log gain for a spread of 0.37 (200 steps, 32 px); the
    # held-out PSNR (neutral code vs photos of the average exposure) was 19.8 dB with and without codes
    assert corr > 0.8, corr
    assert error < 0.6 * float(np.abs(true).mean()), (error, np.abs(true).mean())
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["appearance"]["exposure_stops"]["std"] > 0.2, saved["appearance"]


def test_pose_refinement_reduces_the_error_of_perturbed_poses(tmp_path):
    """Training poses turned by 1 degree and moved by 1 % of their distance from the object, at random:
    refining them lowers the pose error (after the best similarity alignment to the true poses)."""
    data = tmp_path / "poses"
    write_blender(SyntheticScene(), data, n_train=20, n_test=2, resolution=48)
    frames = json.loads((data / "transforms_train.json").read_text())
    rng = np.random.default_rng(0)
    true = []
    for f in frames["frames"]:
        m = np.array(f["transform_matrix"])
        true.append(m.copy())
        w = rng.normal(size=3)
        turn = axis_angle_to_matrix(torch.tensor(w / np.linalg.norm(w) * math.radians(1.0))[None])[0]
        m[:3, :3] = m[:3, :3] @ turn.numpy()
        d = rng.normal(size=3)
        m[:3, 3] += d / np.linalg.norm(d) * 0.01 * np.linalg.norm(m[:3, 3])
        f["transform_matrix"] = m.tolist()
    (data / "transforms_train.json").write_text(json.dumps(frames))
    base = tiny_config(data, 300)
    cfg = dataclasses.replace(base, pose_refinement=dataclasses.replace(base.pose_refinement, enabled=True))
    run = run_reconstruct(cfg, tmp_path / "out")
    _, state = load_reconstruct_state(run, torch.device("cpu"))
    scene = read_scene(run)
    c2w = torch.tensor(scene["c2w"]).float()
    train = scene["train_indices"]
    before = pose_errors(c2w[train].double().numpy(), np.stack(true))
    refined = state.extras["poses"](c2w).detach()  # type: ignore[operator]
    after = pose_errors(refined[train].double().numpy(), np.stack(true))
    assert 0.8 < before["rotation_deg"] < 1.2  # the perturbation as measured
    # measured (300 steps, 48 px): rotation error 1.05 -> 0.66 degrees; camera centres 0.0248 -> 0.0242
    # (only 2.5 % better: positions need longer runs), so positions are only checked not to get worse
    assert after["rotation_deg"] < 0.8 * before["rotation_deg"], (before, after)
    assert after["position"] < 1.05 * before["position"], (before, after)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["poses"]["refined"] and saved["poses"]["rotation_deg"]["mean"] > 0.1
