"""Which training pixels a photo run's step draws: uniformly, or guided by where the photos are still
missed (an error map, as instant-ngp trains on the pixels it renders worst).

A concavity seen by few photos at a grazing angle (the gap under a candlestick's drip pan, seen only by
the lowest cameras) covers a few hundred of a capture's millions of pixels: drawn uniformly, a step sees
one of them every few steps, while the SDF's smoothness terms act at every step, so the field fills the
gap. The error map keeps, for each training photo, a coarse grid of the latest squared error of the rays
drawn in each cell; ``share`` of each batch is drawn from the cells in proportion to it (then uniformly
inside the cell), the rest uniformly, so every pixel keeps a chance. The rays are not reweighted: the
loss leans towards the pixels still missed, by design.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn


@dataclass
class RaySamplingConfig:
    """How the training pixels are drawn (:mod:`t23d.reconstruct.ray_sampling`)."""

    mode: Literal["auto", "uniform", "error"] = "auto"
    """``uniform``: every pixel of every training photo alike; ``error``: ``share`` of the rays by the
    error map; ``auto`` (the default): ``error`` for photos without masks, ``uniform`` for masked ones
    (:func:`t23d.reconstruct.capture.ray_sampling_for`)."""
    share: float = 0.5
    """With ``error``: the fraction of each batch drawn by the error map (the rest uniformly)."""
    cells: int = 32
    """With ``error``: the error map's cells along each photo side."""
    memory: float = 0.5
    """With ``error``: how much of a cell's previous error it keeps when rays in it are drawn again."""


class ErrorMap(nn.Module):
    """Per training photo, a ``cells`` x ``cells`` grid of the squared error last measured there (a buffer:
    checkpointed with the run, so a resumed run draws as the interrupted one would have)."""

    def __init__(self, cfg: RaySamplingConfig, num_photos: int, height: int, width: int):
        super().__init__()
        self.cfg = cfg
        self.height, self.width = int(height), int(width)
        self.rows, self.cols = min(cfg.cells, self.height), min(cfg.cells, self.width)
        # unmeasured cells start high, so the guided rays visit each of them early on
        self.register_buffer("error", torch.ones(num_photos, self.rows, self.cols))

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` pixels: (photo position in the training list, row, col) [n] long each."""
        guided = int(round(self.cfg.share * n))
        photos, height, width = self.error.shape[0], self.height, self.width
        pick = torch.randint(photos, (n - guided,), generator=generator)
        row = torch.randint(height, (n - guided,), generator=generator)
        col = torch.randint(width, (n - guided,), generator=generator)
        if guided:
            weights = self.error.reshape(-1).clamp(min=1e-8).cpu()
            cell = torch.multinomial(weights, guided, replacement=True, generator=generator)
            per_photo = self.rows * self.cols
            g_pick, rest = cell // per_photo, cell % per_photo
            r0 = (rest // self.cols) * height // self.rows
            r1 = (rest // self.cols + 1) * height // self.rows
            c0 = (rest % self.cols) * width // self.cols
            c1 = (rest % self.cols + 1) * width // self.cols
            g_row = r0 + (torch.rand(guided, generator=generator) * (r1 - r0)).long()
            g_col = c0 + (torch.rand(guided, generator=generator) * (c1 - c0)).long()
            pick, row, col = torch.cat([pick, g_pick]), torch.cat([row, g_row]), torch.cat([col, g_col])
        return pick, row, col

    @torch.no_grad()
    def update(self, pick: Tensor, row: Tensor, col: Tensor, squared_error: Tensor) -> None:
        """Record the squared error [n] of the rays at pixels (``pick``, ``row``, ``col``) [n]: each cell
        drawn moves from its value towards the mean error of its rays by ``1 - memory``."""
        cell = (
            pick.cpu() * (self.rows * self.cols)
            + (row.cpu() * self.rows // self.height) * self.cols
            + col.cpu() * self.cols // self.width
        )
        flat = self.error.view(-1)
        total = torch.zeros_like(flat).index_add_(0, cell.to(flat.device), squared_error.to(flat))
        count = torch.zeros_like(flat).index_add_(
            0, cell.to(flat.device), torch.ones_like(squared_error).to(flat)
        )
        seen = count > 0
        flat[seen] = self.cfg.memory * flat[seen] + (1.0 - self.cfg.memory) * total[seen] / count[seen]
