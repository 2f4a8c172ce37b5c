"""Shared CLI helpers: config assembly from presets/YAML/flags, Ctrl-C/SIGTERM handling, the progress bar."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from t23d.common.config import apply_overrides, load_yaml


def apply_yaml_files(cfg: Any, files: list[str]) -> Any:
    """Apply each YAML override file in order (strict)."""
    for f in files:
        path = Path(f)
        if not path.is_file() and (Path("configs") / f).is_file():
            path = Path("configs") / f
        cfg = apply_overrides(cfg, load_yaml(path))
    return cfg


def _say(message: str) -> None:
    """Print to stderr; a closed stderr (the parent or terminal is gone, often what sent the signal) must
    not turn a clean stop into a failed run."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class StopRequests:
    """``should_stop`` for the training loop, set by Ctrl-C (SIGINT) or SIGTERM (see :func:`stop_on_signals`)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        """The first stop signal received, or None."""

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> str | None:
        """``SIGINT`` / ``SIGTERM`` once a signal came."""
        return None if self.signum is None else signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process stopped by the signal: 128 + its number (130, 143)."""
        return 128 + (self.signum or signal.SIGINT)


@contextmanager
def stop_on_signals() -> Iterator[StopRequests]:
    """Within the block, Ctrl-C (SIGINT) and SIGTERM (``docker stop``, SLURM, ``timeout``, ``kill``) ask
    the run to stop; yields the :class:`StopRequests` to pass as ``should_stop``.

    Inside the training loop (:func:`t23d.common.interrupts.in_graceful_stop_window`) the first signal only
    sets the flag: the run stops after the current step with a checkpoint. Elsewhere (loading, previews,
    the end-of-run export), and for a second signal anywhere, it raises
    :class:`t23d.common.interrupts.StopSignal` at once; the run is still recorded as ``interrupted``.
    """
    from t23d.common.interrupts import StopSignal, clear_stop_request, in_graceful_stop_window, request_stop

    stop = StopRequests()

    def handler(signum, frame):  # noqa: ARG001
        name = signal.Signals(signum).name
        if stop.signum is None:
            stop.signum = signum
            request_stop(signum)
            if in_graceful_stop_window():
                _say(f"\n{name}: stopping after this step and saving a checkpoint (again to abort)...")
                return
        raise StopSignal(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, prev in previous.items():
            signal.signal(sig, prev)
        clear_stop_request()


class Progress:
    """tqdm progress bar with step, loss and ETA; falls back to periodic log lines when not a TTY."""

    def __init__(self, total: int, initial: int = 0, desc: str = "train"):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            dynamic_ncols=True,
            file=sys.stderr,
            mininterval=0.5,
            disable=None,
        )
        self.last_print = time.monotonic()

    def __call__(self, info: Any) -> None:
        losses = info.losses
        self.bar.set_postfix({"loss": f"{losses.get('total', 0.0):.4g}"}, refresh=False)
        self.bar.update(1)
        if self.bar.disable and time.monotonic() - self.last_print > 10:
            self.last_print = time.monotonic()
            print(f"step {info.step}/{info.total_steps} loss {losses.get('total', 0.0):.4g}", file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def run_training_command(command: str, run_fn: Callable[..., Path]) -> int:
    """Run ``run_fn(callback=..., should_stop=...)`` with a progress bar and Ctrl-C/SIGTERM handling.

    Returns the exit code: 0 when done; 130 (SIGINT) or 143 (SIGTERM) when stopped by a signal, after
    printing what was kept and the command that continues the run.
    """
    from t23d.run.state import TrainingInterrupted

    progress: Progress | None = None

    def on_step(info: Any) -> None:
        nonlocal progress
        if progress is None:
            progress = Progress(info.total_steps, initial=info.step - 1)
        progress(info)

    with stop_on_signals() as stop:
        try:
            run_dir = run_fn(callback=on_step, should_stop=stop)
        except TrainingInterrupted as e:
            if progress:
                progress.close()
            if e.after_training:
                _say(
                    f"{e.signal_name}: stopped after training finished (step {e.step}); the trained field is "
                    f"saved in {e.run_dir}/checkpoints\nexport it with: t23d export {e.run_dir}   "
                    f"(or finish the run with: t23d {command} --resume {e.run_dir})"
                )
            else:
                kept = "the last checkpoint is" if e.aborted else "checkpoint saved"
                _say(
                    f"{e.signal_name}: interrupted at step {e.step}; {kept} in {e.run_dir}/checkpoints\n"
                    f"resume with: t23d {command} --resume {e.run_dir}"
                )
            return stop.exit_code
        except KeyboardInterrupt:  # before a run directory existed: nothing was written
            _say(f"{stop.signal_name or 'SIGINT'}: stopped before training started")
            return stop.exit_code
        finally:
            if progress:
                progress.close()
    print(f"done: {run_dir}")
    return 0


def schedules_for_steps(cfg: Any, steps: int | None) -> Any:
    """A preset ``cfg`` whose step-based schedules (the SDF ramps, where the learning-rate decay starts,
    the length of a photo run's density warm start) are rescaled to ``--steps`` (None or < 1: as is),
    before YAML overrides and ``--warm-start`` are applied (they still win). Without it ``--steps``
    shorter than the decay start would never decay."""
    if steps is None or steps < 1 or steps == cfg.steps:
        return cfg
    import dataclasses

    changes: dict[str, Any] = {}
    if hasattr(cfg, "sdf_training"):
        from t23d.field.sdf import rescale_sdf_training

        changes["sdf_training"] = rescale_sdf_training(cfg.sdf_training, cfg.steps, steps)
    if hasattr(cfg, "lr_decay_start"):
        changes["lr_decay_start"] = cfg.lr_decay_start * steps // cfg.steps
    warm = getattr(cfg, "warm_start", None)
    if warm is not None and warm.steps > 0:
        changes["warm_start"] = dataclasses.replace(warm, steps=max(1, warm.steps * steps // cfg.steps))
    return dataclasses.replace(cfg, **changes) if changes else cfg
