"""Blurred and badly exposed photos are found and listed with the reason."""

from __future__ import annotations

import numpy as np

from t23d.data.photo_checks import flag_photos, photo_stats


def _photo(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 0.2 + 0.6 * rng.random((64, 80, 3)).astype(np.float32)  # detail everywhere, mid grey


def _blur(img: np.ndarray, k: int = 5) -> np.ndarray:
    out = img.copy()
    for axis in (0, 1):
        out = sum(np.roll(out, s, axis=axis) for s in range(-(k // 2), k // 2 + 1)) / k
    return out


def test_blurred_and_badly_exposed_photos_are_flagged() -> None:
    stats = {f"p{i}.jpg": photo_stats(_photo(i)) for i in range(6)}
    stats["blurred.jpg"] = photo_stats(_blur(_photo(10)))
    stats["dark.jpg"] = photo_stats(_photo(11) * 0.05)
    bright = _photo(12)
    bright[:40] = 1.0  # 62 % of the pixels clipped white
    stats["bright.jpg"] = photo_stats(bright)
    flagged = {e["image"]: e["issues"] for e in flag_photos(stats)}
    assert set(flagged) == {"blurred.jpg", "dark.jpg", "bright.jpg"}, flagged
    assert flagged["blurred.jpg"][0].startswith("blurred (sharpness ")
    assert any(i.startswith("underexposed (") for i in flagged["dark.jpg"])
    assert flagged["bright.jpg"] == [flagged["bright.jpg"][0]] and flagged["bright.jpg"][0].startswith(
        "overexposed (62% of pixels clipped white"
    )


def test_blur_is_relative_to_the_capture_and_needs_enough_photos() -> None:
    """A uniformly soft capture is not flagged photo by photo, and with fewer than five photos there is
    no median to compare with, so nothing is called blurred."""
    soft = {f"p{i}.jpg": photo_stats(_blur(_photo(i))) for i in range(6)}
    assert flag_photos(soft) == []
    few = {"a.jpg": photo_stats(_photo(0)), "b.jpg": photo_stats(_blur(_photo(1), 9))}
    assert flag_photos(few) == []


def test_large_photos_are_measured_at_the_same_scale() -> None:
    small = 0.2 + 0.6 * np.random.default_rng(3).random((256, 320, 3)).astype(np.float32)
    large = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # 512x640: box-filtered back to 256x320
    a, b = photo_stats(small), photo_stats(large)
    assert abs(a.sharpness - b.sharpness) < 1e-4 * a.sharpness and abs(a.brightness - b.brightness) < 1e-6
