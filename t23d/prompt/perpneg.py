"""Perp-Neg view prompts: per camera, a positive mix of the view prompts and two weighted negatives.

The guidance turns these weights into embeddings (``positive @ view_embeddings``) and combines the
UNet's predictions with :func:`t23d.guidance.base.combine_perp_neg`. See :class:`PerpNegConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from t23d.common.errors import ConfigError
from t23d.prompt.config import NegativeWeight, PerpNegConfig, ViewPromptConfig
from t23d.prompt.view import BACK, FRONT, OVERHEAD, SIDE, view_index, wrap_azimuth_deg

if TYPE_CHECKING:
    import torch

NUM_NEGATIVES = 2
"""Negative prompts per camera (front/side cameras: front and side; side/back cameras: side and front)."""


@dataclass
class PerpNegViews:
    """Perp-Neg prompt weights of a batch of B cameras over the 4 view prompts (front, side, back, overhead)."""

    positive: torch.Tensor
    """``[B, 4]`` float32: the positive prompt embedding is ``positive @ view_embeddings`` (rows sum to 1)."""
    negative_index: torch.Tensor
    """``[B, 2]`` int64: the view prompt of each negative."""
    negative_weight: torch.Tensor
    """``[B, 2]`` float32: the weight of each negative's perpendicular component (<= 0 pushes away; 0 = none)."""


def _weights(fn: NegativeWeight, r: torch.Tensor) -> torch.Tensor:
    import torch

    return -(fn.scale * torch.exp(-fn.rate * r) + fn.shift)


def perp_neg_views(
    azimuth_deg: torch.Tensor,
    elevation_deg: torch.Tensor,
    view_cfg: ViewPromptConfig,
    cfg: PerpNegConfig,
) -> PerpNegViews:
    """Perp-Neg weights for cameras at ``azimuth_deg`` ``[B]`` and ``elevation_deg`` ``[B]`` (degrees).

    Front/side cameras (|azimuth| < 90): positive ``r * front + (1 - r) * side`` with ``r = 1 - |az| / 90``;
    negatives front (``cfg.front_side(r)``) and side (``cfg.side_front(1 - r)``). Side/back cameras:
    positive ``r * side + (1 - r) * back`` with ``r = 2 - |az| / 90``; negatives side (``cfg.side_back(r)``)
    and front (``cfg.front_back(r)``). Cameras in the overhead region of ``view_cfg``: the overhead
    prompt, both negative weights 0.

    Raises:
        ConfigError: view prompts are disabled (Perp-Neg needs the four view prompts).
    """
    import torch

    if not view_cfg.enabled:
        raise ConfigError(
            "config key 'guidance.perp_neg' needs view prompts: set 'guidance.view_prompts.enabled: true' "
            "or 'guidance.perp_neg: null'"
        )
    az = wrap_azimuth_deg(torch.as_tensor(azimuth_deg).double()).abs()  # [B] in [0, 180]
    overhead = view_index(azimuth_deg, elevation_deg, view_cfg) == OVERHEAD  # [B]
    b = az.shape[0]
    front_half = az < 90.0
    r = torch.where(front_half, 1.0 - az / 90.0, 2.0 - az / 90.0)  # [B] in [0, 1]

    positive = torch.zeros(b, 4, dtype=torch.float64)
    rows = torch.arange(b)
    first = torch.where(front_half, FRONT, SIDE)  # the view at r = 1
    second = torch.where(front_half, SIDE, BACK)  # the view at r = 0
    positive[rows, first] += r
    positive[rows, second] += 1.0 - r

    negative_index = torch.stack(
        [torch.where(front_half, FRONT, SIDE), torch.where(front_half, SIDE, FRONT)], dim=-1
    )  # [B, 2]
    negative_weight = torch.stack(
        [
            torch.where(front_half, _weights(cfg.front_side, r), _weights(cfg.side_back, r)),
            torch.where(front_half, _weights(cfg.side_front, 1.0 - r), _weights(cfg.front_back, r)),
        ],
        dim=-1,
    )  # [B, 2]

    positive[overhead] = 0.0
    positive[overhead, OVERHEAD] = 1.0
    negative_weight[overhead] = 0.0
    return PerpNegViews(positive.float(), negative_index.long(), negative_weight.float())
