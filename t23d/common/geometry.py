"""Small geometric helpers shared by fields and renderers (torch, no state)."""

from __future__ import annotations

import torch
from torch import Tensor


def intersect_aabb(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Entry and exit distances of rays with a box.

    Returns ``near`` [R], ``far`` [R] (clamped to start at 0) and ``hit`` [R] bool.
    """
    inv = 1.0 / torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0 = (aabb[0].to(origins) - origins) * inv
    t1 = (aabb[1].to(origins) - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)
    far = torch.maximum(t0, t1).amin(-1)
    hit = far > near
    return near, far, hit
