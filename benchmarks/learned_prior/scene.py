"""Procedural toy objects and an analytic sphere-tracing renderer that frames them as ``t23d generate`` does.

The objects are unions of coloured signed-distance primitives in t23d's world frame (+Z up, the front
faces -Y, i.e. azimuth 0). Rays come from t23d's own cameras (:mod:`t23d.render.cameras`,
:func:`t23d.render.rays.camera_rays`) and surfaces are lit with t23d's own shading model
(:func:`t23d.render.shading.shade`), so a render here and a volume render of a field at the same
camera share pixel grid, framing and lighting. Colours are sRGB values in [0, 1] (as everywhere in t23d).

Used by ``make_data.py`` (training images of the learned prior) and ``bench_generate.py`` (ground-truth
silhouettes and colours at the evaluation cameras).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

SdfFn = Callable[[Tensor], Tensor]
"""Signed distance ``[N, 3] -> [N]`` (negative inside; a lower bound of the true distance is fine)."""

WHITE = (0.93, 0.93, 0.93)
BLACK = (0.07, 0.07, 0.09)
ORANGE = (0.95, 0.5, 0.08)


# --- signed-distance primitives -----------------------------------------------------------------
def sphere(center: tuple[float, float, float], radius: float) -> SdfFn:
    """A sphere."""
    c = torch.tensor(center)
    return lambda p: (p - c).norm(dim=-1) - radius


def ellipsoid(center: tuple[float, float, float], radii: tuple[float, float, float]) -> SdfFn:
    """An axis-aligned ellipsoid (Quilez's bound ``k0 (k0 - 1) / k1``; not exact, trace with care)."""
    c, r = torch.tensor(center), torch.tensor(radii)

    def sdf(p: Tensor) -> Tensor:
        q = p - c
        k0 = (q / r).norm(dim=-1)
        k1 = (q / (r * r)).norm(dim=-1).clamp(min=1e-9)
        return k0 * (k0 - 1.0) / k1

    return sdf


def box(center: tuple[float, float, float], half: tuple[float, float, float], rounding: float = 0.0) -> SdfFn:
    """An axis-aligned box with edges rounded by ``rounding`` (outer size stays ``2 * half``)."""
    c, h = torch.tensor(center), torch.tensor(half) - rounding

    def sdf(p: Tensor) -> Tensor:
        q = (p - c).abs() - h
        outside = q.clamp(min=0.0).norm(dim=-1)
        inside = q.max(dim=-1).values.clamp(max=0.0)
        return outside + inside - rounding

    return sdf


def cylinder(center: tuple[float, float, float], radius: float, half_height: float) -> SdfFn:
    """A capped cylinder along Z."""
    c = torch.tensor(center)

    def sdf(p: Tensor) -> Tensor:
        q = p - c
        d = torch.stack([q[:, :2].norm(dim=-1) - radius, q[:, 2].abs() - half_height], dim=-1)
        return d.max(dim=-1).values.clamp(max=0.0) + d.clamp(min=0.0).norm(dim=-1)

    return sdf


def cone(base_center: tuple[float, float, float], radius: float, height: float, axis: int = 2) -> SdfFn:
    """A solid cone with its base disc at ``base_center`` and its apex ``height`` along +``axis``
    (``axis`` 2 = +Z; -2 = -Z, 1 = +Y, -1 = -Y ...). Exact distance of a 2D triangle profile."""
    c = torch.tensor(base_center)
    sign = 1.0 if axis >= 0 else -1.0
    ax = abs(axis)
    others = [i for i in range(3) if i != ax]
    # profile in (r, h) coordinates: the triangle (0, 0) - (radius, 0) - (0, height)
    edge = torch.tensor([-radius, height])
    edge_len2 = float(edge @ edge)

    def sdf(p: Tensor) -> Tensor:
        q = p - c
        r = q[:, others].norm(dim=-1)
        h = sign * q[:, ax]
        # distance to the slanted edge from (radius, 0) to (0, height)
        rel = torch.stack([r - radius, h], dim=-1)
        t = ((rel @ edge) / edge_len2).clamp(0.0, 1.0)
        d_slant = (rel - t[:, None] * edge).norm(dim=-1)
        # distance to the base disc
        d_base = torch.stack([(r - radius).clamp(min=0.0), h], dim=-1).norm(dim=-1)
        inside = (h > 0) & (r * height + h * radius < radius * height)
        dist = torch.minimum(d_slant, d_base)
        return torch.where(inside, -dist, dist)

    return sdf


def torus(center: tuple[float, float, float], major: float, minor: float) -> SdfFn:
    """A torus lying in the XY plane."""
    c = torch.tensor(center)

    def sdf(p: Tensor) -> Tensor:
        q = p - c
        ring = q[:, :2].norm(dim=-1) - major
        return torch.stack([ring, q[:, 2]], dim=-1).norm(dim=-1) - minor

    return sdf


def clip_below(sdf: SdfFn, z: float) -> SdfFn:
    """``sdf`` intersected with the half-space above height ``z`` (a bound, fine for tracing)."""
    return lambda p: torch.maximum(sdf(p), z - p[:, 2])


# --- objects ------------------------------------------------------------------------------------
@dataclass
class Part:
    """One coloured primitive of an object."""

    sdf: SdfFn
    """Signed distance of the primitive."""
    color: tuple[float, float, float]
    """sRGB albedo in [0, 1]."""


@dataclass
class ToyObject:
    """A named union of coloured primitives; ``prompt`` is what a user types to ``t23d generate``."""

    prompt: str
    """The text prompt (captions add the product's view suffixes to it)."""
    parts: list[Part]
    """The primitives; the union's colour at a point is that of the nearest part."""
    radius: float = 0.6
    """Radius of a sphere around the origin that contains the object (tracing starts on it)."""
    front_marking: tuple[float, float, float] | None = None
    """Albedo that appears on the front only (asymmetric objects; the Janus measure counts it)."""
    tags: list[str] = field(default_factory=list)
    """Free-form labels, e.g. ``asymmetric``."""

    def sdf_and_color(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Union distance ``[N]`` and the albedo ``[N, 3]`` of the nearest part."""
        d = torch.stack([part.sdf(points) for part in self.parts], dim=-1)  # [N, P]
        dist, which = d.min(dim=-1)
        palette = torch.tensor([part.color for part in self.parts], dtype=points.dtype)  # [P, 3]
        return dist, palette[which]

    def sdf(self, points: Tensor) -> Tensor:
        """Union distance ``[N]``."""
        return torch.stack([part.sdf(points) for part in self.parts], dim=-1).min(dim=-1).values


def toy_objects() -> dict[str, ToyObject]:
    """The training set of the learned prior, keyed by prompt. All fit in a sphere of radius 0.6."""
    objects = [
        ToyObject("a red ball", [Part(sphere((0, 0, 0), 0.48), (0.85, 0.1, 0.1))], radius=0.5),
        ToyObject(
            "a blue cube", [Part(box((0, 0, 0), (0.34, 0.34, 0.34), rounding=0.03), (0.12, 0.25, 0.85))]
        ),
        ToyObject("a green cone", [Part(cone((0, 0, -0.42), 0.42, 0.92), (0.1, 0.65, 0.2))]),
        ToyObject("a yellow torus", [Part(torus((0, 0, 0), 0.36, 0.16), (0.95, 0.8, 0.1))]),
        ToyObject(
            "a snowman",
            [
                Part(sphere((0, 0, -0.2), 0.31), WHITE),
                Part(sphere((0, 0, 0.27), 0.21), WHITE),
                Part(cone((0, -0.19, 0.28), 0.045, 0.16, axis=-1), ORANGE),
            ],
        ),
        ToyObject(
            "a mushroom",
            [
                Part(cylinder((0, 0, -0.24), 0.12, 0.27), (0.9, 0.84, 0.68)),
                Part(clip_below(ellipsoid((0, 0, 0.02), (0.48, 0.48, 0.36)), 0.02), (0.82, 0.12, 0.1)),
            ],
        ),
        ToyObject(
            "a penguin",
            [
                Part(ellipsoid((0, 0.02, 0.0), (0.3, 0.27, 0.5)), BLACK),
                Part(ellipsoid((0, -0.12, -0.06), (0.23, 0.17, 0.37)), WHITE),
                Part(cone((0, -0.2, 0.25), 0.06, 0.18, axis=-1), ORANGE),
                Part(ellipsoid((-0.12, -0.16, -0.48), (0.08, 0.12, 0.04)), ORANGE),
                Part(ellipsoid((0.12, -0.16, -0.48), (0.08, 0.12, 0.04)), ORANGE),
            ],
            front_marking=WHITE,
            tags=["asymmetric"],
        ),
    ]
    return {obj.prompt: obj for obj in objects}


# --- rendering ----------------------------------------------------------------------------------
@dataclass
class TraceResult:
    """Per-ray results of :func:`trace`."""

    hit: Tensor
    """[R] bool: the ray meets the object."""
    points: Tensor
    """[R, 3] hit points (meaningless where not hit)."""
    normals: Tensor
    """[R, 3] unit outward normals at the hit points."""
    albedo: Tensor
    """[R, 3] sRGB albedo at the hit points (0 where not hit)."""


def trace(
    obj: ToyObject, origins: Tensor, directions: Tensor, max_iters: int = 64, eps: float = 1e-3
) -> TraceResult:
    """Sphere-trace rays ``[R, 3]`` (unit directions) against ``obj`` (float32, on CPU).

    A ray hits when the distance falls under ``eps``; rays still marching after ``max_iters`` (grazing
    a silhouette) count as hits when within ``2 * eps`` (a small fraction of a pixel).
    """
    num = origins.shape[0]
    # start where the ray enters the bounding sphere
    b = (origins * directions).sum(-1)
    c = (origins * origins).sum(-1) - obj.radius**2
    disc = b * b - c
    candidate = disc > 0
    t = (-b - disc.clamp(min=0).sqrt()).clamp(min=0.0)
    t_far = -b + disc.clamp(min=0).sqrt()
    active = candidate.clone()
    hit = torch.zeros(num, dtype=torch.bool)
    for _ in range(max_iters):
        idx = active.nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            break
        p = origins[idx] + t[idx, None] * directions[idx]
        d = obj.sdf(p)
        done = d < eps
        hit[idx[done]] = True
        t[idx] = t[idx] + torch.where(done, torch.zeros_like(d), 0.9 * d.clamp(min=eps))
        escaped = t[idx] > t_far[idx]
        active[idx[done | escaped]] = False
    idx = active.nonzero(as_tuple=True)[0]
    if idx.numel():
        hit[idx[obj.sdf(origins[idx] + t[idx, None] * directions[idx]) < 2 * eps]] = True
    points = origins + t[:, None] * directions
    normals = torch.zeros_like(points)
    albedo = torch.zeros_like(points)
    idx = hit.nonzero(as_tuple=True)[0]
    if idx.numel():
        p = points[idx]
        h = 1e-3
        offsets = torch.eye(3) * h
        grad = torch.stack(
            [obj.sdf(p + offsets[i]) - obj.sdf(p - offsets[i]) for i in range(3)], dim=-1
        )  # [H, 3]
        normals[idx] = torch.nn.functional.normalize(grad, dim=-1)
        albedo[idx] = obj.sdf_and_color(p)[1]
    return TraceResult(hit, points, normals, albedo)


@dataclass
class RenderedViews:
    """Images of an object at a batch of cameras."""

    rgb: Tensor
    """[B, H, W, 3] shaded object composited over the background, sRGB in [0, 1]."""
    alpha: Tensor
    """[B, H, W] coverage in [0, 1] (fraction of sub-pixel rays that hit)."""
    albedo: Tensor
    """[B, H, W, 3] unshaded albedo composited over black (premultiplied by ``alpha``)."""


def render_views(
    obj: ToyObject,
    cameras,
    *,
    mode: str = "albedo",
    light_positions: Tensor | None = None,
    ambient: float = 0.1,
    background: Tensor | None = None,
    supersample: int = 2,
) -> RenderedViews:
    """Render ``obj`` at t23d ``cameras`` (a :class:`t23d.render.cameras.Cameras`).

    Args:
        mode: t23d shading mode, ``albedo`` | ``lambertian`` | ``textureless`` (as the SDS loop renders).
        light_positions: ``[B, 3]`` world positions of point lights (needed unless ``albedo``).
        ambient: ambient fraction of :func:`t23d.render.shading.shade`.
        background: ``[B, 3]`` or ``[B, H, W, 3]`` colours behind the object (default white).
        supersample: rays per pixel side (2 -> 4 rays per pixel on a regular sub-grid), box-filtered.
    """
    from t23d.render.cameras import Cameras
    from t23d.render.rays import camera_rays
    from t23d.render.shading import shade

    s = supersample
    fine = Cameras(cameras.c2w, cameras.intrinsics * s, cameras.width * s, cameras.height * s)
    rays = camera_rays(fine)
    res = trace(obj, rays.origins.float(), rays.directions.float())
    color = res.albedo
    if mode != "albedo":
        if light_positions is None:
            raise ValueError(f"shading mode {mode!r} needs light_positions")
        lights = light_positions.float()[rays.image_ids]
        color = shade(res.albedo, res.normals, res.points, lights, mode, ambient)  # type: ignore[arg-type]
    hitf = res.hit.float()
    b, h, w = len(cameras), cameras.height, cameras.width

    def pool(x: Tensor) -> Tensor:  # [B*H*s*W*s, C] -> [B, H, W, C]
        x = x.reshape(b, h * s, w * s, -1).permute(0, 3, 1, 2)
        return torch.nn.functional.avg_pool2d(x, s).permute(0, 2, 3, 1)

    alpha = pool(hitf[:, None])[..., 0]
    fg = pool(color * hitf[:, None])
    albedo = pool(res.albedo * hitf[:, None])
    if background is None:
        background = torch.ones(b, 3)
    bg = background if background.dim() == 4 else background[:, None, None, :].expand(b, h, w, 3)
    rgb = fg + (1.0 - alpha[..., None]) * bg
    return RenderedViews(rgb.clamp(0, 1), alpha, albedo)


def smooth_backgrounds(num: int, size: int, generator: torch.Generator) -> Tensor:
    """Random smooth backgrounds ``[num, size, size, 3]``: a random colour with a gentle linear gradient.

    Stands in for what the SDS loop's learned environment (``MLPBackground``, a low-degree spherical
    harmonic MLP of the view direction) shows behind the object: a smooth, arbitrary colour field.
    """
    base = torch.rand(num, 1, 1, 3, generator=generator)
    slope = 0.15 * torch.randn(num, 2, 3, generator=generator)
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
    v, u = torch.meshgrid(coords, coords, indexing="ij")  # [size, size]
    grad = u[None, :, :, None] * slope[:, None, None, 0] + v[None, :, :, None] * slope[:, None, None, 1]
    return (base + grad).clamp(0, 1)
