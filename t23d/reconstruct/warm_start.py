"""A density warm start for signed-distance fields: the shape comes from a cheap density field first.

NeuS-style training from a sphere finds the surface by moving it where the photos disagree with it. It
cannot carve what it never sees: once the surface is opaque, the space behind it is not rendered, so
its colour is never trained and nothing pulls the surface in. A bowl keeps a lid at its rim (issue 8,
benchmarks/RESULTS.md). A density field has no such trap: its samples are semi-transparent early on,
so every point along a ray learns, and it carves the bowl in a few hundred steps.

So, with ``warm_start.steps > 0`` (:class:`t23d.reconstruct.config.WarmStartConfig`), a photo run first trains a density field (same hash grid,
same data) for that many steps, renders its depth from a subset of the training cameras, fuses them
into a TSDF (:func:`t23d.extract.fusion.fuse_tsdf`: every pixel that sees background carves the space
in front of it), turns the TSDF into a signed distance on its lattice (enclosed space is inside; a
Euclidean distance transform gives the distance), and fits the SDF field's geometry to it by
regression. NeuS training then starts from that shape instead of a sphere.

What no warm-start view observed near that shape (an underside no camera sees) is written to
``<run>/warm_start/unseen.npz``: lattice points and their signed distance, which SDF training keeps
(:func:`unseen_space_loss`, weight ``warm_start.unseen_weight``), since no photo does.

The density field trains as a run of its own in ``<run>/warm_start/`` (checkpoints, progress, Ctrl-C),
so an interrupted warm start resumes; the fitted SDF field is saved as the main run's step-0
checkpoint. A density field that shows no surface yet (too few steps) leaves the SDF at its sphere,
with a warning and ``fallback`` in the run's ``warm_start`` record.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from t23d.field.nerf import NeRFField

log = logging.getLogger(__name__)


@dataclass
class SignedDistanceGrid:
    """A signed distance sampled on a lattice over a box (world units, negative inside)."""

    values: np.ndarray
    """[Nx, Ny, Nz] float32 signed distance."""
    origin: np.ndarray
    """[3] world position of ``values[0, 0, 0]``."""
    spacing: np.ndarray
    """[3] lattice spacing."""

    def __call__(self, points: Tensor) -> Tensor:
        """Trilinear interpolation at world ``points`` [N, 3] (clamped to the lattice) -> [N] float32 on
        their device (no gradient; read as :meth:`t23d.extract.fusion.FusedTSDF.sdf_fn` reads its grid)."""
        from scipy.ndimage import map_coordinates

        p = points.detach().cpu().double().numpy()
        idx = ((p - self.origin) / self.spacing).T  # [3, N] lattice coordinates
        out = map_coordinates(self.values, idx, order=1, mode="nearest")
        return torch.from_numpy(out.astype(np.float32)).to(points.device)


def _index_box(shape: tuple[int, ...], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Boolean lattice of ``shape``, True on the index box ``[lo, hi)`` (clipped to the lattice)."""
    box = np.zeros(shape, dtype=bool)
    box[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return box


def signed_distance_from_tsdf(
    values: np.ndarray,
    origin: np.ndarray,
    spacing: np.ndarray,
    weights: np.ndarray | None = None,
    surface_box: np.ndarray | None = None,
) -> SignedDistanceGrid:
    """The signed distance of the solid a fused TSDF describes.

    ``values`` [Nx, Ny, Nz] is a TSDF (negative inside, ``+trunc`` where unobserved); ``weights`` its
    observation counts. Inside is: where it is negative; every lattice point no view observed within
    the bounding box of those (space carving: what no photo shows empty stays solid; in a TSDF the
    interior behind the surface is never observed, and where no view sees the shell itself, e.g. an
    object's underside, that interior is open to the outside); and every region the outside cannot
    reach. Without ``weights`` only the enclosed regions are filled. The distance to the other side
    comes from Euclidean distance transforms (half a cell is taken off: the surface lies between two
    lattice points of opposite sign).

    ``surface_box`` [2, 3] (world min and max corners of the surface points the depth maps showed) bounds
    the solid: nothing beyond the extent of what the photos saw is inside. Without it, the truncation band
    behind the lowest surface a steep camera sees reaches ``trunc`` further down, and an unseen underside
    (a box standing on its bottom face) is filled down to it, a dome of that depth; with it the unseen
    face is flat at the level of the lowest surface seen (the prior for faces no photo shows)."""
    from scipy import ndimage

    solid = values < 0
    h = np.asarray(spacing, dtype=np.float64)
    clip = None
    if surface_box is not None:
        sb = np.asarray(surface_box, dtype=np.float64).reshape(2, 3)
        lo_i = np.maximum(np.ceil((sb[0] - 0.5 * h - origin) / h), 0).astype(int)
        clip = _index_box(solid.shape, lo_i, np.floor((sb[1] + 0.5 * h - origin) / h).astype(int) + 1)
        solid = solid & clip
    if weights is not None and solid.any():
        # unobserved points inside the observed surface's bounding box (a point outside every camera's
        # view is unobserved too, but is no part of the object)
        if clip is None:
            ijk = np.argwhere(solid)
            clip = _index_box(solid.shape, ijk.min(0), ijk.max(0) + 1)
        solid = solid | ((weights <= 0) & clip)
    inside = ndimage.binary_fill_holes(solid)
    if inside.all() or not inside.any():
        raise ValueError("the fused TSDF has no surface: the warm-start field is empty or fills the box")
    return _distance_of(inside, np.asarray(origin, dtype=np.float64), h)


def _distance_of(inside: np.ndarray, origin: np.ndarray, h: np.ndarray) -> SignedDistanceGrid:
    """The signed distance of the lattice solid ``inside`` (Euclidean distance transforms of both sides;
    half a cell is taken off: the surface lies between two lattice points of opposite sign)."""
    from scipy import ndimage

    d_out = ndimage.distance_transform_edt(~inside, sampling=h)  # outside points: distance to inside
    d_in = ndimage.distance_transform_edt(inside, sampling=h)  # inside points: distance to outside
    half = 0.5 * float(h.min())
    sdf = np.where(inside, -(d_in - half), d_out - half).astype(np.float32)
    return SignedDistanceGrid(sdf, origin, h)


def cut_below(grid: SignedDistanceGrid, plane: np.ndarray) -> SignedDistanceGrid:
    """``grid``'s solid with everything below ``plane`` ``(nx, ny, nz, d)`` (unit normal) removed, as a
    signed distance again: the solid is intersected with the half-space ``n . x > d`` on the lattice and
    its distances recomputed (a CSG ``max`` would keep the right surface but not distances: just above a
    removed table it would read the height above the table, not the distance to the object)."""
    p = np.asarray(plane, dtype=np.float64).reshape(4)
    axes = [grid.origin[i] + np.arange(grid.values.shape[i]) * grid.spacing[i] for i in range(3)]
    height = (
        axes[0][:, None, None] * p[0] + axes[1][None, :, None] * p[1] + axes[2][None, None, :] * p[2] - p[3]
    )
    inside = (grid.values < 0) & (height > 0)
    if not inside.any():
        raise ValueError("the warm start's shape lies below the ground plane: nothing is left above it")
    return _distance_of(inside, grid.origin, np.asarray(grid.spacing, dtype=np.float64))


def fit_sdf_to_grid(
    field_: NeRFField,
    target: SignedDistanceGrid,
    steps: int,
    generator: torch.Generator,
    num_points: int = 4096,
    band: float = 0.1,
    lr: float = 1e-2,
) -> float:
    """Regress ``field_``'s signed distance onto ``target`` (in place; geometry parameters only).

    Each step draws ``num_points`` points, half uniformly in the field's box and half within ``band``
    of the target's zero level set (lattice points near it, jittered by a cell), and minimises the L1
    error there, truncated at ``4 * band`` far from the surface so the box's corners do not dominate.
    Returns the final mean error near the surface (world units)."""
    device = next(field_.parameters()).device
    b = field_.cfg.bound
    near = np.argwhere(np.abs(target.values) < band)
    if len(near) == 0:
        raise ValueError("the target signed distance has no surface inside the box")
    near_pts = torch.as_tensor(target.origin + near * target.spacing, dtype=torch.float32)
    cell = torch.as_tensor(target.spacing, dtype=torch.float32)
    params = [*field_.encoding.parameters(), *field_.density_mlp.parameters()]  # the geometry
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99), eps=1e-15, fused=True)
    cap = 4.0 * band
    err = float("nan")
    for _ in range(steps):
        k = num_points // 2
        u = (torch.rand(k, 3, generator=generator) * 2 - 1) * b
        pick = torch.randint(len(near_pts), (num_points - k,), generator=generator)
        jitter = (torch.rand(num_points - k, 3, generator=generator) - 0.5) * cell
        pts = torch.cat([u, (near_pts[pick] + jitter).clamp(-b, b)]).to(device)
        with torch.no_grad():
            tgt = target(pts).clamp(-cap, cap)
        pred = field_.sdf(pts, ground=False).clamp(-cap, cap)  # type: ignore[union-attr]
        diff = (pred - tgt).abs()
        loss = diff.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        err = float(diff[k:].mean().detach())
    return err


def warm_start_cameras(cameras: list, max_views: int, max_size: int) -> list:
    """At most ``max_views`` of ``cameras`` (evenly spread over the list), each scaled down to at most
    ``max_size`` pixels on its longer side: depth for the warm-start TSDF needs coverage, not detail."""
    if not cameras:
        return []
    idx = np.unique(np.linspace(0, len(cameras) - 1, min(max_views, len(cameras))).round().astype(int))
    out = []
    for i in idx:
        c2w, k, h, w = cameras[i]
        s = min(1.0, max_size / max(h, w))
        hh, ww = max(1, int(round(h * s))), max(1, int(round(w * s)))
        kk = np.asarray(k, dtype=np.float64) * np.array([ww / w, hh / h, ww / w, hh / h])
        out.append((c2w, kk, hh, ww))
    return out


class SurfaceExtent:
    """A depth function (``(c2w, intrinsics, H, W) -> (distance [H, W], opacity [H, W])``, the TSDF
    fusion's) that passes ``depth_fn``'s maps through and records the bounding box of the surface points
    they show: pixels of opacity >= ``min_opacity`` whose four neighbours are too (image borders count as
    covered), at their termination distance along the pixel's ray (OpenGL cameras, pixel centres at
    +0.5). Silhouette pixels are left out: their expected depth mixes the surface with what lies behind
    it (on the box+sphere's warm start, 25 of 54k such points reached 0.036 below the box's bottom face,
    interior pixels 0.011 above it). A part thinner than two pixels of these maps is missed at the box's
    edge; the photos still see it, so the SDF training that follows grows it back."""

    def __init__(self, depth_fn, min_opacity: float = 0.5) -> None:
        self.depth_fn = depth_fn
        self.min_opacity = min_opacity
        self.box: np.ndarray | None = None
        """[2, 3] world min and max corners of every surface point seen so far (None before any)."""

    def __call__(self, c2w, intrinsics, height: int, width: int):
        depth, opacity = self.depth_fn(c2w, intrinsics, height, width)
        from scipy import ndimage

        # covered pixels whose four neighbours are covered too (outside the image counts as covered)
        hit = ndimage.binary_erosion(np.asarray(opacity) >= self.min_opacity, border_value=1)
        if hit.any():
            fx, fy, cx, cy = (float(v) for v in np.asarray(intrinsics).reshape(-1)[:4])
            rows, cols = np.nonzero(hit)
            cam = np.stack([(cols + 0.5 - cx) / fx, -(rows + 0.5 - cy) / fy, -np.ones(len(rows))], -1)
            c2w = np.asarray(c2w, dtype=np.float64)
            dirs = cam @ c2w[:3, :3].T
            dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
            pts = c2w[:3, 3] + np.asarray(depth, dtype=np.float64)[rows, cols, None] * dirs
            lo, hi = pts.min(0), pts.max(0)
            if self.box is not None:
                lo, hi = np.minimum(lo, self.box[0]), np.maximum(hi, self.box[1])
            self.box = np.stack([lo, hi])
        return depth, opacity


def sdf_from_density_field(
    density_field: NeRFField,
    render_depth_fn,
    sdf_field: NeRFField,
    cameras: list,
    fit_steps: int,
    generator: torch.Generator,
    resolution: int = 128,
    backend: str = "auto",
    keep_above: np.ndarray | None = None,
) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """Fuse ``density_field``'s depth at ``cameras`` into a TSDF, convert it to a signed distance bounded
    by the extent of the surface the depth maps show (:class:`SurfaceExtent`) and fit ``sdf_field``'s
    learnt geometry to it. ``keep_above`` ``[4]`` ``(nx, ny, nz, d)``: only the side ``n . x > d`` of
    that shape is kept (:func:`cut_below`; the object without the table it stands on, when the field
    has that table as its ground plane). Returns a report (timings in s, the fit's final error near the
    surface, that extent, the size of the never-observed shell) and that shell (:func:`unseen_shell`)."""
    from t23d.extract.fusion import fuse_tsdf

    t0 = time.perf_counter()
    aabb = density_field.aabb().numpy()
    seen = SurfaceExtent(render_depth_fn)
    fused = fuse_tsdf(seen, cameras, aabb, resolution, backend=backend)
    t_fuse = time.perf_counter() - t0
    t0 = time.perf_counter()
    grid = signed_distance_from_tsdf(fused.values, fused.origin, fused.spacing, fused.weights, seen.box)
    if keep_above is not None:
        grid = cut_below(grid, keep_above)
    band = max(0.05, 4.0 * float(np.max(fused.spacing)))
    err = fit_sdf_to_grid(sdf_field, grid, fit_steps, generator, band=band)
    t_fit = time.perf_counter() - t0
    log.info("warm start: TSDF of %d views in %.1f s, SDF fitted in %.1f s (mean error %.4f near the surface)",
             len(cameras), t_fuse, t_fit, err)  # fmt: skip
    box = None if seen.box is None else np.round(seen.box, 4).tolist()
    unseen = unseen_shell(grid, fused.weights)
    report = {
        "tsdf_s": t_fuse,
        "fit_s": t_fit,
        "fit_error": err,
        "surface_box": box,
        "unseen_points": len(unseen[0]),
    }
    return report, unseen


def unseen_shell(
    grid: SignedDistanceGrid, weights: np.ndarray, cells: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Lattice points of ``grid`` that no view observed (``weights`` 0) within ``cells`` lattice cells of
    its surface: ``(points [U, 3] world, signed distance [U])``. The interior deeper than the TSDF's
    truncation (4 cells) is unobserved too but lies further in, so the shell is the surface no photo shows."""
    near = (weights <= 0) & (np.abs(grid.values) <= cells * float(np.max(grid.spacing)))
    ijk = np.argwhere(near)
    points = (grid.origin + ijk * grid.spacing).astype(np.float32)
    return points, grid.values[near].astype(np.float32)


UNSEEN_FILE = "unseen.npz"
"""File of ``<run>/warm_start/`` holding :func:`unseen_shell` (``points``, ``sdf``)."""


def save_unseen(run_dir, unseen: tuple[np.ndarray, np.ndarray]) -> None:
    """Write the never-observed shell to ``<run_dir>/warm_start/unseen.npz`` (atomically)."""
    import io

    from t23d.common.atomic import write_bytes_atomic

    buf = io.BytesIO()
    np.savez(buf, points=unseen[0], sdf=unseen[1])
    write_bytes_atomic(run_dir / WARM_START_DIR / UNSEEN_FILE, buf.getvalue())


def load_unseen(run_dir, device) -> tuple[Tensor, Tensor] | None:
    """The never-observed shell a warm start saved in ``run_dir`` (points [U, 3], signed distance [U] on
    ``device``), or None (no warm start, or nothing unobserved)."""
    path = run_dir / WARM_START_DIR / UNSEEN_FILE
    if not path.is_file():
        return None
    with np.load(path) as f:
        points, sdf = f["points"], f["sdf"]
    if len(points) == 0:
        return None
    return torch.from_numpy(points).to(device), torch.from_numpy(sdf).to(device)


def unseen_space_loss(field_: NeRFField, unseen: tuple[Tensor, Tensor], count: int, generator) -> Tensor:
    """Mean L1 difference between ``field_``'s SDF and the warm start's at ``count`` points of the
    never-observed shell (drawn with ``generator``, CPU), so that space no photo constrains keeps the
    shape the warm start gave it."""
    points, target = unseen
    pick = torch.randint(len(points), (count,), generator=generator).to(points.device)
    return (field_.sdf(points[pick], ground=False) - target[pick]).abs().mean()  # type: ignore[union-attr]


WARM_START_PHASE = "warm start"
"""The ``phase`` of ``progress.json`` while the density warm start trains."""
WARM_START_DIR = "warm_start"
"""Folder of a run directory holding the warm-start density run (its checkpoints)."""


def density_warm_start_config(cfg):
    """The density run of ``cfg``'s warm start: the same run with density geometry, ``warm_start.steps``
    steps of ``warm_start.rays_per_batch`` rays, learning rates decaying over the second half, no
    export."""
    import dataclasses

    steps = cfg.warm_start.steps
    return dataclasses.replace(
        cfg,
        field=dataclasses.replace(cfg.field, geometry="density", ground_plane=None),
        steps=steps,
        rays_per_batch=cfg.warm_start.rays_per_batch,
        lr_decay_start=steps // 2,
        checkpoint_every=max(1, min(cfg.checkpoint_every, steps)),
        export_at_end=False,
    )


def run_warm_start(cfg, state, data, run_dir, camera_tuples, callback=None, should_stop=None) -> dict:
    """Train the warm-start density field of ``cfg`` (resuming ``<run_dir>/warm_start`` when it has a
    checkpoint), then fit ``state``'s SDF field to the shape its depth renders describe, and save
    ``state`` as the main run's first checkpoint. ``camera_tuples``: the training cameras as
    ``(c2w, intrinsics, H, W)``. Returns a report for ``run.json`` (steps, timings, fit error)."""
    from t23d.reconstruct.train import build_reconstruct_state, train_photometric
    from t23d.render.field_fns import render_depth_fn_of
    from t23d.run.checkpoint import has_checkpoint

    t0 = time.perf_counter()
    wcfg = density_warm_start_config(cfg)
    device = next(state.field.parameters()).device
    num_images = len(data.cameras.c2w)
    wstate = build_reconstruct_state(
        wcfg,
        cfg.background,
        device,
        num_images,
        [int(i) for i in data.train_indices.tolist()],
        image_size=(data.cameras.height, data.cameras.width),
    )
    wdir = run_dir / WARM_START_DIR
    if has_checkpoint(wdir / "checkpoints"):
        wstate.load(wdir / "checkpoints")
        log.info("warm start resumed from step %d", wstate.step)
    log.info("warm start: %d density steps before SDF training", wcfg.steps)
    # progress.json of the main run (what `t23d serve` shows) reports the warm start as its own phase
    train_photometric(
        wcfg,
        wstate,
        data,
        wdir,
        callback,
        should_stop,
        progress_dir=run_dir,
        phase=WARM_START_PHASE,
        end_phase=WARM_START_PHASE,
    )
    t_train = time.perf_counter() - t0
    wstate.field.eval()
    cams = warm_start_cameras(camera_tuples, cfg.warm_start.views, cfg.warm_start.view_size)
    depth_fn = render_depth_fn_of(wstate.field, wcfg.render, wstate.occupancy)
    fit_gen = torch.Generator().manual_seed(cfg.seed + 2)
    unseen = (np.zeros((0, 3), np.float32), np.zeros(0, np.float32))
    keep_above = None
    if cfg.field.ground_plane is not None:  # the field has the table: fit the object above it alone
        keep_above = np.asarray(cfg.field.ground_plane, dtype=np.float64)
        keep_above[3] += cfg.data.support_plane_margin
    try:
        report, unseen = sdf_from_density_field(
            wstate.field,
            depth_fn,
            state.field,
            cams,
            cfg.warm_start.fit_steps,
            fit_gen,
            resolution=cfg.warm_start.resolution,
            backend=cfg.export.tsdf_backend,
            keep_above=keep_above,
        )
    except ValueError as e:  # the density field shows no surface yet (too few steps): keep the sphere
        log.warning("warm start gave no shape (%s); the SDF starts from its sphere", e)
        report = {"fallback": str(e)}
    save_unseen(run_dir, unseen)
    if "poses" in wstate.extras and "poses" in state.extras:  # learnt pose corrections carry over
        state.extras["poses"].load_state_dict(wstate.extras["poses"].state_dict())
    state.save(run_dir / "checkpoints", cfg.keep_checkpoints)
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()}
    return {"steps": wcfg.steps, "train_s": round(t_train, 2), **rounded}
