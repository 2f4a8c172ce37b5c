"""Training state shared by the SDS and photometric loops: modules, optimiser, RNG, occupancy grid,
and their (bit-exact) checkpointing."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from t23d.common.errors import T23dError
from t23d.common.interrupts import graceful_stop_window
from t23d.common.runtime import deterministic_algorithms
from t23d.field.background import Background
from t23d.field.nerf import NeRFField
from t23d.render.occupancy import OccupancyGrid
from t23d.run.checkpoint import (
    load_checkpoint,
    load_optimizer,
    optimizer_tensors,
    prefixed,
    save_checkpoint,
    unprefixed,
)


class TrainingInterrupted(T23dError):
    """The run stopped on request (Ctrl-C, SIGTERM); its checkpoint at ``step`` is on disk.

    ``after_training``: training had finished and the stop came during previews, evaluation or the
    export (the trained field is saved; ``t23d export`` or ``--resume`` finishes the run).
    ``aborted``: a second request stopped training without waiting for the step, so the steps after
    the last periodic checkpoint are lost.
    """

    def __init__(
        self,
        step: int,
        run_dir: Path,
        *,
        signal_name: str = "SIGINT",
        after_training: bool = False,
        aborted: bool = False,
        command: str | None = None,
    ):
        if after_training:
            what = f"stopped by {signal_name} after training finished (step {step}, checkpoint saved)"
        elif aborted:
            what = f"aborted by {signal_name}; the last checkpoint (step {step}) is kept"
        else:
            what = f"interrupted by {signal_name} at step {step}; checkpoint saved"
        how = f"t23d {command} --resume {run_dir}" if command else f"--resume {run_dir}"
        super().__init__(f"{what}. Resume with: {how}")
        self.step = step
        self.run_dir = run_dir
        self.signal_name = signal_name
        self.after_training = after_training
        self.aborted = aborted


class NonFiniteLoss(T23dError):
    """A loss became NaN or infinite; training stopped and the last good checkpoint was kept."""


class NonFiniteParameters(NonFiniteLoss):
    """A gradient or a parameter became NaN or infinite (e.g. a learning rate far too high); training
    stopped and the last good checkpoint was kept."""


@dataclass
class StepInfo:
    """What one step did, for progress bars and benchmarks."""

    step: int
    total_steps: int
    losses: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each phase of the step (``render``, ``guidance``/``loss``, ``backward``, ``optimiser``)."""
    num_samples: int = 0
    """Field samples evaluated in the step's render."""


StepCallback = Callable[[StepInfo], None]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an unavailable explicit ``cuda`` raises."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise T23dError(
            "--device cuda was requested but no CUDA device is available; use --device cpu or auto"
        )
    if name not in ("cpu", "cuda"):
        raise T23dError(f"unknown device {name!r}; accepted: auto, cpu, cuda")
    return torch.device(name)


def make_optimizer(
    field_: NeRFField,
    background: Background,
    lr_grid: float,
    lr_mlp: float,
    lr_background: float,
    betas: tuple[float, float],
    eps: float,
) -> torch.optim.Adam:
    """Adam with one parameter group per component (grid, MLPs, background)."""
    groups: list[dict[str, Any]] = [
        {"params": list(field_.encoding.parameters()), "lr": lr_grid, "name": "grid"},
        {"params": field_.mlp_parameters(), "lr": lr_mlp, "name": "mlp"},
    ]
    if getattr(field_, "is_sdf", False):
        # the SDF's sharpness, learnt with the MLPs (NeuS's variance network)
        groups.append({"params": [field_.log_inv_s], "lr": lr_mlp, "name": "sharpness"})
    from t23d.field.hashgrid import HashGridEncoding

    # hash tables anywhere in the background (environment map, outer field) learn at the grid's rate
    bg_grid = [p for m in background.modules() if isinstance(m, HashGridEncoding) for p in m.parameters()]
    bg_params = [p for p in background.parameters() if all(p is not q for q in bg_grid)]
    if bg_grid:
        groups.append({"params": bg_grid, "lr": lr_grid, "name": "background_grid"})
    if bg_params:
        groups.append({"params": bg_params, "lr": lr_background, "name": "background"})
    # the fused kernel is ~8x faster than the per-tensor loop on CPU and, being elementwise, deterministic
    return torch.optim.Adam(groups, betas=betas, eps=eps, fused=True)


class LoopState(Protocol):
    """What :func:`run_training_loop` needs of a training state (a NeRF's, a refined mesh's, ...)."""

    step: int
    """The next step to run."""

    def save(self, ckpt_dir: Path, keep_last: int, extra: dict[str, Any] | None = None) -> Path:
        """Checkpoint everything that evolves (atomically)."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the trained tensors live (CPU loops run torch's deterministic algorithms)."""
        ...

    def train(self) -> None:
        """Put the trainable modules in training mode."""
        ...


@dataclass
class TrainingState:
    """Everything that evolves during training."""

    field: NeRFField
    background: Background
    optimizer: torch.optim.Optimizer
    occupancy: OccupancyGrid
    generator: torch.Generator
    step: int = 0
    extras: dict[str, torch.nn.Module] = field(default_factory=dict)
    """Further trained modules of a loop (photo runs: ``appearance``, ``poses``), checkpointed by name."""

    @property
    def device(self) -> torch.device:
        """The field's device."""
        return next(self.field.parameters()).device

    def train(self) -> None:
        """Field, background and extras in training mode."""
        self.field.train()
        self.background.train()
        for module in self.extras.values():
            module.train()

    def optimizer_step(self) -> None:
        """The optimiser step, checked: see :func:`checked_optimizer_step`."""
        checked_optimizer_step(self.optimizer, self.step)

    def save(self, ckpt_dir: Path, keep_last: int, extra: dict[str, Any] | None = None) -> Path:
        """Checkpoint the state (atomically); the step recorded is the next step to run."""
        opt_t, opt_meta = optimizer_tensors(self.optimizer)
        tensors: dict[str, Tensor] = {}
        tensors.update(prefixed("field", self.field.state_dict()))
        tensors.update(prefixed("background", self.background.state_dict()))
        tensors.update(prefixed("optim", opt_t))
        tensors.update(prefixed("occupancy", self.occupancy.state_dict()))
        for name, module in self.extras.items():
            tensors.update(prefixed(f"extra.{name}", module.state_dict()))
        tensors["rng"] = self.generator.get_state()
        state = {
            "optimizer": opt_meta,
            "implementation": self.field.implementation,
            **(extra or {}),
        }
        return save_checkpoint(ckpt_dir, self.step, tensors, state, keep_last)

    def load(self, ckpt_dir: Path) -> dict[str, Any]:
        """Restore from the latest checkpoint in ``ckpt_dir``; returns its JSON state."""
        tensors, state = load_checkpoint(ckpt_dir)
        load_module_state(self.field, unprefixed("field", tensors), state, ckpt_dir)
        self.background.load_state_dict(unprefixed("background", tensors))
        load_optimizer(self.optimizer, unprefixed("optim", tensors), state["optimizer"])
        self.occupancy.load_state_dict(unprefixed("occupancy", tensors))
        for name, module in self.extras.items():
            module.load_state_dict(unprefixed(f"extra.{name}", tensors))
        self.generator.set_state(tensors["rng"])
        self.step = int(state["step"])
        return state


def load_module_state(
    field_: NeRFField, tensors: dict[str, Tensor], state: dict[str, Any], where: Path
) -> None:
    """Load field weights, checking shapes; all hash-grid implementations share one layout."""
    import logging

    own = field_.state_dict()
    bad = [k for k in own if k not in tensors or tensors[k].shape != own[k].shape]
    if bad:
        raise T23dError(
            f"checkpoint in {where} does not match this field configuration (mismatched: {', '.join(bad[:5])}); "
            "load it with the config.yaml saved beside it"
        )
    trained_with = state.get("implementation")
    if trained_with and trained_with != field_.implementation:
        logging.getLogger(__name__).info(
            "checkpoint was trained with the '%s' hash grid, loading into '%s' (same parameter layout)",
            trained_with,
            field_.implementation,
        )
    field_.load_state_dict({k: tensors[k] for k in own})


#: The learning-rate key (under ``optim``) of each parameter group the training loops make.
_LR_KEYS = {
    "grid": "lr_grid",
    "background_grid": "lr_grid",
    "mlp": "lr_mlp",
    "sharpness": "lr_mlp",
    "background": "lr_background",
    "offsets": "lr_offsets",  # the refine loop's (t23d.optimise.refine.make_refine_optimizer)
    "color_grid": "lr_grid",
    "color_mlp": "lr_mlp",
}


def checked_optimizer_step(optimizer: torch.optim.Optimizer, step: int) -> None:
    """Take the optimiser step, then check every parameter is finite.

    A NaN or Inf gradient makes Adam's update, hence the parameters, non-finite too, as does a finite
    gradient times a huge learning rate, so one check after the step catches both; it raises
    :class:`NonFiniteParameters` naming the parameter group (and whether its gradient was the cause)
    before anything is saved, so the last checkpoint on disk is the last good state. The cost is one
    reduction per parameter tensor and step (a NaN or Inf anywhere makes the sum non-finite).
    """
    optimizer.step()
    bad = _first_non_finite(optimizer, grads=False)
    if bad is None:
        return
    cause = (
        "its gradient was NaN or infinite; lower the learning rates or the guidance scale, or check the "
        "prior's dtype"
        if _first_non_finite(optimizer, grads=True) is not None
        else f"the gradients were finite, so the update overflowed: lower optim.{_LR_KEYS.get(bad, 'lr_*')}"
    )
    raise NonFiniteParameters(
        f"the parameters of '{bad}' became NaN or infinite at step {step + 1} ({cause}); training stopped "
        "and the last good checkpoint was kept"
    )


def _first_non_finite(optimizer: torch.optim.Optimizer, grads: bool) -> str | None:
    """Name of the first parameter group with a non-finite gradient (``grads``) or parameter, else None."""
    for group in optimizer.param_groups:
        tensors = [p.grad if grads else p for p in group["params"]]
        sums = [t.detach().sum() for t in tensors if t is not None]
        if sums and not bool(torch.isfinite(torch.stack(sums)).all()):
            return str(group.get("name", "parameters"))
    return None


def check_finite(losses: dict[str, Tensor]) -> None:
    """Raise :class:`NonFiniteLoss` naming the first loss term that is NaN or infinite."""
    for name, value in losses.items():
        v = float(value.detach())
        if not math.isfinite(v):
            raise NonFiniteLoss(
                f"loss term '{name}' became {v} ; training stopped and the last good checkpoint was kept. "
                "Lower the learning rates or the guidance scale, or check the prior's dtype."
            )


def run_training_loop(
    state: LoopState,
    step_fn: Callable[[], StepInfo],
    total_steps: int,
    run_dir: Path,
    checkpoint_every: int,
    keep_checkpoints: int,
    callback: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    preview_fn: Callable[[int], None] | None = None,
    preview_every_s: float = 0.0,
    progress_dir: Path | None = None,
    phase: str = "training",
    end_phase: str = "finishing",
) -> None:
    """Call ``step_fn`` until ``state.step == total_steps``, checkpointing every ``checkpoint_every`` steps.

    ``should_stop`` is polled before each step; when it returns True a checkpoint is written and
    :class:`TrainingInterrupted` is raised. The loop is a :func:`graceful_stop_window`: a signal handler
    (see :mod:`t23d.common.interrupts`) only sets the flag here, instead of raising mid-step.
    ``run_dir/progress.json`` (step, loss, rate, ETA) is rewritten at most once a second and at the end
    (:class:`~t23d.run.progress.ProgressFile`; ``progress_dir`` and ``phase`` let a loop that is one
    stage of a larger run report into that run's file; ``end_phase`` is the phase written when the loop
    is done: "finishing" as previews and the export follow). ``preview_fn(step)``, if given, is called every
    ``preview_every_s`` seconds (without gradients; modules back in train mode after). A non-finite loss
    (or parameter, see :meth:`TrainingState.optimizer_step`) raises from ``step_fn`` before the
    optimiser step, so the last checkpoint on disk is the last good state. Always ends with a checkpoint.
    """
    from t23d.run.progress import ProgressFile

    ckpt_dir = run_dir / "checkpoints"
    progress = ProgressFile(progress_dir or run_dir, total_steps, start_step=state.step, phase=phase)
    last_preview = time.monotonic()
    state.train()
    with graceful_stop_window(), deterministic_algorithms(state.device.type == "cpu"):
        while state.step < total_steps:
            if should_stop is not None and should_stop():
                state.save(ckpt_dir, keep_checkpoints)
                progress.write("interrupted")
                raise TrainingInterrupted(state.step, run_dir, signal_name=_stop_name(should_stop))
            info = step_fn()
            progress.update(state.step, info.losses)
            if (
                preview_fn is not None
                and preview_every_s > 0
                and time.monotonic() - last_preview >= preview_every_s
            ):
                with torch.no_grad():
                    preview_fn(state.step)
                state.train()
                last_preview = time.monotonic()
            if callback is not None:
                callback(info)
            if state.step % checkpoint_every == 0 and state.step < total_steps:
                state.save(ckpt_dir, keep_checkpoints)
        state.save(ckpt_dir, keep_checkpoints)
        if should_stop is not None and should_stop():  # a request that came during the last step or save
            progress.write("interrupted")
            raise TrainingInterrupted(
                state.step, run_dir, signal_name=_stop_name(should_stop), after_training=True
            )
    progress.write(end_phase)


def _stop_name(should_stop: Callable[[], bool]) -> str:
    return str(getattr(should_stop, "signal_name", None) or "a stop request")
