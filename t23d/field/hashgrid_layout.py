"""The hash grid's configuration and its parameter layout (one table shared by the tcnn, C++ and
PyTorch implementations, laid out as tiny-cuda-nn lays it out)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Implementation = Literal["auto", "tcnn", "cpp", "torch"]


@dataclass
class HashGridConfig:
    """Multi-resolution hash-grid encoding of 3D points in ``[0, 1]^3``."""

    n_levels: int = 16
    """Number of resolution levels L."""
    n_features_per_level: int = 2
    """Features stored per grid vertex and level F (output width is L * F)."""
    log2_hashmap_size: int = 19
    """log2 of the maximum number of feature vectors per level T."""
    base_resolution: int = 16
    """Coarsest grid resolution N_min."""
    max_resolution: int = 2048
    """Finest grid resolution N_max; sets ``per_level_scale = exp(ln(N_max/N_min) / (L-1))``."""
    init_scale: float = 1e-4
    """Parameters are initialised uniformly in ``[-init_scale, init_scale]``."""
    implementation: Implementation = "auto"
    """``auto`` (tcnn on CUDA if importable, else the C++ CPU kernel, else torch), or force one."""

    @property
    def per_level_scale(self) -> float:
        """Growth factor between consecutive levels."""
        if self.n_levels <= 1:
            return 1.0
        return math.exp(math.log(self.max_resolution / self.base_resolution) / (self.n_levels - 1))

    @property
    def output_dim(self) -> int:
        """Width of the encoding, ``n_levels * n_features_per_level``."""
        return self.n_levels * self.n_features_per_level


def level_layout(cfg: HashGridConfig) -> tuple[list[float], list[int], list[int]]:
    """Per-level ``(scales, resolutions, offsets)``; ``offsets`` has ``n_levels + 1`` entries (in feature vectors).

    Mirrors tiny-cuda-nn: scale and resolution are computed in float32 like its CUDA code.
    """
    log2_scale = math.log2(cfg.per_level_scale)
    scales: list[float] = []
    resolutions: list[int] = []
    offsets = [0]
    max_params = 2**cfg.log2_hashmap_size
    for level in range(cfg.n_levels):
        scale = float(
            torch.tensor(2.0 ** (level * log2_scale) * cfg.base_resolution - 1.0, dtype=torch.float32)
        )
        resolution = int(math.ceil(scale)) + 1
        params = resolution**3
        params = (params + 7) // 8 * 8
        params = min(params, max_params)
        scales.append(scale)
        resolutions.append(resolution)
        offsets.append(offsets[-1] + params)
    return scales, resolutions, offsets
