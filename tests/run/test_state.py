"""Non-finite gradients and parameters are caught (not only the loss), name their parameter group and
the cause, and never reach a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from t23d.common.config import apply_overrides, load_yaml
from t23d.optimise.config import preset
from t23d.optimise.sds import build_state
from t23d.run.checkpoint import load_checkpoint
from t23d.run.state import NonFiniteParameters, StepInfo, TrainingState, run_training_loop

REPO = Path(__file__).resolve().parents[2]


def tiny_state() -> TrainingState:
    cfg = apply_overrides(preset("fast"), load_yaml(REPO / "configs" / "cpu-smoke.yaml"))
    return build_state(cfg, torch.device("cpu"))


def density_step(state: TrainingState, steps: int):
    """A real gradient step on the field: pull the density of random points towards 1."""
    gen = torch.Generator().manual_seed(0)

    def step() -> StepInfo:
        x = torch.rand(256, 3, generator=gen) * 1.6 - 0.8
        loss = (state.field.density(x) - 1.0).square().mean()
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer_step()
        state.step += 1
        return StepInfo(state.step, steps, {"total": float(loss.detach())})

    return step


def test_an_overflowing_update_is_caught_and_names_the_learning_rate():
    state = tiny_state()
    for group in state.optimizer.param_groups:
        if group["name"] == "grid":
            group["lr"] = float("inf")  # validation refuses it in a config; the check must not rely on that
    with pytest.raises(NonFiniteParameters, match="parameters of 'grid' became NaN or infinite at step 1 .*"
                       "the gradients were finite, so the update overflowed: lower optim.lr_grid"):  # fmt: skip
        density_step(state, 1)()


def test_a_nan_gradient_is_caught_before_a_checkpoint_is_written(tmp_path):
    state, steps = tiny_state(), 10
    mlp = next(g for g in state.optimizer.param_groups if g["name"] == "mlp")
    poison = {"on": False}
    for p in mlp["params"]:
        p.register_hook(lambda g: g * float("nan") if poison["on"] else g)
    step = density_step(state, steps)

    def step_fn() -> StepInfo:
        poison["on"] = state.step >= 3  # steps 1-3 are fine; the 4th gradient is NaN
        return step()

    with pytest.raises(NonFiniteParameters, match="parameters of 'mlp' became NaN or infinite at step 4 "
                       r"\(its gradient was NaN or infinite"):  # fmt: skip
        run_training_loop(state, step_fn, steps, tmp_path, 2, 2)
    ckpt = tmp_path / "checkpoints"
    assert json.loads((ckpt / "latest.json").read_text())["step"] == 2
    tensors, _ = load_checkpoint(ckpt)
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
