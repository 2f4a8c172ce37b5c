"""The refine loop (Magic3D-style stage 2): SDS on rasterised renders of an explicit textured mesh.

Initialisation from a stage-1 run (``t23d generate``):

1. **Geometry**: the export stage's :func:`t23d.extract.extract_mesh` on the stage-1 field (density or
   SDF geometry), decimated to ``mesh.faces``, becomes a :class:`~t23d.field.mesh_geometry.DeformableMesh`
   whose per-vertex offsets are learnt (Laplacian + normal-consistency regularised). Chosen over
   DMTet: the explicit mesh is simpler, cheaper to rasterise on CPU, and starts exactly from the mesh
   the export stage would have written, so the refine stage can only improve on it.
2. **Texture**: a hash-grid :class:`~t23d.field.color_field.ColorField` queried at the rasterised
   surface points, first fitted to the stage-1 colours at area-uniform surface points
   (:func:`distill_colors`, the same colours the export bake would read). Chosen over a UV texture
   optimised directly: no atlas is needed while the mesh moves, and its detail is not capped by a chart
   layout; it is baked into a UV texture by the existing bake at export.
3. **Background**: the stage-1 run's background with its trained weights (the prior saw it in stage 1).

Per step: random cameras and shading (as stage 1, at ``camera.resolution``), rasterise (nvdiffrast on
CUDA when installed, else :mod:`t23d.render.diffrast_torch`), colour and shade the covered pixels,
composite, anti-alias (silhouette gradients), SDS with the same guidance objects as stage 1, plus the
mesh regularisers; one Adam step. All randomness comes from one checkpointed CPU generator, so a
resumed run continues bit-exactly on CPU.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from t23d.field.background import Background
from t23d.field.color_field import ColorField
from t23d.field.mesh_geometry import DeformableMesh
from t23d.optimise.refine_config import RefineConfig
from t23d.render.cameras import Cameras, sample_random_views
from t23d.render.diffrast import Rasterizer
from t23d.render.shading import Shading, sample_shading
from t23d.render.surface import SurfaceRender, render_surface
from t23d.run.checkpoint import (
    load_checkpoint,
    load_optimizer,
    optimizer_tensors,
    prefixed,
    save_checkpoint,
    unprefixed,
)
from t23d.run.state import StepCallback, StepInfo, check_finite, checked_optimizer_step, run_training_loop

logger = logging.getLogger(__name__)


@dataclass
class RefineState:
    """Everything that evolves in a refine run, and what is fixed by its initialisation."""

    mesh: DeformableMesh
    color: ColorField
    background: Background
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    rasterizer: Rasterizer
    topology: Any
    step: int = 0

    @property
    def device(self) -> torch.device:
        """The mesh's device."""
        return self.mesh.offsets.device

    def train(self) -> None:
        """Modules in training mode."""
        self.mesh.train()
        self.color.train()
        self.background.train()

    def save(self, ckpt_dir: Path, keep_last: int, extra: dict[str, Any] | None = None) -> Path:
        """Checkpoint mesh, colour field, background, optimiser and RNG (atomically)."""
        opt_t, opt_meta = optimizer_tensors(self.optimizer)
        tensors: dict[str, Tensor] = {}
        tensors.update(prefixed("mesh", self.mesh.state_dict()))
        tensors.update(prefixed("color", self.color.state_dict()))
        tensors.update(prefixed("background", self.background.state_dict()))
        tensors.update(prefixed("optim", opt_t))
        tensors["rng"] = self.generator.get_state()
        state = {"optimizer": opt_meta, "implementation": self.color.implementation, **(extra or {})}
        return save_checkpoint(ckpt_dir, self.step, tensors, state, keep_last)


def make_refine_optimizer(
    cfg: RefineConfig, mesh: DeformableMesh, color: ColorField, background: Background
) -> torch.optim.Adam:
    """Adam with one group per part (offsets, colour grid, colour MLP, background)."""
    o = cfg.optim
    groups: list[dict[str, Any]] = [
        {"params": [mesh.offsets], "lr": o.lr_offsets, "name": "offsets"},
        {"params": list(color.encoding.parameters()), "lr": o.lr_grid, "name": "color_grid"},
        {"params": list(color.mlp.parameters()), "lr": o.lr_mlp, "name": "color_mlp"},
    ]
    bg = list(background.parameters())
    if bg:
        groups.append({"params": bg, "lr": o.lr_background, "name": "background"})
    return torch.optim.Adam(groups, betas=o.betas, eps=o.eps, fused=True)


def _assemble(
    cfg: RefineConfig, mesh: DeformableMesh, color: ColorField, background: Background, device: torch.device
) -> RefineState:
    rasterizer = Rasterizer(cfg.rasterizer, device)
    optimizer = make_refine_optimizer(cfg, mesh, color, background)
    generator = torch.Generator().manual_seed(cfg.seed)
    topology = rasterizer.topology(mesh.faces, mesh.num_vertices)
    return RefineState(mesh, color, background, optimizer, generator, rasterizer, topology)


def sample_surface(
    vertices: Tensor, faces: Tensor, num_points: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``num_points`` area-uniform random points on the mesh and their (flat) unit normals, each [N, 3]."""
    from t23d.field.mesh_geometry import face_normals

    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    area = torch.linalg.cross(v1 - v0, v2 - v0).norm(dim=-1).double().cpu()
    face = torch.multinomial(area / area.sum(), num_points, replacement=True, generator=generator)
    u = torch.rand(num_points, 2, generator=generator, dtype=torch.float64)
    flip = u.sum(-1) > 1
    u[flip] = 1 - u[flip]  # uniform on the triangle
    u = u.to(vertices.device, vertices.dtype)
    face = face.to(vertices.device)
    points = v0[face] + u[:, :1] * (v1[face] - v0[face]) + u[:, 1:] * (v2[face] - v0[face])
    return points, face_normals(vertices, faces)[face]


def distill_colors(
    color: ColorField,
    target_fn: Callable[[Tensor, Tensor], Tensor],
    mesh: DeformableMesh,
    cfg: RefineConfig,
    generator: torch.Generator,
) -> float:
    """Fit ``color`` to ``target_fn`` (stage-1 colours; points, view dirs -> sRGB) at surface points,
    viewed straight on as the export bake reads them. Returns the final mean squared error."""
    from t23d.texture.bake import query_colors

    d = cfg.distill
    if d.steps <= 0:
        return float("nan")
    with torch.no_grad():
        points, normals = sample_surface(mesh.vertices(), mesh.faces, d.num_points, generator)
    targets = query_colors(
        target_fn, points.cpu().double().numpy(), normals.cpu().double().numpy(), "albedo", 65_536
    )
    targets_t = torch.from_numpy(targets).to(points.device)
    opt = torch.optim.Adam(
        [
            {"params": list(color.encoding.parameters()), "lr": d.lr},
            {"params": list(color.mlp.parameters()), "lr": d.lr * 0.1},
        ],
        betas=(0.9, 0.99),
        eps=1e-15,
    )
    loss = torch.zeros(())
    for _ in range(d.steps):
        pick = torch.randint(len(points), (min(d.batch_size, len(points)),), generator=generator)
        pick = pick.to(points.device)
        loss = torch.nn.functional.mse_loss(color(points[pick]), targets_t[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        err = float(torch.nn.functional.mse_loss(color(points[:8192]), targets_t[:8192]))
    logger.info("colour field distilled from stage 1: %d steps, MSE %.2e (PSNR %.1f dB)", d.steps, err,
                -10 * torch.log10(torch.tensor(max(err, 1e-12))).item())  # fmt: skip
    return err


def init_refine_state(cfg: RefineConfig, device: torch.device) -> tuple[RefineState, dict[str, Any]]:
    """A new refine state from the stage-1 run ``cfg.source``: extracted mesh, distilled colours, the
    stage-1 background. Returns the state and facts for run.json (mesh size, distillation error)."""
    from t23d.extract import extract_mesh
    from t23d.optimise.generate import load_generate_state
    from t23d.render.field_fns import bake_color_fn_of, density_fn_of, sdf_fn_of
    from t23d.render.volume import step_size

    t0 = time.perf_counter()
    cfg1, state1 = load_generate_state(Path(cfg.source), device)
    field_ = state1.field
    field_.eval()
    vertices, faces, threshold = extract_mesh(
        density_fn_of(field_), field_.aabb(), cfg.mesh,
        render_step=step_size(field_, cfg1.render), sdf_fn=sdf_fn_of(field_),
    )  # fmt: skip
    mesh = DeformableMesh(torch.from_numpy(vertices), torch.from_numpy(faces.astype("int64"))).to(device)
    init_gen = torch.Generator().manual_seed(cfg.seed + 1)
    color = ColorField(cfg.color, field_.cfg.bound, device=device, generator=init_gen)
    mse = distill_colors(
        color, bake_color_fn_of(field_, field_.aabb(), cfg.mesh.resolution), mesh, cfg, init_gen
    )
    background = state1.background
    del state1, field_
    state = _assemble(cfg, mesh, color, background.to(device), device)
    facts = {
        "mesh_vertices": mesh.num_vertices,
        "mesh_faces": mesh.num_faces,
        "threshold": float(threshold),
        "distill_mse": mse,
        "init_s": round(time.perf_counter() - t0, 3),
        "rasterizer": state.rasterizer.backend,
    }
    return state, facts


def load_refine_state(cfg: RefineConfig, ckpt_dir: Path, device: torch.device) -> RefineState:
    """Rebuild a refine state from its latest checkpoint (the mesh's size comes from the checkpoint)."""
    tensors, meta = load_checkpoint(ckpt_dir)
    mesh_t = unprefixed("mesh", tensors)
    mesh = DeformableMesh(mesh_t["base_vertices"], mesh_t["faces"]).to(device)
    mesh.load_state_dict(mesh_t)
    color = ColorField(cfg.color, cfg.bound, device=device)
    color.load_state_dict(unprefixed("color", tensors))
    b = cfg.bound
    aabb = torch.tensor([[-b, -b, -b], [b, b, b]])
    background = Background(cfg.background, device=device, aabb=aabb).to(device)
    background.load_state_dict(unprefixed("background", tensors))
    state = _assemble(cfg, mesh, color, background, device)
    load_optimizer(state.optimizer, unprefixed("optim", tensors), meta["optimizer"])
    state.generator.set_state(tensors["rng"])
    state.step = int(meta["step"])
    return state


def render_views(
    state: RefineState, cameras: Cameras, shading: Shading | None = None, background: bool = True
) -> SurfaceRender:
    """Render the current mesh and colours from ``cameras`` (over the background, or black)."""
    dev = state.mesh.offsets.device
    if background:
        gen = state.generator if state.background.training else None

        def bg_fn(dirs: Tensor) -> Tensor:
            return state.background(dirs, None, gen)
    else:

        def bg_fn(dirs: Tensor) -> Tensor:
            return torch.zeros_like(dirs)

    return render_surface(
        state.rasterizer, state.topology, state.mesh.vertices(), state.mesh.faces, state.color,
        cameras.to(dev), bg_fn, shading,
    )  # fmt: skip


def refine_step(cfg: RefineConfig, state: RefineState, guidance: Any) -> StepInfo:
    """One optimisation step; returns losses and per-phase timings."""
    step, gen = state.step, state.generator
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    views = sample_random_views(cfg.camera, gen)
    dev = state.mesh.offsets.device
    shading = sample_shading(cfg.shading, step, views.cameras.c2w[:, :3, 3].to(dev), gen)
    out = render_views(state, views.cameras, shading)
    timings["render"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    g = guidance.compute(out.rgb, views.azimuth_deg, views.elevation_deg, step, gen)
    timings["guidance"] = time.perf_counter() - t0
    losses: dict[str, Tensor] = {"sds": g.loss}
    w_lap = cfg.regularisers.laplacian.at(step)
    if w_lap > 0:
        losses["laplacian"] = w_lap * state.mesh.laplacian_loss()
    w_nc = cfg.regularisers.normal_consistency.at(step)
    if w_nc > 0:
        losses["normal_consistency"] = w_nc * state.mesh.normal_consistency_loss()
    check_finite(losses)
    total = sum(losses.values())
    t0 = time.perf_counter()
    state.optimizer.zero_grad(set_to_none=True)
    total.backward()  # type: ignore[union-attr]
    timings["backward"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    checked_optimizer_step(state.optimizer, state.step)  # parameters stay finite
    timings["optimiser"] = time.perf_counter() - t0
    state.step += 1
    values = {k: float(v.detach()) for k, v in losses.items()}
    values["total"] = float(total.detach())  # type: ignore[union-attr]
    values["grad_norm"] = float(g.grad_norm)
    values["coverage"] = float(out.mask.float().mean())
    return StepInfo(step, cfg.steps, values, timings, int(out.mask.sum()))


def train_refine(
    cfg: RefineConfig,
    state: RefineState,
    guidance: Any,
    run_dir: Path,
    callback: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    preview_fn: Callable[[int], None] | None = None,
) -> None:
    """Train to ``cfg.steps`` with checkpoints, Ctrl-C and NaN handling (``run_training_loop``);
    ``preview_fn(step)`` runs every ``cfg.preview.live_every_s`` seconds."""
    run_training_loop(
        state,
        lambda: refine_step(cfg, state, guidance),
        cfg.steps,
        run_dir,
        cfg.checkpoint_every,
        cfg.keep_checkpoints,
        callback,
        should_stop,
        preview_fn=preview_fn,
        preview_every_s=cfg.preview.live_every_s,
    )
