"""Perp-Neg view weights: the positive prompt interpolates the view prompts by azimuth, negatives by region."""

from __future__ import annotations

import math

import pytest
import torch

from t23d.common.errors import ConfigError
from t23d.prompt import PerpNegConfig, ViewPromptConfig, perp_neg_views
from t23d.prompt.view import BACK, FRONT, OVERHEAD, SIDE

VIEWS = ViewPromptConfig()
CFG = PerpNegConfig()


def _w(fn, r: float) -> float:
    return -(fn.scale * math.exp(-fn.rate * r) + fn.shift)


def _at(az: float, el: float = 0.0):
    return perp_neg_views(torch.tensor([az]), torch.tensor([el]), VIEWS, CFG)


def test_pure_views_and_their_negatives() -> None:
    front = _at(0.0)
    assert front.positive[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert front.negative_index[0].tolist() == [FRONT, SIDE]
    # a pure front view does not push away from "front" (weight ~0), and pushes away from "side"
    assert front.negative_weight[0, 0].item() == pytest.approx(0.0, abs=1e-3)
    assert (
        front.negative_weight[0, 1].item() == pytest.approx(_w(CFG.side_front, 0.0)) == pytest.approx(-1.574)
    )

    back = _at(180.0)
    assert back.positive[0].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert back.negative_index[0].tolist() == [SIDE, FRONT]
    assert back.negative_weight[0].tolist() == pytest.approx([-0.394, -1.967])

    side = _at(-90.0)
    assert side.positive[0].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_positive_interpolates_by_azimuth_and_is_symmetric() -> None:
    az = torch.tensor([30.0, -30.0, 135.0, -135.0])
    out = perp_neg_views(az, torch.zeros(4), VIEWS, CFG)
    torch.testing.assert_close(out.positive.sum(-1), torch.ones(4))
    assert out.positive[0, FRONT].item() == pytest.approx(2 / 3) and out.positive[
        0, SIDE
    ].item() == pytest.approx(1 / 3)
    assert out.positive[2, SIDE].item() == pytest.approx(0.5) and out.positive[
        2, BACK
    ].item() == pytest.approx(0.5)
    torch.testing.assert_close(out.positive[0], out.positive[1])
    torch.testing.assert_close(out.negative_weight[2], out.negative_weight[3])


def test_weights_are_continuous_across_the_side_view() -> None:
    """Just before and after 90 degrees the same prompts get (nearly) the same negative weights."""
    out = perp_neg_views(torch.tensor([89.999, 90.001]), torch.zeros(2), VIEWS, CFG)
    before = dict(zip(out.negative_index[0].tolist(), out.negative_weight[0].tolist()))
    after = dict(zip(out.negative_index[1].tolist(), out.negative_weight[1].tolist()))
    assert before.keys() == after.keys() == {FRONT, SIDE}
    for k in before:
        assert before[k] == pytest.approx(after[k], abs=1e-3)
    torch.testing.assert_close(out.positive[0], out.positive[1], atol=1e-4, rtol=0)


def test_overhead_uses_the_overhead_prompt_and_no_negatives() -> None:
    out = _at(37.0, 75.0)
    assert out.positive[0].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert out.positive.argmax().item() == OVERHEAD
    assert out.negative_weight[0].tolist() == [0.0, 0.0]


def test_needs_view_prompts() -> None:
    with pytest.raises(ConfigError, match="'guidance.perp_neg' needs view prompts"):
        perp_neg_views(torch.zeros(1), torch.zeros(1), ViewPromptConfig(enabled=False), CFG)
