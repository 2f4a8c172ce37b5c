"""Image -> 3D in the optimisation loop: the reference camera, its losses, and whole image runs (resume)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from t23d.common.config import apply_overrides, load_yaml
from t23d.common.errors import ConfigError, T23dError
from t23d.common.schedule import Constant
from t23d.optimise.config import GenerateConfig, image_preset
from t23d.optimise.generate import load_generate_state, run_generate
from t23d.optimise.reference import ReferenceView, ReferenceViewConfig
from t23d.optimise.sds import build_state, sds_step
from t23d.prompt.image import ImagePrompt, ImagePromptConfig, frame_object
from t23d.render.cameras import RandomCameraConfig, SphereFitDistance, WorldDistance

REPO = Path(__file__).resolve().parents[2]
IMAGE_SMOKE = REPO / "configs" / "image-cpu-smoke.yaml"
CPU = torch.device("cpu")


def synthetic_object(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A red disk and a blue square (rgb ``[S, S, 3]`` float, alpha ``[S, S]`` float), off-centre."""
    yy, xx = np.mgrid[0:size, 0:size] * (64.0 / size)
    disk = (xx - 28) ** 2 + (yy - 34) ** 2 < 18**2
    square = (abs(xx - 44) < 10) & (abs(yy - 22) < 10)
    rgb = np.zeros((size, size, 3), np.float32)
    rgb[disk] = (0.9, 0.1, 0.1)
    rgb[square] = (0.1, 0.2, 0.9)
    return rgb, (disk | square).astype(np.float32)


def image_config(prior: Path | None, image: Path | None = None, **changes) -> GenerateConfig:
    """The fast image preset with configs/image-cpu-smoke.yaml, CPU."""
    cfg = apply_overrides(image_preset("fast"), load_yaml(IMAGE_SMOKE))
    ref = cfg.reference if image is None else dataclasses.replace(cfg.reference, image=str(image))
    guidance = cfg.guidance if prior is None else dataclasses.replace(cfg.guidance, pretrained=str(prior))
    return dataclasses.replace(cfg, device="cpu", reference=ref, guidance=guidance, **changes)


def _prompt(size: int = 64) -> ImagePrompt:
    rgb, alpha = synthetic_object()
    return frame_object(rgb, alpha, ImagePromptConfig(size=size))


def test_reference_camera_looks_at_the_origin_from_the_input_view():
    cam = RandomCameraConfig(distance=WorldDistance((3.0, 3.0)), fov_range=(30.0, 30.0))
    view = ReferenceView(ReferenceViewConfig(elevation_deg=30.0, resolution=16), _prompt(), cam, CPU)
    c2w = view.cameras.c2w[0]
    expected = torch.tensor([0.0, -3.0 * math.cos(math.radians(30)), 3.0 * math.sin(math.radians(30))])
    assert torch.allclose(c2w[:3, 3], expected, atol=1e-5)
    assert torch.allclose(-c2w[:3, 2], -expected / 3.0, atol=1e-5)  # looks down -Z at the origin
    focal = float(view.cameras.intrinsics[0, 0])
    assert focal == pytest.approx(8.0 / math.tan(math.radians(15.0)))
    cond = view.condition()
    assert cond.image.shape == (64, 64, 3) and cond.distance == 3.0 and cond.elevation_deg == 30.0
    assert torch.allclose(cond.image[0, 0], torch.ones(3))  # composited over white
    assert view.target_rgb.shape == (256, 3) and view.target_alpha.shape == (256,)


def test_distance_and_fov_must_be_one_value():
    cam = RandomCameraConfig(distance=WorldDistance((1.5, 2.0)), fov_range=(40.0, 40.0))
    with pytest.raises(
        ConfigError,
        match=r"'reference.distance' is unset and 'camera.distance.distance_range' is \[1.5, 2.0\]",
    ):
        ReferenceView(ReferenceViewConfig(), _prompt(), cam, CPU)
    view = ReferenceView(ReferenceViewConfig(distance=2.2, resolution=8), _prompt(), cam, CPU)
    assert view.distance == 2.2 and view.fov_deg == 40.0
    fit = RandomCameraConfig(distance=SphereFitDistance(1.0, (1.2, 1.2)), fov_range=(40.0, 40.0))
    view = ReferenceView(ReferenceViewConfig(resolution=8), _prompt(), fit, CPU)
    assert view.distance == pytest.approx(1.2 / math.sin(math.radians(20.0)), rel=1e-5)
    with pytest.raises(T23dError, match=r"--elevation 95.0 is out of range"):
        ReferenceView(ReferenceViewConfig(elevation_deg=95.0, distance=2.0), _prompt(), cam, CPU)


def test_reference_losses_drive_the_render_to_the_input_silhouette():
    """No prior at all: only the reference-view losses, and the rendered mask must match the input's."""
    torch.manual_seed(0)
    cfg = image_config(None)
    state = build_state(cfg, CPU)
    view = ReferenceView(cfg.reference, _prompt(), cfg.camera, CPU)
    before = view.metrics(state, cfg.render)
    state.train()
    for step in range(25):
        if step % cfg.render.occupancy.update_every == 0:
            state.occupancy.update(state.field.occupancy_fn(state.occupancy.cell_size), step, state.generator)
        losses = view.losses(state, cfg.render, step)
        assert set(losses) == {"ref_rgb", "ref_mask"}
        state.optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()  # type: ignore[union-attr]
        state.optimizer.step()
        state.step += 1
    after = view.metrics(state, cfg.render)
    assert before["iou"] < 0.7 and after["iou"] > 0.85, (before, after)
    assert after["psnr"] > before["psnr"] + 2.0, (before, after)


def test_normal_smoothness_term_has_gradients():
    cfg = image_config(None)
    ref_cfg = dataclasses.replace(
        cfg.reference, losses=dataclasses.replace(cfg.reference.losses, normal_smooth=Constant(1.0))
    )
    state = build_state(cfg, CPU)
    state.occupancy.update(state.field.occupancy_fn(state.occupancy.cell_size), 0, state.generator)
    view = ReferenceView(ref_cfg, _prompt(), cfg.camera, CPU)
    losses = view.losses(state, cfg.render, 0)
    assert torch.isfinite(losses["ref_normal_smooth"]) and float(losses["ref_normal_smooth"].detach()) > 0
    losses["ref_normal_smooth"].backward()
    grads = [p.grad for p in state.field.encoding.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_sds_step_adds_the_reference_losses(tiny_zero123_dir):
    from t23d.guidance import build_image_guidance

    cfg = image_config(tiny_zero123_dir)
    state = build_state(cfg, CPU)
    view = ReferenceView(cfg.reference, _prompt(), cfg.camera, CPU)
    guidance = build_image_guidance(cfg.guidance, view.condition(), CPU)
    info = sds_step(cfg, state, guidance, view)
    assert {"sds", "ref_rgb", "ref_mask"} <= set(info.losses) and "reference" in info.timings
    assert info.losses["total"] == pytest.approx(
        sum(
            v
            for k, v in info.losses.items()
            if k in ("sds", "ref_rgb", "ref_mask", "orientation", "sparsity")
        ),
        rel=1e-5,
    )


@pytest.fixture
def rgba_photo(tmp_path) -> Path:
    rgb, alpha = synthetic_object(96)
    arr = np.concatenate([rgb, alpha[..., None]], axis=-1)
    path = tmp_path / "toy object.png"
    Image.fromarray((arr * 255 + 0.5).astype(np.uint8)).save(path)
    return path


def _params(run_dir: Path) -> dict[str, torch.Tensor]:
    _, state = load_generate_state(run_dir, CPU)
    return {k: v.clone() for k, v in state.field.state_dict().items()}


def test_image_run_keeps_its_input_and_resumes_bit_exactly_without_it(tiny_zero123_dir, rgba_photo, tmp_path):
    full = run_generate(
        image_config(tiny_zero123_dir, rgba_photo, steps=4, export_at_end=False), tmp_path / "a"
    )
    assert full.name.startswith("toy_object-")
    info = json.loads((full / "run.json").read_text())
    assert info["prompt"] == "" and info["prior"]["kind"] == "zero123"
    assert info["image"]["image"] == str(rgba_photo) and info["image"]["distance"] == 2.5
    assert set(info["reference_metrics"]) == {"psnr", "psnr_object", "iou", "resolution"}
    assert (full / "input" / "image.png").read_bytes() == rgba_photo.read_bytes()
    assert (full / "previews" / "reference.png").is_file()
    reference = Image.open(full / "input" / "reference.png")
    assert reference.mode == "RGBA" and reference.size == (64, 64)

    half = run_generate(
        image_config(tiny_zero123_dir, rgba_photo, steps=2, export_at_end=False), tmp_path / "b"
    )
    moved = rgba_photo.rename(tmp_path / "gone.png")  # --resume must not need the original photo
    resumed = run_generate(image_config(tiny_zero123_dir, None, steps=4), resume=half)
    assert resumed == half and not rgba_photo.exists() and moved.exists()
    a, b = _params(full), _params(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_bad_input_fails_before_anything_is_created(tiny_zero123_dir, tmp_path):
    rgb, _ = synthetic_object()
    path = tmp_path / "no_alpha.png"
    Image.fromarray((rgb * 255).astype(np.uint8)).save(path)
    out = tmp_path / "out"
    with pytest.raises(T23dError, match=r"has no alpha channel and no --mask was given"):
        run_generate(image_config(tiny_zero123_dir, path), out)
    assert not out.exists() or not any(out.iterdir())


def test_resume_of_an_image_run_with_its_reference_deleted_says_so(tiny_zero123_dir, rgba_photo, tmp_path):
    run_dir = run_generate(image_config(tiny_zero123_dir, rgba_photo, steps=1, export_at_end=False), tmp_path)
    (run_dir / "input" / "reference.png").unlink()
    with pytest.raises(T23dError, match=r"reference image .*reference\.png is missing"):
        run_generate(image_config(tiny_zero123_dir, None, steps=2), resume=run_dir)
    shutil.rmtree(run_dir)
