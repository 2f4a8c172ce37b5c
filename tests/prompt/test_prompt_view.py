"""View-dependent prompts: region boundaries, wrapping, suffixes and empty prompts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from t23d.common.errors import ConfigError, T23dError
from t23d.prompt import VIEW_NAMES, ViewPromptConfig, validate_prompt, view_index, view_prompts

FRONT, SIDE, BACK, OVERHEAD = 0, 1, 2, 3


def _idx(az: list[float], el: list[float], cfg: ViewPromptConfig | None = None) -> list[int]:
    return view_index(torch.tensor(az), torch.tensor(el), cfg or ViewPromptConfig()).tolist()


def test_view_names_order() -> None:
    assert VIEW_NAMES == ("front", "side", "back", "overhead")


def test_azimuth_regions_and_strict_boundaries() -> None:
    az = [0.0, 44.9, 45.0, -44.9, -45.0, 90.0, -90.0, 135.0, 135.1, -135.1, 180.0, -179.9]
    expected = [FRONT, FRONT, SIDE, FRONT, SIDE, SIDE, SIDE, SIDE, BACK, BACK, BACK, BACK]
    assert _idx(az, [0.0] * len(az)) == expected


def test_overhead_wins_above_threshold_only() -> None:
    az = [0.0, 0.0, 90.0, 180.0, 180.0]
    el = [60.0, 60.1, 75.0, 89.0, -80.0]
    assert _idx(az, el) == [FRONT, OVERHEAD, OVERHEAD, OVERHEAD, BACK]


def test_azimuth_is_wrapped() -> None:
    assert _idx([360.0, 370.0, 540.0, -270.0, 720.0 + 44.0], [0.0] * 5) == [FRONT, FRONT, BACK, SIDE, FRONT]


def test_custom_thresholds() -> None:
    cfg = ViewPromptConfig(front_azimuth_deg=30.0, back_azimuth_deg=60.0, overhead_elevation_deg=30.0)
    assert _idx([29.0, 31.0, 119.0, 121.0, 0.0], [0.0, 0.0, 0.0, 0.0, 31.0], cfg) == [
        FRONT,
        SIDE,
        SIDE,
        BACK,
        OVERHEAD,
    ]


def test_disabled_gives_single_prompt_and_zero_index() -> None:
    cfg = ViewPromptConfig(enabled=False)
    assert view_prompts("a stone grotto", cfg) == ["a stone grotto"]
    assert _idx([0.0, 90.0, 180.0], [0.0, 0.0, 80.0], cfg) == [0, 0, 0]


def test_view_prompts_suffixes_match_indices() -> None:
    prompts = view_prompts("  a stone grotto ", ViewPromptConfig())
    assert prompts == [
        "a stone grotto, front view",
        "a stone grotto, side view",
        "a stone grotto, back view",
        "a stone grotto, overhead view",
    ]
    idx = _idx([170.0], [0.0])
    assert prompts[idx[0]].endswith("back view")


def test_output_dtype_and_shape() -> None:
    out = view_index(torch.zeros(5), torch.zeros(5), ViewPromptConfig())
    assert out.dtype == torch.long and out.shape == (5,)


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt_raises(prompt: str) -> None:
    with pytest.raises(
        T23dError, match=r"prompt is empty; pass a description such as 't23d generate \"stone grotto\"'"
    ):
        view_prompts(prompt, ViewPromptConfig())
    with pytest.raises(T23dError, match="prompt is empty"):
        validate_prompt(prompt)


def test_overlapping_regions_rejected() -> None:
    with pytest.raises(ConfigError, match="exceed 180"):
        view_prompts("x", ViewPromptConfig(front_azimuth_deg=100.0, back_azimuth_deg=100.0))


def test_shape_mismatch_rejected() -> None:
    with pytest.raises(T23dError, match=r"shape \[B\]"):
        view_index(torch.zeros(3), torch.zeros(2), ViewPromptConfig())


def test_import_is_light() -> None:
    code = "import sys, t23d.prompt, t23d.guidance; print(sorted({'torch', 'diffusers', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
