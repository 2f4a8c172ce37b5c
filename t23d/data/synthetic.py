"""Analytic synthetic scene generator, used by t23d's tests **and** benchmarks (so it ships in the package).

The object has known geometry inside the unit sphere (world +Z up): a box (half-size 0.45, centred at
``(0, 0, -0.25)``) with a sphere (radius 0.4, centre ``(0, 0, 0.45)``) sunk into its top face, so it
has flat faces, sharp edges, corners and curvature. :meth:`SyntheticScene.sample_surface` gives points
on the true surface (Chamfer tests) and :meth:`SyntheticScene.signed_distance` its SDF.

Its albedo is a colourful, high-frequency, non-repeating solid texture (value noise at three scales
driving a cosine colour palette), so SfM finds features and PSNR is meaningful. Rendering is unlit
(colour = albedo, sRGB), vectorised numpy with analytic ray intersections and optional
``supersample x supersample`` anti-aliasing. The background is transparent (RGBA), an opaque
textured environment sphere of radius ``env_radius`` (busy surroundings, for SfM) or one plain colour;
optionally the object stands on a ground disc (a plain mat, or a printed one like a newspaper).

Cameras follow :mod:`t23d.data.cameras`: OpenGL camera-to-world, pinhole ``fx, fy, cx, cy`` with
pixel centres at +0.5. Writers produce every input format (:mod:`t23d.data.synthetic_writers`):
``write_blender``, ``write_nerfstudio`` (optionally distorted), ``write_colmap``, ``write_raw_photos``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from t23d.data.cameras import Camera, look_at
from t23d.data.undistort import undistort_points


def _value_noise(table: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Trilinear value noise ``[M]`` at ``p [M, 3]`` (lattice units) from a periodic ``[G, G, G]`` table."""
    g = table.shape[0]
    base = np.floor(p)
    f = p - base
    f = f * f * (3 - 2 * f)  # smoothstep weights
    i = base.astype(np.int64) & (g - 1)
    j = (i + 1) & (g - 1)
    x0, y0, z0 = i[:, 0], i[:, 1], i[:, 2]
    x1, y1, z1 = j[:, 0], j[:, 1], j[:, 2]
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    c00 = table[x0, y0, z0] * (1 - fx) + table[x1, y0, z0] * fx
    c10 = table[x0, y1, z0] * (1 - fx) + table[x1, y1, z0] * fx
    c01 = table[x0, y0, z1] * (1 - fx) + table[x1, y0, z1] * fx
    c11 = table[x0, y1, z1] * (1 - fx) + table[x1, y1, z1] * fx
    return (c00 * (1 - fy) + c10 * fy) * (1 - fz) + (c01 * (1 - fy) + c11 * fy) * fz


@dataclass
class SyntheticScene:
    """A textured box-plus-sphere object of known geometry (all lengths in world units, +Z up)."""

    box_center: tuple[float, float, float] = (0.0, 0.0, -0.25)
    """Centre of the box."""
    box_half: float = 0.45
    """Half edge length of the (axis-aligned, cubic) box."""
    sphere_center: tuple[float, float, float] = (0.0, 0.0, 0.45)
    """Centre of the sphere."""
    box_wall: float = 0.0
    """Wall thickness of an open-topped box: a cup whose square well, ``box_half - box_wall`` wide on
    each side of the centre and ``box_wall`` above the bottom, is open to the sky (a concavity that
    silhouettes never show); 0: a solid box."""
    sphere_radius: float = 0.4
    """Radius of the sphere."""
    texture_frequency: float = 8.0
    """Noise cells per world unit of the coarsest texture octave (finer octaves are 3x and 9x)."""
    background: Literal["transparent", "textured", "plain"] = "transparent"
    """``transparent``: RGBA renders with alpha 0 off the object; ``textured``: an opaque environment sphere
    (busy surroundings); ``plain``: an opaque uniform ``background_color`` (a studio backdrop)."""
    env_radius: float = 8.0
    """Radius of the textured environment sphere, centred at the origin."""
    background_color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """sRGB colour of the ``plain`` background."""
    ground: Literal["none", "plain", "printed"] = "none"
    """A horizontal disc the object stands on: ``plain`` (one colour, ``ground_color``) or ``printed``
    (black-and-white small print, like a newspaper under the object). Part of the surroundings, not
    of the object: :meth:`object_mask` and :meth:`signed_distance` ignore it."""
    ground_radius: float = 1.6
    """Radius of the ground disc, centred under the object."""
    ground_color: tuple[float, float, float] = (0.8, 0.8, 0.78)
    """sRGB colour of a ``plain`` ground."""
    seed: int = 0
    """Seed of the texture noise."""
    albedo_kind: Literal["noise", "plain"] = "noise"
    """``noise``: the colourful solid texture everywhere; ``plain``: one flat colour per part (box
    ``plain_colors[0]``, sphere ``plain_colors[1]``), the case where only shading and silhouettes
    pin the geometry (large uniformly coloured surfaces, like most real objects)."""
    plain_colors: tuple[tuple[float, float, float], tuple[float, float, float]] = (
        (0.85, 0.65, 0.2),
        (0.75, 0.75, 0.72),
    )
    """sRGB albedo of the box and of the sphere when ``albedo_kind == "plain"``."""
    lighting: Literal["unlit", "lambert"] = "unlit"
    """``unlit``: colour = albedo; ``lambert``: albedo x (ambient + (1 - ambient) max(0, n.l)) with a fixed
    distant light ``light_direction`` (in sRGB values, as a simple stand-in for a lit photo)."""
    light_direction: tuple[float, float, float] = (0.4, -0.5, 0.75)
    """Direction towards the light (world frame, normalised on use)."""
    ambient: float = 0.35
    """Ambient fraction of the Lambertian lighting."""
    shading_space: Literal["srgb", "linear"] = "srgb"
    """Where ``lambert`` lighting multiplies: ``srgb`` values (the simple stand-in above) or ``linear``
    colour (physical, as a camera records it: ``srgb(linear(albedo) x light)``)."""
    camera_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Linear gain per colour channel of the camera (exposure x white balance), applied to the object's
    and the environment's colours; photos of one capture may differ in it."""
    _tables: list[np.ndarray] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self._tables = [rng.random((64, 64, 64)) for _ in range(5)]

    # ------------------------------------------------------------ geometry
    def intersect(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Nearest positive hit distance ``[M]`` of rays ``origins, dirs [M, 3]`` (unit dirs); inf on a miss."""
        sc, r = np.asarray(self.sphere_center), self.sphere_radius
        oc = origins - sc
        b = np.einsum("mk,mk->m", oc, dirs)
        c = np.einsum("mk,mk->m", oc, oc) - r * r
        disc = b * b - c
        sq = np.sqrt(np.maximum(disc, 0.0))
        t_s = np.where(-b - sq > 1e-9, -b - sq, -b + sq)
        t_s = np.where((disc >= 0) & (t_s > 1e-9), t_s, np.inf)

        lo = np.asarray(self.box_center) - self.box_half
        hi = np.asarray(self.box_center) + self.box_half
        safe = np.where(np.abs(dirs) < 1e-12, 1e-12, dirs)
        t1, t2 = (lo - origins) / safe, (hi - origins) / safe
        tmin = np.minimum(t1, t2).max(axis=1)
        tmax = np.maximum(t1, t2).min(axis=1)
        t_b = np.where(tmin > 1e-9, tmin, tmax)
        t_b = np.where((tmax >= np.maximum(tmin, 0.0)) & (t_b > 1e-9), t_b, np.inf)
        if self.box_wall > 0:  # a cup: march from the box's entry through the well (no closed form)
            t_b = self._march(origins, dirs, np.where(np.isfinite(t_b), np.maximum(tmin, 0.0), np.inf), tmax)
        return np.minimum(t_s, t_b)

    def _cup_distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance bound ``[M]`` of the box with its open-topped well cut out."""
        c = np.asarray(self.box_center)
        q = np.abs(points - c) - self.box_half
        d_b = np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(axis=-1), 0.0)
        if self.box_wall <= 0:
            return d_b
        inner = self.box_half - self.box_wall
        wc = c + np.array([0.0, 0.0, self.box_wall])  # the well reaches box_wall above the rim
        qw = np.abs(points - wc) - np.array([inner, inner, self.box_half])
        d_w = np.linalg.norm(np.maximum(qw, 0.0), axis=-1) + np.minimum(qw.max(axis=-1), 0.0)
        return np.maximum(d_b, -d_w)

    def _march(self, origins: np.ndarray, dirs: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
        """Sphere tracing of :meth:`_cup_distance` from ``t0`` to ``t1`` [M]; inf where nothing is hit."""
        t = np.where(np.isfinite(t0), t0, 0.0)
        alive = np.isfinite(t0)
        hit = np.full(len(t), np.inf)
        for _ in range(256):
            if not alive.any():
                break
            idx = np.nonzero(alive)[0]
            d = self._cup_distance(origins[idx] + t[idx, None] * dirs[idx])
            done = d < 1e-6
            hit[idx[done]] = t[idx[done]]
            t[idx] += np.maximum(d, 1e-6)
            alive[idx[done]] = False
            alive &= t <= t1 + 1e-6
        return hit

    def ground_height(self) -> float:
        """Height (world z) of the ground disc: the box's bottom face, where the object stands."""
        return float(self.box_center[2] - self.box_half)

    def intersect_ground(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Positive hit distance ``[M]`` of rays with the ground disc (its top side); inf on a miss or with no ground."""
        if self.ground == "none":
            return np.full(len(dirs), np.inf)
        dz = np.where(np.abs(dirs[:, 2]) < 1e-12, -1e-12, dirs[:, 2])
        t = (self.ground_height() - origins[:, 2]) / dz
        p = origins + t[:, None] * dirs
        r = np.linalg.norm(p[:, :2] - np.asarray(self.box_center[:2]), axis=1)
        ok = (t > 1e-9) & (r <= self.ground_radius) & (origins[:, 2] > self.ground_height())
        return np.where(ok, t, np.inf)

    def ground_albedo(self, points: np.ndarray) -> np.ndarray:
        """sRGB colour ``[M, 3]`` of ground ``points [M, 3]``."""
        if self.ground == "plain":
            return np.broadcast_to(np.asarray(self.ground_color, dtype=np.float64), points.shape).copy()
        # "printed": dark glyph-sized blobs on off-white paper (two noise scales, thresholded)
        n1 = _value_noise(self._tables[3], points * 14.0 + 5.0)
        n2 = _value_noise(self._tables[4], points * 40.0 + 9.0)
        ink = ((0.6 * n1 + 0.4 * n2) > 0.55).astype(np.float64)
        grey = 0.92 - 0.8 * ink
        return np.stack([grey, grey, 0.97 * grey], axis=-1)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance ``[M]`` to the surface (negative inside) of ``points [M, 3]``.

        Exact outside the object; inside it is the usual union bound ``min(sdf_box, sdf_sphere)``.
        """
        d_s = np.linalg.norm(points - np.asarray(self.sphere_center), axis=-1) - self.sphere_radius
        return np.minimum(d_s, self._cup_distance(points))

    def sample_surface(self, n: int, seed: int = 0) -> np.ndarray:
        """``[n, 3]`` points uniformly distributed (by area) on the true surface of the object."""
        rng = np.random.default_rng(seed)
        c = np.asarray(self.box_center, dtype=np.float64)
        boxes = [(c, np.full(3, self.box_half))]  # (centre, half extents)
        if self.box_wall > 0:  # the well's faces (those inside the box are surface)
            inner = self.box_half - self.box_wall
            boxes.append((c + [0.0, 0.0, self.box_wall], np.array([inner, inner, self.box_half])))
        areas = np.array([4 * math.pi * self.sphere_radius**2] + [_box_area(h) for _, h in boxes])
        out: list[np.ndarray] = []
        count = 0
        while count < n:
            m = 2 * n + 64
            which = rng.choice(len(areas), size=m, p=areas / areas.sum())  # 0: the sphere, k: box k - 1
            v = rng.normal(size=(m, 3))
            pts = np.asarray(self.sphere_center) + self.sphere_radius * v / np.linalg.norm(
                v, axis=1, keepdims=True
            )
            for k, (centre, half) in enumerate(boxes, start=1):
                sel = which == k
                pts[sel] = _box_surface_points(rng, int(sel.sum()), centre, half)
            keep = np.abs(self.signed_distance(pts)) < 1e-9  # drop parts buried in the other shape
            out.append(pts[keep])
            count += int(keep.sum())
        return np.concatenate(out)[:n]

    # ------------------------------------------------------------ appearance
    def _palette(self, p: np.ndarray, tables: list[np.ndarray], freq: float) -> np.ndarray:
        n1 = _value_noise(tables[0], p * freq)
        n2 = _value_noise(tables[1], p * freq * 3.0 + 17.0)
        n3 = _value_noise(tables[2], p * freq * 9.0 + 31.0)
        hue = 1.5 * n1 + 0.5 * n2  # [M]
        rgb = 0.5 + 0.5 * np.cos(2 * np.pi * (hue[:, None] + np.array([0.0, 1 / 3, 2 / 3])))  # [M, 3]
        return rgb * (0.3 + 0.7 * n3[:, None]) + 0.05 * n2[:, None]

    def albedo(self, points: np.ndarray) -> np.ndarray:
        """sRGB albedo ``[M, 3]`` in [0, 1] of surface ``points [M, 3]``."""
        if self.albedo_kind == "plain":
            d_s = np.linalg.norm(points - np.asarray(self.sphere_center), axis=-1) - self.sphere_radius
            on_sphere = np.abs(d_s) <= np.abs(self.signed_distance(points)) + 1e-9
            colors = np.asarray(self.plain_colors, dtype=np.float64)  # [2, 3]
            return colors[on_sphere.astype(np.int64)]
        return np.clip(self._palette(points, self._tables[:3], self.texture_frequency), 0.0, 1.0)

    def normals(self, points: np.ndarray, eps: float = 1e-5) -> np.ndarray:
        """Unit outward normals ``[M, 3]`` at surface ``points [M, 3]`` (central differences of the SDF)."""
        grad = np.stack(
            [
                self.signed_distance(points + eps * e) - self.signed_distance(points - eps * e)
                for e in np.eye(3)
            ],
            axis=-1,
        )
        return grad / np.maximum(np.linalg.norm(grad, axis=-1, keepdims=True), 1e-12)

    def shade(self, points: np.ndarray) -> np.ndarray:
        """sRGB colour ``[M, 3]`` of surface ``points [M, 3]`` under :attr:`lighting`, through
        :attr:`camera_gain`."""
        rgb = self.albedo(points)
        if self.lighting == "lambert":
            light = np.asarray(self.light_direction, dtype=np.float64)
            light = light / np.linalg.norm(light)
            lam = np.clip(self.normals(points) @ light, 0.0, None)  # [M]
            shading = (self.ambient + (1.0 - self.ambient) * lam)[:, None]
            if self.shading_space == "linear":
                rgb = linear_to_srgb(srgb_to_linear(rgb) * shading)
            else:
                rgb = rgb * shading
        return self._through_camera(np.clip(rgb, 0.0, 1.0))

    def _through_camera(self, rgb: np.ndarray) -> np.ndarray:
        if self.camera_gain == (1.0, 1.0, 1.0):
            return rgb
        return linear_to_srgb(srgb_to_linear(rgb) * np.asarray(self.camera_gain, dtype=np.float64))

    def environment(self, dirs: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """sRGB colour ``[M, 3]`` of the environment sphere seen along rays ``origins, dirs [M, 3]``."""
        b = np.einsum("mk,mk->m", origins, dirs)
        c = np.einsum("mk,mk->m", origins, origins) - self.env_radius**2
        t = -b + np.sqrt(np.maximum(b * b - c, 0.0))
        p = (origins + t[:, None] * dirs) / self.env_radius  # on the unit sphere
        tabs = [self._tables[3], self._tables[4], self._tables[2]]
        return self._through_camera(np.clip(0.15 + 0.7 * self._palette(p, tabs, 4.0), 0.0, 1.0))

    # ------------------------------------------------------------ rendering
    def render(
        self, c2w: np.ndarray, camera: Camera, supersample: int = 1, chunk: int = 1 << 18
    ) -> np.ndarray:
        """Render one view: float32 ``[H, W, 4]`` RGBA, straight alpha (alpha is 1 everywhere when opaque).

        ``c2w``: ``[4, 4]`` OpenGL camera-to-world. ``camera`` may be distorted; rays then go through the
        distorted pixel positions, so the image is what that real lens would record.
        """
        return self.render_with_object_mask(c2w, camera, supersample, chunk)[0]

    def render_with_object_mask(
        self, c2w: np.ndarray, camera: Camera, supersample: int = 1, chunk: int = 1 << 18
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`render` plus the object's coverage ``[H, W]`` float32 in [0, 1] (the ground and the
        background excluded): the ground-truth object mask of a photo with opaque surroundings."""
        s = supersample
        w, h = camera.width, camera.height
        offs = (np.arange(s) + 0.5) / s
        u = (np.arange(w)[:, None] + offs[None]).reshape(-1)  # [W*s] continuous coords
        v = (np.arange(h)[:, None] + offs[None]).reshape(-1)  # [H*s]
        vv, uu = np.meshgrid(v, u, indexing="ij")  # [H*s, W*s]
        x, y = (uu - camera.cx) / camera.fx, (vv - camera.cy) / camera.fy
        x, y = undistort_points(x, y, camera)
        d_cam = np.stack([x, -y, -np.ones_like(x)], axis=-1).reshape(-1, 3)  # OpenGL: -Z forward, +Y up
        dirs = d_cam @ c2w[:3, :3].T
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        rgba = np.zeros((dirs.shape[0], 4))
        origin = np.asarray(c2w[:3, 3], dtype=np.float64)
        coverage = np.zeros(dirs.shape[0])
        for a in range(0, dirs.shape[0], chunk):
            d = dirs[a : a + chunk]
            o = np.broadcast_to(origin, d.shape)
            t = self.intersect(o, d)
            t_ground = self.intersect_ground(o, d)
            hit = np.isfinite(t) & (t <= t_ground)
            on_ground = np.isfinite(t_ground) & ~hit
            coverage[a : a + chunk] = hit
            out = rgba[a : a + chunk]
            if hit.any():
                out[hit, :3] = self.shade(o[hit] + t[hit, None] * d[hit])
                out[hit, 3] = 1.0
            if on_ground.any():
                out[on_ground, :3] = self.ground_albedo(
                    o[on_ground] + t_ground[on_ground, None] * d[on_ground]
                )
                out[on_ground, 3] = 1.0
            rest = ~hit & ~on_ground
            if self.background == "textured" and rest.any():
                out[rest, :3] = self.environment(d[rest], o[rest])
                out[rest, 3] = 1.0
            elif self.background == "plain" and rest.any():
                out[rest, :3] = np.asarray(self.background_color)
                out[rest, 3] = 1.0
        rgba = rgba.reshape(h, s, w, s, 4).mean(axis=(1, 3))  # premultiplied average
        alpha = rgba[..., 3:]
        rgb = np.where(alpha > 0, rgba[..., :3] / np.maximum(alpha, 1e-12), 0.0)
        mask = coverage.reshape(h, s, w, s).mean(axis=(1, 3)).astype(np.float32)
        return np.concatenate([rgb, alpha], axis=-1).astype(np.float32), mask


def _box_area(half: np.ndarray) -> float:
    """Surface area of a box of half extents ``half`` [3]."""
    x, y, z = 2 * np.asarray(half, dtype=np.float64)
    return float(2 * (x * y + y * z + z * x))


def _box_surface_points(rng: np.random.Generator, m: int, centre: np.ndarray, half: np.ndarray) -> np.ndarray:
    """``[m, 3]`` points uniform by area on the surface of a box (faces chosen by their area)."""
    half = np.asarray(half, dtype=np.float64)
    face_area = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]]).repeat(2)  # -x,+x,-y,...
    face = rng.choice(6, size=m, p=face_area / face_area.sum())
    u = rng.uniform(-1, 1, (m, 3))
    u[np.arange(m), face // 2] = np.where(face % 2 == 0, -1.0, 1.0)
    return centre + half * u


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear (IEC 61966-2-1)."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear values (clipped to [0, 1]) -> sRGB-encoded (IEC 61966-2-1)."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.maximum(c, 1e-12) ** (1.0 / 2.4) - 0.055)


def varied_views(
    scene: SyntheticScene,
    num_views: int,
    seed: int = 0,
    light_jitter_deg: float = 0.0,
    exposure_stops: float = 0.0,
    white_balance: float = 0.0,
) -> list[SyntheticScene]:
    """``num_views`` copies of ``scene`` as a real capture's photos differ: the light direction turned by
    up to ``light_jitter_deg`` degrees, exposure off by up to ``exposure_stops`` stops and each channel's
    white-balance gain off by up to a factor ``1 +- white_balance`` (uniformly random, from ``seed``)."""
    rng = np.random.default_rng(seed)
    out = []
    base = np.asarray(scene.light_direction, dtype=np.float64)
    base = base / np.linalg.norm(base)
    for _ in range(num_views):
        axis = rng.normal(size=3)
        axis = axis - (axis @ base) * base
        axis /= max(np.linalg.norm(axis), 1e-12)
        angle = math.radians(light_jitter_deg) * rng.uniform(-1.0, 1.0)
        light = base * math.cos(angle) + axis * math.sin(angle)
        gain = 2.0 ** (exposure_stops * rng.uniform(-1.0, 1.0)) * (
            1.0 + white_balance * rng.uniform(-1.0, 1.0, 3)
        )
        out.append(
            dataclasses.replace(
                scene, light_direction=tuple(light.tolist()), camera_gain=tuple(gain.tolist())
            )
        )
    return out


def orbit_poses(
    num: int,
    radius: float = 3.0,
    elevation_deg: tuple[float, float] = (10.0, 60.0),
    turns: float = 2.0,
    target: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """``[num, 4, 4]`` OpenGL camera-to-world poses on a spiral over the upper hemisphere, looking at ``target``.

    Elevation rises linearly from ``elevation_deg[0]`` to ``[1]`` while the azimuth makes ``turns`` turns,
    so consecutive poses are neighbours (good for sequential matching).
    """
    poses = []
    for i in range(num):
        f = i / max(num - 1, 1)
        el = math.radians(elevation_deg[0] + f * (elevation_deg[1] - elevation_deg[0]))
        az = 2 * math.pi * turns * i / num
        pos = radius * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        poses.append(look_at(pos + np.asarray(target), np.asarray(target)))
    return np.stack(poses)


def walkaround_poses(
    num: int,
    radius: float = 3.0,
    elevation_deg: float = 25.0,
    target: tuple[float, float, float] = (0.0, 0.0, 0.0),
    seed: int = 0,
    jitter: float = 1.0,
) -> np.ndarray:
    """``[num, 4, 4]`` OpenGL poses of a person walking once around the object taking hand-held photos.

    One turn at roughly eye level (``elevation_deg`` above ``target``), in capture order, with what a
    hand-held capture has (all scaled by ``jitter``, 0 gives a clean circle): uneven steps (azimuth
    spacing varies by up to +-35 %), distance varying +-10 %, height bobbing +-6 degrees, aim off the
    centre by up to 0.12 units, and camera roll up to +-4 degrees.
    """
    rng = np.random.default_rng(seed)
    steps = 1.0 + jitter * rng.uniform(-0.35, 0.35, num)
    az = 2 * math.pi * np.concatenate([[0.0], np.cumsum(steps)[:-1]]) / steps.sum()
    poses = []
    for i in range(num):
        el = math.radians(elevation_deg + jitter * rng.uniform(-6.0, 6.0))
        r = radius * (1.0 + jitter * rng.uniform(-0.1, 0.1))
        pos = r * np.array([math.cos(el) * math.cos(az[i]), math.cos(el) * math.sin(az[i]), math.sin(el)])
        aim = np.asarray(target) + jitter * rng.uniform(-0.12, 0.12, 3)
        c2w = look_at(pos + np.asarray(target), aim)
        roll = math.radians(jitter * rng.uniform(-4.0, 4.0))
        c, sn = math.cos(roll), math.sin(roll)
        c2w[:3, :2] = c2w[:3, :2] @ np.array([[c, sn], [-sn, c]])  # rotate the camera about its view axis
        poses.append(c2w)
    return np.stack(poses)


def pinhole_camera(resolution: int | tuple[int, int], fov_deg: float = 45.0) -> Camera:
    """Pinhole camera of ``resolution`` (square int or ``(width, height)``) with horizontal FOV ``fov_deg``."""
    w, h = (resolution, resolution) if isinstance(resolution, int) else resolution
    f = 0.5 * w / math.tan(0.5 * math.radians(fov_deg))
    return Camera(w, h, f, f, w / 2.0, h / 2.0)


__all__ = ["SyntheticScene", "orbit_poses", "pinhole_camera", "varied_views", "walkaround_poses"]
