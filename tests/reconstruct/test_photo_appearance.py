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


def albedo_psnr(run: Path, truth: SyntheticScene, capture, output: str) -> tuple[float, float]:
    """PSNR of the run's colour at the test views vs the true albedo over the object's pixels: raw, and
    after the single global scale that fits best (albedo and light share a scale ambiguity)."""
    cfg, state = load_reconstruct_state(run, torch.device("cpu"))
    scene = read_scene(run)
    model = state.extras.get("appearance")
    app = None if model is None else AppearanceRender(model, None, output)  # type: ignore[arg-type]
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


def test_shading_model_separates_albedo_from_the_light(lit_capture, tmp_path):
    data, capture = lit_capture
    base = tiny_config(data, 200)
    plain = run_reconstruct(base, tmp_path / "radiance")
    shaded_cfg = dataclasses.replace(base, export=dataclasses.replace(base.export, texture="albedo"))
    shaded = run_reconstruct(shaded_cfg, tmp_path / "albedo")
    saved = json.loads((shaded / "metrics.json").read_text())
    assert saved["appearance"]["shading"] == "sh"  # --texture albedo chose the shading model
    radiance_raw, radiance_fit = albedo_psnr(plain, LIT, capture, "radiance")
    albedo_raw, albedo_fit = albedo_psnr(shaded, LIT, capture, "albedo")
    # measured (200 steps, 32 px, 512 rays/step): the radiance vs the true albedo 15.0 dB raw / 19.8 dB after
    # the scale fit; the learnt albedo 14.6 raw / 22.8 fitted (raw: the albedo/light scale is ambiguous)
    assert albedo_fit > radiance_fit + 1.0, (albedo_fit, radiance_fit)
    assert albedo_fit > 20.0, albedo_fit


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
