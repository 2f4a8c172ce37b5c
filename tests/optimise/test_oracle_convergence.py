"""Oracle-prior convergence: with a guidance whose noise prediction is the analytic optimum for renders
of a known coloured sphere, the SDS loop (renderer + field + optimiser, the product code) must recover
that sphere: silhouette IoU >= 0.9 from views never used in training."""

from __future__ import annotations

import dataclasses

import torch
from helpers.oracle import OracleGuidance, sphere_target

from t23d.common.schedule import Constant
from t23d.field.background import ConstantBackground
from t23d.optimise.config import preset
from t23d.optimise.generate import load_generate_state, run_generate
from t23d.optimise.regularisers import RegularisersConfig
from t23d.render.cameras import RandomCameraConfig, orbit_cameras
from t23d.render.shading import ShadingConfig
from t23d.render.volume import render_images

DISTANCE, FOV = 1.75, 50.0


def test_oracle_prior_drives_the_loop_to_the_target_shape(tmp_path):
    cfg = preset("fast")
    cfg = dataclasses.replace(
        cfg,
        prompt="oracle sphere",
        steps=250,
        device="cpu",
        export_at_end=False,
        background=ConstantBackground((1.0, 1.0, 1.0)),
        camera=RandomCameraConfig(resolution=32, distance_range=(DISTANCE, DISTANCE), fov_range=(FOV, FOV)),
        shading=ShadingConfig(albedo_only_steps=10**9),
        regularisers=RegularisersConfig(orientation=Constant(0.0), sparsity=Constant(0.0)),
        checkpoint_every=1000,
    )
    run_dir = run_generate(cfg, tmp_path, guidance=OracleGuidance(DISTANCE, FOV))
    cfg, state = load_generate_state(run_dir, torch.device("cpu"))
    # unseen views: elevations and azimuths off the training distribution's samples, higher resolution
    views = orbit_cameras(6, 64, DISTANCE, FOV, elevation_deg=30.0, start_azimuth_deg=17.0)
    out = render_images(state.field, state.background, views.cameras, cfg.render, state.occupancy)
    target_rgb, target_mask = sphere_target(views.cameras)
    pred = out["opacity"] > 0.5
    true = target_mask > 0.5
    iou = float((pred & true).sum() / (pred | true).sum())
    assert iou >= 0.9, iou
    # colours follow too (top red-ish, bottom blue-ish): mean error inside the silhouette is small
    err = (out["rgb"] - target_rgb).abs()[pred & true].mean()
    assert float(err) < 0.1, float(err)
