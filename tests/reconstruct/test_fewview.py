"""Few-view policy: sparsity measures, the automatic choice, level weights and the SfM-point loss."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from t23d.common.errors import ConfigError
from t23d.common.schedule import Constant, Linear
from t23d.data.synthetic import orbit_poses
from t23d.field.appearance import AppearanceConfig
from t23d.field.hashgrid import HashGridConfig
from t23d.field.nerf import FieldConfig, NeRFField, SDFConfig
from t23d.reconstruct.config import ReconstructConfig, reconstruct_preset, validate_reconstruct_config
from t23d.reconstruct.fewview import (
    FewViewConfig,
    apply_visible_levels,
    level_weights,
    plan_few_view,
    sparse_point_loss,
    view_spacing,
)


def positions(n: int) -> torch.Tensor:
    return torch.from_numpy(orbit_poses(n, 3.0, (5.0, 65.0))[:, :3, 3]).float()


def test_spacing_and_coverage_grow_and_shrink_with_the_number_of_views():
    s10, c10 = view_spacing(positions(10), torch.zeros(3))
    s100, c100 = view_spacing(positions(100), torch.zeros(3))
    assert s10 > 2.5 * s100 and s100 < 12.0, (s10, s100)
    assert c100 > c10 and 0.3 < c100 < 0.7  # the upper hemisphere, not the bottom


def test_auto_regularises_sparse_captures_only_and_picks_per_geometry():
    base = ReconstructConfig(steps=1000)
    cfg, plan = plan_few_view(base, positions(100), torch.zeros(3), None)
    assert not plan.sparse and cfg.visible_levels is None and "dense enough" in plan.reason
    cfg, plan = plan_few_view(base, positions(20), torch.zeros(3), None)
    assert plan.sparse and "20 training photos" in plan.reason
    assert isinstance(cfg.visible_levels, Linear) and cfg.visible_levels.end_step == 500
    assert cfg.distortion == Constant(0.01) and "distortion" in plan.regularisers
    # the colour of a sparse capture is a function of position only; a dense one keeps its view dependence
    assert base.field.view_dependent and not cfg.field.view_dependent
    assert plan.regularisers["view_independent_colour"] is True
    assert cfg.field == dataclasses.replace(base.field, view_dependent=False)
    keep = dataclasses.replace(base, few_view=FewViewConfig(view_independent=False))
    assert plan_few_view(keep, positions(20), torch.zeros(3), None)[0].field.view_dependent
    sdf = dataclasses.replace(base, field=dataclasses.replace(base.field, geometry="sdf"))
    cfg, plan = plan_few_view(sdf, positions(20), torch.zeros(3), torch.zeros(50, 3))
    # masked photos: an SDF keeps its own smoothness, no coarse-to-fine, no stronger curvature (measured
    # worse), no distortion loss (a density-field remedy); its colour is view-independent, the points pull
    assert (
        cfg.visible_levels is None
        and cfg.sdf_training == sdf.sdf_training
        and cfg.distortion == Constant(0.0)
    )
    assert sorted(plan.regularisers) == ["sfm_points", "view_independent_colour"]
    # the SDF presets' late curvature anneal is kept for masked sparse captures too (duck-walk20: measured
    # better than the constant weight)
    preset = dataclasses.replace(reconstruct_preset("default", "sdf"), steps=1000)
    assert isinstance(preset.sdf_training.curvature, Linear)
    cfg_p, plan_p = plan_few_view(preset, positions(20), torch.zeros(3), None)
    assert cfg_p.sdf_training == preset.sdf_training and "curvature" not in plan_p.regularisers
    assert plan_few_view(preset, positions(100), torch.zeros(3), None)[0] == preset  # dense: as it was
    # unmasked photos keep the SDF's smoothness too by default (measured worse with it: ears lost)
    assert FewViewConfig().smooth_sdf == "off"
    cfg_u, plan_u = plan_few_view(sdf, positions(20), torch.zeros(3), None, masked=False)
    assert cfg_u.visible_levels is None and cfg_u.sdf_training == sdf.sdf_training
    assert sorted(plan_u.regularisers) == ["view_independent_colour"]
    # smooth_sdf 'on' (or 'auto' for unmasked photos): coarse-to-fine with the stronger curvature loss
    on = dataclasses.replace(sdf, few_view=FewViewConfig(smooth_sdf="on"))
    auto = dataclasses.replace(sdf, few_view=FewViewConfig(smooth_sdf="auto"))
    for case, masked in ((auto, False), (on, True)):
        cfg_s, plan_s = plan_few_view(case, positions(20), torch.zeros(3), None, masked=masked)
        assert isinstance(cfg_s.visible_levels, Linear) and cfg_s.sdf_training.curvature == Constant(5e-4)
        assert sorted(plan_s.regularisers) == ["coarse_to_fine", "curvature", "view_independent_colour"]
    assert plan_few_view(auto, positions(20), torch.zeros(3), None, masked=True)[0].visible_levels is None
    assert plan.regularisers["sfm_points"] == {"weight": 0.1, "points": 50, "reach": [0.5, 0.05, 500]}
    assert cfg.sparse_points == Constant(0.1)
    # the points pull the surface from far at first (the field starts as a small sphere), then only
    # from close by (what is still far by then is an SfM outlier)
    assert cfg.sparse_points_max_distance == Linear(0.5, 0.05, 0, 500)
    off = dataclasses.replace(base, few_view=FewViewConfig(mode="off"))
    cfg, plan = plan_few_view(off, positions(10), torch.zeros(3), None)
    assert not plan.sparse and cfg == off
    # a dense capture of unmasked photos (SDF, SfM points): only the SfM points' pull, nothing else
    cfg, plan = plan_few_view(sdf, positions(100), torch.zeros(3), torch.zeros(50, 3), masked=False)
    assert not plan.sparse and "unmasked photos" in plan.reason and list(plan.regularisers) == ["sfm_points"]
    assert cfg == dataclasses.replace(
        sdf, sparse_points=Constant(0.1), sparse_points_max_distance=Linear(0.5, 0.05, 0, 500)
    )
    for masked, geometry_cfg, points in ((True, sdf, torch.zeros(50, 3)), (False, base, torch.zeros(50, 3))):
        assert (
            plan_few_view(geometry_cfg, positions(100), torch.zeros(3), points, masked=masked)[0]
            == geometry_cfg
        )
    assert plan_few_view(sdf, positions(100), torch.zeros(3), None, masked=False)[0] == sdf
    wide = dataclasses.replace(base, few_view=FewViewConfig(max_views=5))
    assert plan_few_view(wide, positions(12), torch.zeros(3), None)[1].reason.startswith("neighbouring")


def test_level_weights_fade_levels_in_one_after_the_other():
    assert level_weights(2.5, 5).tolist() == [1.0, 1.0, 0.5, 0.0, 0.0]
    f = NeRFField(FieldConfig(grid=HashGridConfig(n_levels=4, log2_hashmap_size=10, implementation="torch")))
    cfg = ReconstructConfig(field=f.cfg, visible_levels=Linear(1.0, 4.0, 0, 30))
    apply_visible_levels(f, cfg, 10)
    assert f.level_weights.tolist() == [1.0, 1.0, 0.0, 0.0]
    x = torch.rand(64, 3) * 1.6 - 0.8
    with torch.no_grad():
        coarse = f.density(x)
        f.encoding.table[f.encoding.table.shape[0] // 2 :] += 1.0  # levels 2 and 3 (1024 rows each)
        assert torch.equal(f.density(x), coarse)  # masked levels do not reach the output
    apply_visible_levels(f, cfg, 30)
    assert f.level_weights is None


def test_sparse_point_loss_is_zero_on_the_surface_and_robust_to_outliers():
    f = NeRFField(
        FieldConfig(
            geometry="sdf",
            sdf=SDFConfig(init_radius=0.5),
            grid=HashGridConfig(n_levels=4, log2_hashmap_size=10, implementation="torch", init_scale=0.0),
        )
    )
    with torch.no_grad():
        for p in f.density_mlp.parameters():
            p.zero_()  # an exact sphere of radius 0.5
    gen = torch.Generator().manual_seed(0)
    on = torch.nn.functional.normalize(torch.randn(100, 3, generator=gen), dim=-1) * 0.5
    assert float(sparse_point_loss(f, on, 64, gen, 10.0)) < 1e-5
    inside = on * 0.9  # 0.05 inside
    assert float(sparse_point_loss(f, inside, 64, gen, 10.0)) == pytest.approx(0.05, abs=1e-4)
    far = on * 0.2  # outliers 0.4 away count at most max_distance
    assert float(sparse_point_loss(f, far, 64, gen, 10.0)) == pytest.approx(0.05, abs=1e-6)
    far = far.requires_grad_(False)
    with torch.enable_grad():
        loss = sparse_point_loss(f, far, 64, gen, 10.0, max_distance=0.5)  # within reach: they pull
        loss.backward()
    assert float(loss) == pytest.approx(0.4, abs=1e-4)  # their true distance, not clamped
    assert sum(float(p.grad.abs().sum()) for p in f.parameters() if p.grad is not None) > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"few_view": FewViewConfig(mode="maybe")},
            "--few-views (config key 'few_view.mode'): invalid value",
        ),  # type: ignore[arg-type]
        (
            {"few_view": FewViewConfig(smooth_sdf="yes")},
            "config key 'few_view.smooth_sdf': invalid value 'yes'; accepted: 'auto', 'on' or 'off'",
        ),  # type: ignore[arg-type]
        ({"appearance": AppearanceConfig(shading="phong")}, "--shading (config key 'appearance.shading')"),  # type: ignore[arg-type]
        ({"appearance": AppearanceConfig(per_image="lighting")}, "'lighting' needs appearance.shading 'sh'"),
    ],
)
def test_photo_options_are_checked_before_any_work(change, message):
    cfg = dataclasses.replace(ReconstructConfig(input="photos"), **change)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_reconstruct_config(cfg)
    # an albedo texture turns the shading model on, so per-photo lighting is accepted with it
    ok = dataclasses.replace(
        ReconstructConfig(input="photos"),
        appearance=AppearanceConfig(per_image="lighting"),
        export=dataclasses.replace(ReconstructConfig().export, texture="albedo"),
    )
    validate_reconstruct_config(ok)
