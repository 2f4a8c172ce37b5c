"""Plain callables over a trained field, as the extract/texture/export stages take them."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from t23d.field.appearance import AppearanceRender
from t23d.field.background import Background, ConstantBackground
from t23d.field.nerf import NeRFField
from t23d.render.cameras import Cameras
from t23d.render.occupancy import OccupancyGrid
from t23d.render.volume import RenderConfig, render_images, render_pixels


def density_fn_of(field_: NeRFField) -> Callable[[Tensor], Tensor]:
    """``points [N, 3] -> sigma [N]`` without gradients."""

    @torch.no_grad()
    def density_fn(points: Tensor) -> Tensor:
        dev = next(field_.parameters()).device
        return field_.density(points.to(dev)).float().cpu()  # type: ignore[union-attr]

    return density_fn


def sdf_fn_of(field_: NeRFField) -> Callable[[Tensor], Tensor] | None:
    """``points [N, 3] -> signed distance [N]`` without gradients for SDF fields; None for density fields.
    The learnt SDF alone: a ground plane (``field.ground_plane``) is surroundings, not the asset."""
    if not field_.is_sdf:
        return None

    @torch.no_grad()
    def sdf_fn(points: Tensor) -> Tensor:
        dev = next(field_.parameters()).device
        return field_.sdf(points.to(dev), ground=False).float().cpu()  # type: ignore[union-attr]

    return sdf_fn


def surface_color_fn_of(
    field_: NeRFField,
    band: float,
    num_samples: int = 8,
    appearance: AppearanceRender | None = None,
    normal_eps: float = 0.01,
) -> Callable[[Tensor, Tensor], Tensor]:
    """``(points [N, 3], view_dirs [N, 3]) -> rgb [N, 3]``: the colour a camera looking along ``view_dirs``
    sees near each point, by volume rendering a short segment ``[-band, +band]`` around it.

    Baking with this instead of the colour at the exact point makes the texture robust to the mesh lying
    a fraction of a voxel in front of or behind where the field's rendering weights peak (a NeRF's colour
    is only trained there). Falls back to the colour at the point where the segment is transparent.
    ``appearance`` (photo runs with an appearance model; neutral code) turns the field's colour into
    the radiance or keeps the albedo; shading uses the field's normal at each point (finite differences
    with step ``normal_eps``) for the whole segment.
    """
    if appearance is not None and appearance.image_ids is not None:
        raise ValueError("surface_color_fn_of: the appearance must use the neutral code (image_ids=None)")
    offsets = torch.linspace(-band, band, num_samples)  # [K]
    step = 2.0 * band / (num_samples - 1)

    @torch.no_grad()
    def color_fn(points: Tensor, directions: Tensor) -> Tensor:
        dev = next(field_.parameters()).device
        p, d = points.to(dev).float(), directions.to(dev).float()
        n, k = len(p), num_samples
        pts = p[:, None, :] + offsets.to(dev)[None, :, None] * d[:, None, :]  # [N, K, 3]
        sigma, feats = field_.density(pts.reshape(-1, 3), return_features=True)  # type: ignore[misc]
        tau = sigma.reshape(n, k) * step
        weights = torch.exp(-(torch.cumsum(tau, 1) - tau)) * (1.0 - torch.exp(-tau))  # [N, K]
        dirs = d.repeat_interleave(k, 0)  # [N * K, 3]
        colors = field_.color(feats, dirs)
        if appearance is not None:
            normals = None
            if appearance.needs_normals:
                normals = field_.normals(p, normal_eps).repeat_interleave(k, 0)  # [N * K, 3]
            ray = torch.zeros(n * k, dtype=torch.long, device=dev)
            colors = appearance.color(colors, feats, normals, dirs, ray)
        colors = colors.reshape(n, k, 3)
        opacity = weights.sum(1, keepdim=True)
        rendered = (weights[..., None] * colors).sum(1) / opacity.clamp(min=1e-6)
        centre = colors[:, k // 2]
        return torch.where(opacity > 1e-3, rendered, centre).float().cpu()

    return color_fn


def bake_color_fn_of(
    field_: NeRFField,
    aabb: Tensor,
    resolution: int,
    appearance: AppearanceRender | None = None,
    normal_eps: float = 0.01,
) -> Callable[[Tensor, Tensor], Tensor]:
    """The colour function used for texture baking: :func:`surface_color_fn_of` over +-1.5 voxels of the
    extraction grid (``resolution`` cells along the longest side of ``aabb``), through ``appearance``
    (radiance or albedo, neutral code) when the run has one."""
    voxel = float((aabb[1] - aabb[0]).max()) / resolution
    return surface_color_fn_of(field_, band=1.5 * voxel, appearance=appearance, normal_eps=normal_eps)


def render_field_fn_of(
    field_: NeRFField,
    render_cfg: RenderConfig,
    occupancy: OccupancyGrid | None,
    appearance: AppearanceRender | None = None,
    supersample: int = 1,
    region: Callable[[Tensor], Tensor] | None = None,
):
    """``(c2w [4, 4], intrinsics [4], H, W) -> (rgb [H, W, 3] on black, opacity [H, W])`` of the field
    (through ``appearance``, neutral code, when given).

    ``region``: ``points [N, 3] -> bool [N]``, the part of the field an asset was cut from (its box, above
    the table it stands on). A pixel whose ray ends outside it (where the ray's expected termination
    lies) renders empty, as the asset shows it: what the asset leaves out is not counted as the asset's
    disagreement with the field.

    ``supersample`` s > 1 anti-aliases as :func:`t23d.render.mesh.render_mesh` does (s x s rays per pixel
    on the same regular grid, averaged), adaptively: every pixel is rendered through its centre first,
    and only the pixels near an edge (:func:`edge_pixels`) are rendered again with s x s rays. A sharp
    surface's silhouette is otherwise aliased, and comparing it with an anti-aliased mesh counts the
    aliasing as disagreement."""
    black = Background(ConstantBackground((0.0, 0.0, 0.0)))
    s = int(supersample)
    if s < 1:
        raise ValueError(f"supersample must be an integer >= 1; got {supersample!r}")

    @torch.no_grad()
    def render_field(c2w: Tensor, intrinsics: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        dev = next(field_.parameters()).device
        cams = Cameras(c2w[None].float().to(dev), intrinsics[None].float().to(dev), int(width), int(height))
        out = render_images(field_, black, cams, render_cfg, occupancy, appearance=appearance)
        rgb, opacity = out["rgb"][0].cpu(), out["opacity"][0].cpu()
        if region is not None:
            outside = _ends_outside(region, cams, None, out["depth"].reshape(-1), out["opacity"].reshape(-1))
            outside = outside.cpu().reshape(opacity.shape)
            rgb[outside] = 0.0
            opacity[outside] = 0.0
        if s == 1:
            return rgb, opacity
        rows, cols = edge_pixels(rgb, opacity).nonzero(as_tuple=True)
        if len(rows) == 0:
            return rgb, opacity
        fine = Cameras(cams.c2w, cams.intrinsics * s, int(width) * s, int(height) * s)
        k = torch.arange(s)
        sub_r = (rows[:, None, None] * s + k[None, :, None]).expand(-1, s, s).reshape(-1)
        sub_c = (cols[:, None, None] * s + k[None, None, :]).expand(-1, s, s).reshape(-1)
        pixels = torch.stack([torch.zeros_like(sub_r), sub_r, sub_c], -1).to(dev)
        sub = render_pixels(field_, black, fine, render_cfg, pixels, occupancy, appearance=appearance)
        if region is not None:
            outside = _ends_outside(region, fine, pixels, sub["depth"], sub["opacity"])
            sub["rgb"][outside] = 0.0
            sub["opacity"][outside] = 0.0
        rgb[rows, cols] = sub["rgb"].cpu().reshape(-1, s * s, 3).mean(1)
        opacity[rows, cols] = sub["opacity"].cpu().reshape(-1, s * s).mean(1)
        return rgb, opacity

    return render_field


def _ends_outside(
    region: Callable[[Tensor], Tensor], cams: Cameras, pixels: Tensor | None, depth: Tensor, opacity: Tensor
) -> Tensor:
    """``[R]`` bool (on ``opacity``'s device): rays through ``pixels`` (None: all, as :func:`camera_rays`
    orders them) whose expected termination ``depth / opacity`` (renderer outputs ``[R]``) lies outside
    ``region``."""
    from t23d.render.rays import camera_rays

    rays = camera_rays(cams, pixels)
    t = depth / opacity.clamp(min=1e-6)
    ends = rays.origins + rays.directions * t[:, None]  # [R, 3]
    return ~region(ends).bool().to(opacity.device) & (opacity > 0)


EDGE_OPACITY_STEP = 1.0 / 64.0
"""Opacity difference to a neighbouring pixel above which :func:`edge_pixels` marks a pixel."""
EDGE_COLOR_STEP = 1.0 / 16.0
"""Colour difference (any channel) to a neighbouring pixel above which :func:`edge_pixels` marks a pixel."""


def edge_pixels(rgb: Tensor, opacity: Tensor) -> Tensor:
    """[H, W] bool: pixels whose opacity or colour differs from one of their 8 neighbours by more than
    :data:`EDGE_OPACITY_STEP` / :data:`EDGE_COLOR_STEP` (silhouettes, occlusion edges, texture edges),
    where one ray per pixel aliases. ``rgb`` [H, W, 3], ``opacity`` [H, W]."""
    x = torch.cat([opacity[..., None] / EDGE_OPACITY_STEP, rgb / EDGE_COLOR_STEP], -1).permute(2, 0, 1)
    hi = torch.nn.functional.max_pool2d(x[None], 3, stride=1, padding=1)[0]
    lo = -torch.nn.functional.max_pool2d(-x[None], 3, stride=1, padding=1)[0]
    return ((hi - x) > 1.0).any(0) | ((x - lo) > 1.0).any(0)


def normal_fn_of(field_: NeRFField, eps: float, chunk: int = 65_536):
    """Detail normals for normal-map baking (:data:`t23d.texture.normal_map.NormalFn`): the field's own
    outward normal (finite differences of the density or SDF with step ``eps``, world units) at each
    surface point. Where the field's gradient vanishes or points more than 90 degrees away from the
    mesh's normal (noise, thin sheets), the mesh's normal is kept. A ground plane (``field.ground_plane``)
    is left out, as the asset leaves it out."""
    import numpy as np

    @torch.no_grad()
    def normal_fn(points, normals):
        dev = next(field_.parameters()).device
        out = []
        for s in range(0, len(points), chunk):
            p = torch.as_tensor(points[s : s + chunk], dtype=torch.float32, device=dev)
            out.append(field_.normals(p, eps, ground=False).double().cpu().numpy())
        n = np.concatenate(out) if out else np.zeros((0, 3))
        mesh_n = np.asarray(normals, dtype=np.float64)
        ok = np.isfinite(n).all(-1) & (np.linalg.norm(n, axis=-1) > 0.5) & ((n * mesh_n).sum(-1) > 0.0)
        return np.where(ok[:, None], n, mesh_n)

    return normal_fn


def render_depth_fn_of(field_: NeRFField, render_cfg: RenderConfig, occupancy: OccupancyGrid | None):
    """``(c2w [4, 4], intrinsics [4], H, W) -> (distance [H, W], opacity [H, W])`` numpy arrays: where each
    pixel's ray terminates (the expected distance given that it terminates) and its opacity."""
    black = Background(ConstantBackground((0.0, 0.0, 0.0)))

    @torch.no_grad()
    def render_depth(c2w, intrinsics, height: int, width: int):
        import numpy as np

        dev = next(field_.parameters()).device
        c = torch.as_tensor(np.asarray(c2w), dtype=torch.float32)[None].to(dev)
        k = torch.as_tensor(np.asarray(intrinsics), dtype=torch.float32)[None].to(dev)
        out = render_images(field_, black, Cameras(c, k, int(width), int(height)), render_cfg, occupancy)
        opacity = out["opacity"][0].cpu()
        dist = out["depth"][0].cpu() / opacity.clamp(min=1e-6)
        return dist.numpy(), opacity.numpy()

    return render_depth
