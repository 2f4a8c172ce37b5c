"""Plain callables over a trained field, as the extract/texture/export stages take them."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from t23d.field.background import Background, ConstantBackground
from t23d.field.nerf import NeRFField
from t23d.render.cameras import Cameras
from t23d.render.occupancy import OccupancyGrid
from t23d.render.volume import RenderConfig, render_images


def density_fn_of(field_: NeRFField) -> Callable[[Tensor], Tensor]:
    """``points [N, 3] -> sigma [N]`` without gradients."""

    @torch.no_grad()
    def density_fn(points: Tensor) -> Tensor:
        dev = next(field_.parameters()).device
        return field_.density(points.to(dev)).float().cpu()  # type: ignore[union-attr]

    return density_fn


def color_fn_of(field_: NeRFField) -> Callable[[Tensor, Tensor], Tensor]:
    """``(points [N, 3], view_dirs [N, 3]) -> rgb [N, 3]`` without gradients."""

    @torch.no_grad()
    def color_fn(points: Tensor, directions: Tensor) -> Tensor:
        dev = next(field_.parameters()).device
        _, feats = field_.density(points.to(dev), return_features=True)  # type: ignore[misc]
        return field_.color(feats, directions.to(dev)).float().cpu()

    return color_fn


def render_field_fn_of(field_: NeRFField, render_cfg: RenderConfig, occupancy: OccupancyGrid | None):
    """``(c2w [4, 4], intrinsics [4], H, W) -> (rgb [H, W, 3] on black, opacity [H, W])`` of the field."""
    black = Background(ConstantBackground((0.0, 0.0, 0.0)))

    @torch.no_grad()
    def render_field(c2w: Tensor, intrinsics: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        dev = next(field_.parameters()).device
        cams = Cameras(c2w[None].float().to(dev), intrinsics[None].float().to(dev), int(width), int(height))
        out = render_images(field_, black, cams, render_cfg, occupancy)
        return out["rgb"][0].cpu(), out["opacity"][0].cpu()

    return render_field
