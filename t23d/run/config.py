"""Configuration shared by every training loop: the optimiser."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class OptimConfig:
    """Adam with per-group learning rates."""

    lr_grid: float = 1e-2
    """Learning rate of the hash-grid table."""
    lr_mlp: float = 1e-3
    """Learning rate of the density and colour MLPs."""
    lr_background: float = 1e-3
    """Learning rate of a learned background."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam's betas."""
    eps: float = 1e-15
    """Adam's epsilon (tiny, as instant-ngp, so rarely-touched hash entries still move)."""
