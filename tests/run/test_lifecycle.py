"""How a run directory records every way a run can end: graceful stop, a second signal (abort), a
signal or an error after training finished (never ``failed``), and the stop-signal handlers themselves.

The training step here is a stand-in that only advances the step counter, so these tests exercise the
run machinery (loop, checkpoints, run.json) in milliseconds; the real loops are run end to end in
tests/optimise, tests/reconstruct and tests/cli.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from t23d.cli.common import stop_on_signals
from t23d.common.config import apply_overrides, load_yaml
from t23d.common.interrupts import StopSignal, graceful_stop_window
from t23d.optimise.config import preset
from t23d.optimise.sds import build_state
from t23d.run.lifecycle import ExportFailed, recorded_run, timed_export, timed_training
from t23d.run.rundir import update_run
from t23d.run.state import StepInfo, TrainingInterrupted, TrainingState, run_training_loop

REPO = Path(__file__).resolve().parents[2]


def tiny_state() -> TrainingState:
    cfg = apply_overrides(preset("fast"), load_yaml(REPO / "configs" / "cpu-smoke.yaml"))
    return build_state(cfg, torch.device("cpu"))


def make_run(tmp_path: Path, steps: int) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("{}\n")
    update_run(run_dir, t23d_run="generate", status="running", steps=steps)
    return run_dir


def fake_step(state: TrainingState, steps: int, fail_at: int | None = None, exc: BaseException | None = None):
    def step() -> StepInfo:
        if fail_at is not None and state.step == fail_at:
            raise exc  # type: ignore[misc]
        state.step += 1
        return StepInfo(state.step, steps, {"total": 0.0})

    return step


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def train(run_dir: Path, state: TrainingState, steps: int, step_fn, should_stop=None, every: int = 2) -> None:
    timed_training(
        run_dir,
        state,
        {},
        lambda: run_training_loop(state, step_fn, steps, run_dir, every, 2, None, should_stop),
    )


def test_graceful_stop_checkpoints_the_step_reached(tmp_path):
    state, steps = tiny_state(), 10
    run_dir = make_run(tmp_path, steps)

    class Stop:
        signal_name = "SIGTERM"

        def __call__(self) -> bool:
            return state.step >= 3

    with pytest.raises(TrainingInterrupted, match="interrupted by SIGTERM at step 3") as exc:
        with recorded_run(run_dir, state):
            train(run_dir, state, steps, fake_step(state, steps), Stop())
    assert not exc.value.aborted and not exc.value.after_training
    assert "t23d generate --resume" in str(exc.value)
    info = run_json(run_dir)
    assert info["status"] == "interrupted" and info["completed_steps"] == 3
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"] == 3


def test_second_signal_aborts_and_keeps_the_last_periodic_checkpoint(tmp_path):
    state, steps = tiny_state(), 10
    run_dir = make_run(tmp_path, steps)
    with pytest.raises(
        TrainingInterrupted, match="aborted by SIGTERM; the last checkpoint \\(step 4\\)"
    ) as exc:
        with recorded_run(run_dir, state):
            train(run_dir, state, steps, fake_step(state, steps, 5, StopSignal(signal.SIGTERM)))
    assert exc.value.aborted and exc.value.step == 4
    info = run_json(run_dir)
    assert info["status"] == "interrupted" and info["completed_steps"] == 4 and "SIGTERM" in info["error"]


def test_signal_during_the_export_keeps_the_trained_run(tmp_path):
    state, steps = tiny_state(), 4
    run_dir = make_run(tmp_path, steps)

    def export() -> dict:
        raise StopSignal(signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="after training finished") as exc:
        with recorded_run(run_dir, state):
            train(run_dir, state, steps, fake_step(state, steps))
            timed_export(run_dir, {}, export)
    assert exc.value.after_training and exc.value.step == steps
    info = run_json(run_dir)
    assert info["status"] == "interrupted" and info["completed_steps"] == steps


@pytest.mark.parametrize(
    ("where", "error"),
    [("export", MemoryError("cannot allocate 3.6 TiB")), ("previews", RuntimeError("renderer broke"))],
)
def test_an_error_after_training_is_export_failed_never_failed(tmp_path, where, error):
    state, steps = tiny_state(), 4
    run_dir = make_run(tmp_path, steps)

    def boom() -> dict:
        raise error

    expected = ExportFailed if where == "export" else type(error)
    with pytest.raises(expected):
        with recorded_run(run_dir, state):
            train(run_dir, state, steps, fake_step(state, steps))
            if where == "export":
                timed_export(run_dir, {}, boom)
            else:
                boom()
    info = run_json(run_dir)
    assert info["status"] == "export_failed", info
    assert info["completed_steps"] == steps and type(error).__name__ in info["error"]
    if where == "export":
        assert f"t23d export {run_dir}" in info["error"]


def test_an_error_during_training_is_failed(tmp_path):
    state, steps = tiny_state(), 10
    run_dir = make_run(tmp_path, steps)
    with pytest.raises(RuntimeError):
        with recorded_run(run_dir, state):
            train(run_dir, state, steps, fake_step(state, steps, 5, RuntimeError("x")))
    assert run_json(run_dir)["status"] == "failed"


def test_stop_on_signals_defers_inside_the_training_loop_only():
    # whatever handlers the process had (another test's ray.init installs its own) come back afterwards
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stop_on_signals() as stop:
        with graceful_stop_window():
            os.kill(os.getpid(), signal.SIGTERM)  # first: only the flag
            assert stop() and stop.signal_name == "SIGTERM" and stop.exit_code == 143
            with pytest.raises(StopSignal) as exc:  # second: at once
                os.kill(os.getpid(), signal.SIGINT)
                signal.sigtimedwait([], 0.5)  # give the handler a bytecode boundary
            assert exc.value.signum == signal.SIGINT
    with stop_on_signals() as stop:
        with pytest.raises(StopSignal) as exc:  # outside the loop (loading, export): at once
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0.5)
        assert exc.value.signum == signal.SIGINT and stop.exit_code == 130
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_stop_that_a_library_swallowed_is_honoured_at_the_next_stage(tmp_path):
    """trimesh guards its lazy imports with ``except BaseException``: a Ctrl-C landing there is lost as
    an exception, but the request stays pending and the export's next stage boundary stops the run."""
    state, steps = tiny_state(), 4
    run_dir = make_run(tmp_path, steps)

    def export() -> dict:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.5)
        except BaseException:  # noqa: BLE001 - what the library does
            pass
        return {"asset_path": "written anyway"}

    with stop_on_signals() as stop:
        with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM after training finished"):
            with recorded_run(run_dir, state):
                train(run_dir, state, steps, fake_step(state, steps))
                timed_export(run_dir, {}, export)
        assert stop.exit_code == 143
    assert run_json(run_dir)["status"] == "interrupted"


def test_taking_the_run_lock_removes_what_killed_writes_left(tmp_path):
    """Starting or resuming a run (which takes its lock) removes every temporary file a killed write
    left in it, also those whose pid was reused and the names older versions and safetensors used; the
    run's own files stay."""
    from t23d.run.lifecycle import locked_run

    run_dir = make_run(tmp_path, steps=4)
    ckpt = run_dir / "checkpoints"
    ckpt.mkdir()
    (ckpt / "step_0000002.safetensors").write_bytes(b"kept")
    left = [
        ckpt / f".step_0000004.safetensors.t23d-tmp-{os.getpid()}-0a1b2c3d",  # a live (reused) pid
        ckpt / ".tmpab12CD",  # safetensors' own save_file temporary
        run_dir / ".run.json.k3j_x9Qa.tmp.json",  # tempfile.mkstemp's, t23d <= 0.1.0
    ]
    for p in left:
        p.write_bytes(b"x" * 100)
    with locked_run(run_dir, "resume"):
        assert not [p for p in left if p.exists()]
    assert (ckpt / "step_0000002.safetensors").read_bytes() == b"kept"
    assert sorted(p.name for p in run_dir.rglob("*")) == sorted(
        [".lock", "checkpoints", "config.yaml", "run.json", "step_0000002.safetensors"]
    )
