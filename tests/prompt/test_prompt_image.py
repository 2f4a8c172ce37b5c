"""The image prompt: reading a photo and its mask, the bad inputs (messages pinned), and the recentring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t23d.common.errors import ConfigError, T23dError
from t23d.prompt.image import (
    ImagePrompt,
    ImagePromptConfig,
    frame_object,
    load_image_prompt,
    read_image_prompt,
    save_image_prompt,
)


def _object(
    h: int = 80, w: int = 120, box: tuple[int, int, int, int] = (10, 40, 30, 90)
) -> tuple[np.ndarray, np.ndarray]:
    """A red rectangle (rows y0:y1, cols x0:x1) on green: rgb [h, w, 3] uint8 and mask [h, w] bool."""
    y0, y1, x0, x1 = box
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[...] = (0, 200, 0)
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    rgb[mask] = (220, 30, 30)
    return rgb, mask


def _save(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def photo(tmp_path) -> dict[str, Path]:
    rgb, mask = _object()
    rgba = np.concatenate([rgb, (mask * 255).astype(np.uint8)[..., None]], axis=-1)
    return {
        "rgba": _save(tmp_path / "object.png", rgba),
        "rgb": _save(tmp_path / "object_rgb.png", rgb),
        "mask": _save(tmp_path / "mask.png", (mask * 255).astype(np.uint8)),
    }


def test_rgba_photo_is_recentred_and_rescaled(photo):
    prompt = load_image_prompt(photo["rgba"], None, ImagePromptConfig(size=100, border_ratio=0.2))
    assert prompt.rgb.shape == (100, 100, 3) and prompt.alpha.shape == (100, 100)
    ys, xs = np.nonzero(prompt.alpha > 0.5)
    # the 60 x 30 object's longer side fills 80 % of the image, centred
    assert xs.max() - xs.min() + 1 == pytest.approx(80, abs=1)
    assert ys.max() - ys.min() + 1 == pytest.approx(40, abs=1)
    assert (xs.min() + xs.max()) / 2 == pytest.approx(49.5, abs=1)
    assert (ys.min() + ys.max()) / 2 == pytest.approx(49.5, abs=1)
    # the object keeps its colour (no green fringe from the background: resampled premultiplied)
    inside = prompt.alpha > 0.05
    assert prompt.rgb[inside][:, 1].max() < 0.2 and prompt.rgb[inside][:, 0].min() > 0.8


def test_rgb_photo_with_mask_equals_rgba_photo(photo):
    cfg = ImagePromptConfig(size=64)
    a = load_image_prompt(photo["rgba"], None, cfg)
    b = load_image_prompt(photo["rgb"], photo["mask"], cfg)
    assert np.allclose(a.alpha, b.alpha) and np.allclose(a.rgb, b.rgb)


def test_mask_file_wins_over_alpha(photo, tmp_path):
    rgb, _ = _object()
    other = np.zeros(rgb.shape[:2], np.uint8)
    other[50:70, 10:30] = 255  # a different object region
    prompt = load_image_prompt(
        photo["rgba"], _save(tmp_path / "other.png", other), ImagePromptConfig(size=64)
    )
    ys, xs = np.nonzero(prompt.alpha > 0.5)
    assert xs.max() - xs.min() == pytest.approx(
        ys.max() - ys.min(), abs=1
    )  # the square mask, not the rectangle


def test_without_recentering_the_framing_is_kept(photo):
    prompt = load_image_prompt(photo["rgba"], None, ImagePromptConfig(size=120, recenter=False))
    # 120 x 80 padded to 120 x 120 (20 rows above): the object stays at rows 30:60, cols 30:90
    ys, xs = np.nonzero(prompt.alpha > 0.5)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (30, 59, 30, 89)


def test_composite_is_white_outside_the_object():
    alpha = np.zeros((4, 4), np.float32)
    alpha[1:3, 1:3] = 1.0
    prompt = ImagePrompt(np.zeros((4, 4, 3), np.float32), alpha)
    out = prompt.composite()
    assert np.allclose(out[0, 0], 1.0) and np.allclose(out[1, 1], 0.0)


def test_save_and_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    q = lambda x: np.round(x * 255) / 255  # noqa: E731
    prompt = ImagePrompt(
        q(rng.random((16, 16, 3))).astype(np.float32), q(rng.random((16, 16))).astype(np.float32)
    )
    save_image_prompt(prompt, tmp_path / "ref.png")
    back = read_image_prompt(tmp_path / "ref.png")
    assert np.allclose(back.alpha, prompt.alpha, atol=1e-6)
    visible = prompt.alpha > 0.5  # colours are stored straight; exact where alpha is nonzero
    assert np.allclose(back.rgb[visible], prompt.rgb[visible], atol=1e-6)


# --- bad inputs: the messages name the option and the fix -----------------------------------------


def test_rgb_without_mask_is_refused_naming_mask(photo):
    with pytest.raises(
        T23dError,
        match=r"--image .*object_rgb\.png has no alpha channel and no --mask was given; pass the object's mask with --mask",
    ):
        load_image_prompt(photo["rgb"], None, ImagePromptConfig())


def test_fully_opaque_alpha_is_refused_naming_mask(tmp_path):
    rgb, _ = _object()
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    path = _save(tmp_path / "opaque.png", rgba)
    with pytest.raises(T23dError, match=r"alpha channel but it is fully opaque.*--mask MASK\.png"):
        load_image_prompt(path, None, ImagePromptConfig())


def test_mask_of_another_size_is_refused(photo, tmp_path):
    small = _save(tmp_path / "small.png", np.full((40, 60), 255, np.uint8))
    with pytest.raises(
        T23dError,
        match=r"--mask .*small\.png is 60x40 px but --image .*object_rgb\.png is 120x80 px; the mask must have the image's size",
    ):
        load_image_prompt(photo["rgb"], small, ImagePromptConfig())


def test_empty_mask_is_refused(photo, tmp_path):
    empty = _save(tmp_path / "empty.png", np.zeros((80, 120), np.uint8))
    with pytest.raises(T23dError, match=r"--mask .*empty\.png marks no object pixel \(no value above 0\.5\)"):
        load_image_prompt(photo["rgb"], empty, ImagePromptConfig())


def test_transparent_image_is_refused(tmp_path):
    path = _save(tmp_path / "clear.png", np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(T23dError, match=r"the alpha channel of --image .*clear\.png marks no object pixel"):
        load_image_prompt(path, None, ImagePromptConfig())


def test_full_mask_is_refused(photo, tmp_path):
    full = _save(tmp_path / "full.png", np.full((80, 120), 255, np.uint8))
    with pytest.raises(T23dError, match=r"marks every pixel as the object"):
        load_image_prompt(photo["rgb"], full, ImagePromptConfig())


def test_missing_and_unreadable_files_name_the_option(tmp_path, photo):
    with pytest.raises(T23dError, match=r"--image .*nope\.png: no such file"):
        load_image_prompt(tmp_path / "nope.png", None, ImagePromptConfig())
    with pytest.raises(T23dError, match=r"--mask .*nope\.png: no such file"):
        load_image_prompt(photo["rgb"], tmp_path / "nope.png", ImagePromptConfig())
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(T23dError, match=r"--image .*bad\.png: cannot read image"):
        load_image_prompt(bad, None, ImagePromptConfig())


def test_tiny_image_is_refused(tmp_path):
    path = _save(tmp_path / "tiny.png", np.zeros((16, 40, 4), np.uint8))
    with pytest.raises(
        T23dError, match=r"--image .*tiny\.png is 40x16 px; t23d needs at least 32 px on each side"
    ):
        load_image_prompt(path, None, ImagePromptConfig())


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"size": 8}, "size"),
        ({"border_ratio": 0.95}, "border_ratio"),
        ({"mask_threshold": 1.0}, "mask_threshold"),
    ],
)
def test_bad_config_values_name_the_key(photo, change, key):
    with pytest.raises(ConfigError, match=rf"config key 'reference\.image_prompt\.{key}': invalid value"):
        load_image_prompt(photo["rgba"], None, ImagePromptConfig(**change))


def test_frame_object_keeps_a_soft_alpha_edge():
    rgb = np.ones((64, 64, 3), np.float32)
    yy, xx = np.mgrid[0:64, 0:64]
    alpha = np.clip(20.5 - np.hypot(yy - 31.5, xx - 31.5), 0, 1).astype(np.float32)  # antialiased disk
    prompt = frame_object(rgb, alpha, ImagePromptConfig(size=64))
    soft = (prompt.alpha > 0.05) & (prompt.alpha < 0.95)
    assert soft.any() and np.allclose(prompt.rgb[prompt.alpha > 0.05], 1.0, atol=1e-3)
