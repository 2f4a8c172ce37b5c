"""The free-space loss (issue 12): the segments from each camera to the sparse points it saw are empty,
so the field is pushed to free space along them, inside its box."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from t23d.field.hashgrid import HashGridConfig
from t23d.field.nerf import FieldConfig, NeRFField, SDFConfig
from t23d.reconstruct.config import ReconstructConfig, reconstruct_preset, validate_reconstruct_config
from t23d.reconstruct.free_space import (
    FreeSpaceConfig,
    free_space_enabled,
    free_space_loss,
    free_space_report,
    free_space_segments,
)


def camera_at(*centre: float) -> torch.Tensor:
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor(centre)
    return c2w


def test_segments_run_from_the_camera_to_short_of_the_point_inside_the_box():
    c2w = torch.stack([camera_at(0, 0, 5), camera_at(5, 0, 0), camera_at(0, 5, 0), camera_at(0, 0, 1.02)])
    points = torch.tensor(
        [
            [0.0, 0.0, 0.5],  # inside the box
            [0.0, 0.0, -5.0],  # beyond it: the ray crosses the whole box
            [5.0, 3.0, 0.0],  # beside it: the ray misses the box
        ]
    )
    views = torch.tensor([[0, 0], [1, 0], [2, 1], [0, 2], [0, 3]])  # camera 2 is held out below
    seg = free_space_segments(points, views, c2w, [0, 1, 3], bound=1.0, margin=0.05)
    assert seg.shape == (3, 2, 4)
    expected = torch.tensor(
        [
            [[0.0, 0.0, 1.0], [0.0, 0.0, 0.55]],  # enters the box at z = 1, stops 0.05 before the point
            [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]],  # clipped at both faces
            [[0.0, 0.0, 1.0], [0.0, 0.0, 0.55]],  # camera 3 stands just outside: clipped at z = 1 as well
        ]
    )
    assert torch.allclose(seg[..., :3], expected, atol=1e-6), seg
    assert (seg[..., 3] == 0).all()  # no cone
    # a cone of slope 0.01: its radius grows with the distance from the camera (4 at z = 1, 4.45 at z = 0.55)
    slope = torch.tensor([0.01, 0.02, 0.03, 0.04])
    cone = free_space_segments(points, views, c2w, [0, 1, 3], bound=1.0, margin=0.05, cone_slope=slope)
    assert torch.allclose(cone[..., :3], seg[..., :3]) and torch.allclose(
        cone[0, :, 3], torch.tensor([0.04, 0.0445])
    )
    assert torch.allclose(cone[2, :, 3], 0.04 * torch.tensor([0.02, 0.47]))  # camera 3, 0.02 from the box
    # the (point 2, camera 1) pair gives nothing (its segment misses the box), nor (point 0, camera 2)
    # (camera 2 is held out); a point closer than the margin gives no segment either
    near = free_space_segments(
        torch.tensor([[0.0, 0.0, 0.99]]), torch.tensor([[0, 0]]), camera_at(0, 0, 1.02)[None], [0], 1.0, 0.05
    )
    assert near.shape == (0, 2, 4)
    no_views = torch.zeros(0, 2, dtype=torch.long)
    assert free_space_segments(points, no_views, c2w, [0], 1.0, 0.05).shape == (0, 2, 4)


def sphere_field(radius: float) -> NeRFField:
    """An exact SDF sphere of ``radius`` (the hash grid starts at zero, the MLP zeroed)."""
    f = NeRFField(
        FieldConfig(
            geometry="sdf",
            sdf=SDFConfig(init_radius=radius),
            grid=HashGridConfig(n_levels=4, log2_hashmap_size=10, implementation="torch", init_scale=0.0),
        )
    )
    with torch.no_grad():
        for p in f.density_mlp.parameters():
            p.zero_()
    return f


def test_the_loss_is_the_mean_depth_of_the_samples_inside_the_solid():
    f = sphere_field(0.5)
    gen = torch.Generator().manual_seed(0)
    outside = torch.tensor([[[0.0, 0.0, 1.0, 0.0], [0.0, 0.9, 1.0, 0.0]]])  # never inside the sphere
    assert float(free_space_loss(f, outside, 256, gen, 10.0)) == 0.0
    through = torch.tensor([[[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, -1.0, 0.0]]])
    # samples uniform on z in [-1, 1]: relu(0.5 - |z|) averages 0.125
    assert float(free_space_loss(f, through, 20000, gen, 10.0)) == pytest.approx(0.125, abs=0.005)


def test_a_cone_around_the_segment_reaches_solid_beside_it():
    """A line of sight passing 0.05 beside the sphere costs nothing; its cone of radius 0.1 (the patch of
    pixels the feature was matched on) reaches into the sphere, and every sample stays within the cone."""
    f = sphere_field(0.5)
    gen = torch.Generator().manual_seed(0)
    line = torch.tensor([[[0.55, 0.0, 1.0, 0.0], [0.55, 0.0, -1.0, 0.0]]])
    assert float(free_space_loss(f, line, 4000, gen, 10.0)) == 0.0
    cone = line.clone()
    cone[..., 3] = 0.1
    assert float(free_space_loss(f, cone, 4000, gen, 10.0)) > 0.0
    seen = []
    f_sdf = f.sdf
    f.sdf = lambda x: seen.append(x) or f_sdf(x)  # type: ignore[method-assign]
    free_space_loss(f, cone, 4000, gen, 10.0)
    x = seen[0]
    across = (x[:, :2] - torch.tensor([0.55, 0.0])).norm(dim=-1)
    assert float(across.max()) <= 0.1 + 1e-6 and float(across.mean()) > 0.05  # uniform in the disc: 2/3 r


def test_minimising_it_opens_a_tunnel_along_the_line_of_sight_and_nowhere_else():
    """A learnt ball of radius 0.5 with a line of sight through its middle. What holds the rest of the
    ball in a run (the photos) is here a fit to the true distance at points more than 0.2 from the axis."""
    gen = torch.Generator().manual_seed(0)
    grid = HashGridConfig(n_levels=6, log2_hashmap_size=11, max_resolution=64, implementation="torch")
    f = NeRFField(FieldConfig(geometry="sdf", sdf=SDFConfig(init_radius=0.5), grid=grid), generator=gen)
    held = torch.rand(2000, 3, generator=gen) * 2 - 1
    held = held[held.norm(dim=-1) < 0.95]
    through = torch.tensor([[[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, -1.0, 0.0]]])
    opt = torch.optim.Adam(f.parameters(), lr=1e-2)

    def fit(points: torch.Tensor, steps: int, free_space: bool) -> None:
        for _ in range(steps):
            opt.zero_grad()
            loss = (f.sdf(points) - (points.norm(dim=-1) - 0.5)).square().mean()
            if free_space:
                loss = loss + free_space_loss(f, through, 512, gen, 10.0)
            loss.backward()
            opt.step()

    axis = torch.tensor([[0.0, 0.0, z] for z in (-0.3, 0.0, 0.3)])
    away = torch.tensor([[0.35, 0.0, 0.0], [0.0, -0.35, 0.0], [0.25, 0.25, 0.0]])  # 0.15 inside
    fit(held, 100, free_space=False)  # the ball, solid along the axis too
    with torch.no_grad():
        assert (f.sdf(axis) < -0.15).all() and float(free_space_loss(f, through, 4000, gen, 10.0)) > 0.1
    fit(held[held[:, :2].norm(dim=-1) > 0.2], 100, free_space=True)
    with torch.no_grad():
        assert (f.sdf(axis) > 0).all(), f.sdf(axis)  # the tunnel is open (measured > 3)
        assert (f.sdf(away) < -0.05).all(), f.sdf(away)  # the rest of the ball is solid (measured < -0.09)
        assert float(free_space_loss(f, through, 4000, gen, 10.0)) == 0.0


def test_density_fields_are_pushed_below_the_surface_density():
    f = NeRFField(FieldConfig(grid=HashGridConfig(n_levels=4, log2_hashmap_size=10, implementation="torch")))
    assert not f.is_sdf
    gen = torch.Generator().manual_seed(0)
    seg = torch.tensor([[[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, -1.0, 0.0]]])
    x = torch.linspace(-1, 1, 200)[:, None] * torch.tensor([[0.0, 0.0, 1.0]])
    with torch.no_grad():
        sigma = f.density(x)
    surface = float(sigma.mean())  # half the samples, roughly, count as "surface or denser"
    loss = free_space_loss(f, seg, 4000, gen, surface)
    assert 0.0 < float(loss) <= 1.0
    loss.backward()
    assert sum(float(p.grad.abs().sum()) for p in f.parameters() if p.grad is not None) > 0


def test_auto_is_on_for_unmasked_photos_with_tracks_and_the_default_is_off():
    views = torch.tensor([[0, 0]])
    assert not free_space_enabled(FreeSpaceConfig(), masked=False, point_views=views)  # opt-in
    auto = FreeSpaceConfig(mode="auto")
    assert free_space_enabled(auto, masked=False, point_views=views)
    assert not free_space_enabled(auto, masked=True, point_views=views)  # silhouettes carve already
    assert free_space_enabled(FreeSpaceConfig(mode="on"), masked=True, point_views=views)
    assert not free_space_enabled(FreeSpaceConfig(mode="off"), masked=False, point_views=views)
    assert not free_space_enabled(auto, masked=False, point_views=None)
    assert not free_space_enabled(auto, masked=False, point_views=torch.zeros(0, 2, dtype=torch.long))
    assert not free_space_enabled(FreeSpaceConfig(weight=0.0), masked=False, point_views=views)
    assert free_space_report(auto, True, views, 0) == {
        "on": False,
        "reason": "the photos have masks: their silhouettes carve free space",
        "segments": 0,
        "weight": 0.0,
        "margin": 0.05,
    }
    report = free_space_report(auto, False, views, 12)
    assert report["on"] and report["weight"] == 0.1 and "12 camera-to-point segments" in report["reason"]
    assert "no tracks" in free_space_report(auto, False, None, 0)["reason"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"mode": "sometimes"},
            "'free_space.mode': invalid value 'sometimes'; accepted: 'auto', 'on' or 'off'",
        ),
        ({"weight": -1.0}, "'free_space.weight': invalid value -1.0; accepted: a number >= 0 (0: off)"),
        (
            {"samples_per_step": 0},
            "'free_space.samples_per_step': invalid value 0; accepted: an integer >= 1",
        ),
    ],
)
def test_bad_free_space_options_are_refused(change, message):
    from t23d.common.errors import ConfigError

    cfg = dataclasses.replace(ReconstructConfig(input="x"), free_space=FreeSpaceConfig(**change))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_reconstruct_config(cfg)


def unmasked_capture(masked: bool = False) -> SimpleNamespace:
    """Four photos of 8 px around the origin; one point beyond the box, seen by two of the photos (a
    third photo is held out), through the middle of the field's initial sphere."""
    c2w = torch.stack([camera_at(0, 0, 3), camera_at(3, 0, 0), camera_at(0, 3, 0), camera_at(-3, 0, 0)])
    return SimpleNamespace(
        images=torch.rand(4, 8, 8, 3),
        alphas=torch.ones(4, 8, 8) if masked else None,
        c2w=c2w,
        intrinsics=torch.tensor([[8.0, 8.0, 4.0, 4.0]] * 4),
        width=8,
        height=8,
        train_indices=[0, 1, 3],
        points=torch.tensor([[0.0, 0.0, -3.0], [-3.0, 0.0, 0.0]]),
        point_views=torch.tensor([[0, 0], [0, 2], [1, 1]]),
    )


def test_an_unmasked_run_trains_with_free_space_along_its_segments():
    """The run's wiring: the plan recorded in run.json and metrics.json, the segments the training step
    draws from (held-out photos left out), and the loss in the step's values."""
    from t23d.field.background import ContractedBackground
    from t23d.reconstruct.capture import free_space_plan
    from t23d.reconstruct.run import _train_images
    from t23d.reconstruct.train import build_reconstruct_state, photometric_step

    cfg = dataclasses.replace(
        reconstruct_preset("fast", "sdf"), rays_per_batch=64, free_space=FreeSpaceConfig(mode="auto")
    )
    capture = unmasked_capture()
    plan = free_space_plan(cfg, capture)
    assert plan["on"] and plan["segments"] == 2 and plan["weight"] == 0.1  # camera 2 is held out
    data = _train_images(capture, None, torch.device("cpu"), cfg)
    assert data.free_space is not None and data.free_space.shape == (2, 2, 4)
    assert torch.allclose(data.free_space[0, :, :3], torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]))
    state = build_reconstruct_state(
        cfg, ContractedBackground(), torch.device("cpu"), 4, capture.train_indices
    )
    info = photometric_step(cfg, state, data)
    assert info.losses["free_space"] > 0  # the initial sphere fills the middle of both segments
    off = dataclasses.replace(cfg, free_space=FreeSpaceConfig(mode="off"))
    assert _train_images(capture, None, torch.device("cpu"), off).free_space is None
    assert (
        "free_space"
        not in photometric_step(off, state, _train_images(capture, None, torch.device("cpu"), off)).losses
    )
    masked = unmasked_capture(masked=True)
    assert not free_space_plan(cfg, masked)["on"]
    assert _train_images(masked, torch.ones(3), torch.device("cpu"), cfg).free_space is None
