"""Regularisers for score distillation (DreamFusion Sec. 3 and threestudio's common choices)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from t23d.common.schedule import Constant, Linear, Schedule


@dataclass
class RegularisersConfig:
    """Loss weights, each a schedule over steps."""

    orientation: Schedule = field(default_factory=lambda: Linear(10.0, 1000.0, 0, 5000))
    """DreamFusion's orientation loss ``sum_i w_i max(0, n_i . d)^2`` (normals must face the camera)."""
    sparsity: Schedule = field(default_factory=lambda: Constant(1.0))
    """Mean rendered opacity (discourages fog and floaters)."""
    opaque: Schedule = field(default_factory=lambda: Constant(0.0))
    """Binary entropy of the rendered opacity (pushes it to 0 or 1)."""
    latent_rgb: Schedule = field(default_factory=lambda: Constant(1.0))
    """Latent mode only: weight of the RGB head's squared distance to the linear colour of the latent head
    at the same samples (``RenderOutput.latent_rgb_loss``); trains the RGB head that previews and export
    read, and nothing else."""


def opacity_entropy(opacity: Tensor, eps: float = 1e-5) -> Tensor:
    """Mean binary entropy of ``opacity`` [R] in (0, 1)."""
    o = opacity.clamp(eps, 1 - eps)
    return -(o * torch.log(o) + (1 - o) * torch.log(1 - o)).mean()
