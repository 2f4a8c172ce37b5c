"""Occupancy grid for empty-space skipping, in the style of instant-ngp.

A ``resolution^3`` grid over the field's box keeps an exponential moving maximum of the density
seen in each cell; cells whose density is below a threshold are skipped by the sampler. The
threshold is expressed as an opacity: a cell is occupied when one render step through it would
reach ``alpha_threshold`` opacity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class OccupancyGridConfig:
    """Occupancy grid used to skip empty space."""

    enabled: bool = True
    """Skip samples in empty cells; ``False`` evaluates every sample."""
    resolution: int = 64
    """Cells per axis."""
    update_every: int = 16
    """Update the grid every this many optimisation steps."""
    warmup_steps: int = 256
    """Before this step every update evaluates all cells; after it a random quarter of them."""
    decay: float = 0.95
    """Multiplier applied to stored densities at each update (moving maximum)."""
    alpha_threshold: float = 0.01
    """A cell is occupied when one render step through it reaches this opacity."""
    coarse_factor: int = 4
    """Cells per axis merged into one block of the coarse, dilated grid the sampler tests first
    (``resolution`` must be divisible by it; 1 disables the coarse level)."""


class OccupancyGrid:
    """Occupancy grid over ``aabb`` (``[2, 3]``); state is ``density`` (a ``[G^3]`` float tensor)."""

    def __init__(
        self, cfg: OccupancyGridConfig, aabb: Tensor, step_size: float, device: torch.device | str = "cpu"
    ):
        self.cfg = cfg
        self.aabb = aabb.to(device)
        self.step_size = step_size
        g = cfg.resolution
        self.density = torch.full((g**3,), 1e6 if cfg.enabled else 0.0, device=device)
        # everything starts occupied until the first update has measured the field
        self.occupied = torch.ones(g**3, dtype=torch.bool, device=device)
        self.num_updates = 0
        if g % cfg.coarse_factor:
            from t23d.common.errors import ConfigError

            raise ConfigError(
                f"config key 'occupancy.resolution': {g} is not divisible by occupancy.coarse_factor "
                f"{cfg.coarse_factor}"
            )
        self._refresh_coarse()

    @property
    def density_threshold(self) -> float:
        """Density above which a cell counts as occupied."""
        return -math.log(1.0 - self.cfg.alpha_threshold) / self.step_size

    def cell_centres(self) -> Tensor:
        """World positions [G^3, 3] of all cell centres, x fastest."""
        g = self.cfg.resolution
        idx = torch.arange(g, device=self.aabb.device, dtype=torch.float32)
        zz, yy, xx = torch.meshgrid(idx, idx, idx, indexing="ij")
        ijk = torch.stack([xx, yy, zz], -1).reshape(-1, 3)
        return self.aabb[0] + (ijk + 0.5) / g * (self.aabb[1] - self.aabb[0])

    @torch.no_grad()
    def update(
        self,
        density_fn: Callable[[Tensor], Tensor],
        step: int,
        generator: torch.Generator,
        chunk: int = 65536,
        *,
        replace: bool = False,
    ) -> None:
        """Re-measure the density in (some) cells at a random point each and refresh ``occupied``.

        ``replace``: a measured cell takes the new value instead of the decayed moving maximum. For
        measures that are already a verdict (an SDF field's band test, 0 or a large value): with the
        moving maximum every cell the surface ever crossed would stay occupied for thousands of steps
        (the initial sphere, every shape on the way), and its samples would be paid on every ray. After
        the warm-up such an update measures a random quarter of the cells plus every free cell next to
        an occupied one (:meth:`frontier`): a free verdict is never kept while the surface moves into
        the cell (a stale free cell is a hole in every render that crosses it)."""
        if not self.cfg.enabled:
            return
        g = self.cfg.resolution
        n = g**3
        if step < self.cfg.warmup_steps or self.num_updates == 0:
            cells = torch.arange(n)
        else:
            cells = torch.randperm(n, generator=generator)[: n // 4]
            if replace:
                frontier = self.frontier().nonzero().reshape(-1).cpu()
                cells = torch.unique(torch.cat([cells, frontier]))
        jitter = torch.rand(len(cells), 3, generator=generator)
        ijk = torch.stack([cells % g, (cells // g) % g, cells // (g * g)], -1).float()
        lo, hi = self.aabb[0].cpu(), self.aabb[1].cpu()
        pts = lo + (ijk + jitter) / g * (hi - lo)
        dev = self.aabb.device
        values = torch.cat([density_fn(p.to(dev)) for p in pts.split(chunk)]).float()
        cells = cells.to(dev)
        if self.num_updates == 0:
            self.density.zero_()
        if replace:
            updated = self.density.clone()
            updated[cells] = values
        else:
            updated = self.density * self.cfg.decay
            updated[cells] = torch.maximum(updated[cells], values)
        self.density = updated
        self.num_updates += 1
        thr = min(self.density_threshold, float(self.density.mean()))
        self.occupied = self.density > thr
        self._refresh_coarse()

    def frontier(self) -> Tensor:
        """[G^3] bool: free cells with an occupied cell among their 26 neighbours."""
        g = self.cfg.resolution
        occ = self.occupied.reshape(1, 1, g, g, g).float()
        near = torch.nn.functional.max_pool3d(occ, 3, stride=1, padding=1).reshape(-1) > 0
        return near & ~self.occupied

    @property
    def cell_size(self) -> float:
        """Edge length (world units, largest axis) of a fine cell."""
        return float((self.aabb[1] - self.aabb[0]).max()) / self.cfg.resolution

    @property
    def coarse_cell_size(self) -> float:
        """Edge length (world units, smallest axis) of a cell of the coarse dilated grid."""
        return float((self.aabb[1] - self.aabb[0]).min()) * self.cfg.coarse_factor / self.cfg.resolution

    def _refresh_coarse(self) -> None:
        """Coarse grid: a coarse cell is set when it or any of its 26 neighbours holds an occupied cell.

        So a point flags every segment of length <= ``coarse_cell_size`` starting at it that touches an
        occupied cell: the sampler tests blocks of fine steps with one query each, exactly (no misses).
        """
        g, c = self.cfg.resolution, self.cfg.coarse_factor
        occ = self.occupied.reshape(1, 1, g, g, g).float()  # [z, y, x] order, x fastest
        coarse = torch.nn.functional.max_pool3d(occ, kernel_size=c, stride=c)
        dilated = torch.nn.functional.max_pool3d(coarse, kernel_size=3, stride=1, padding=1)
        self.coarse_occupied = dilated.reshape(-1) > 0

    def query_coarse(self, points: Tensor) -> Tensor:
        """Whether each world point [N, 3] lies in a set cell of the coarse dilated grid (clamped to the box)."""
        gc = self.cfg.resolution // self.cfg.coarse_factor
        rel = (points - self.aabb[0]) / (self.aabb[1] - self.aabb[0])
        ijk = (rel.clamp(0, 1 - 1e-6) * gc).long()
        return self.coarse_occupied[ijk[:, 0] + ijk[:, 1] * gc + ijk[:, 2] * gc * gc]

    def query(self, points: Tensor) -> Tensor:
        """Whether each world point [N, 3] lies in an occupied cell (points outside the box: False)."""
        g = self.cfg.resolution
        rel = (points - self.aabb[0]) / (self.aabb[1] - self.aabb[0])  # [N, 3]
        inside = ((rel >= 0) & (rel < 1)).all(-1)
        ijk = (rel.clamp(0, 1 - 1e-6) * g).long()
        flat = ijk[:, 0] + ijk[:, 1] * g + ijk[:, 2] * g * g
        return self.occupied[flat] & inside

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors to checkpoint."""
        return {"density": self.density.clone(), "num_updates": torch.tensor(self.num_updates)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore from :meth:`state_dict`."""
        self.density = state["density"].to(self.aabb.device).clone()
        self.num_updates = int(state["num_updates"])
        if self.num_updates > 0:
            thr = min(self.density_threshold, float(self.density.mean()))
            self.occupied = self.density > thr
        self._refresh_coarse()
