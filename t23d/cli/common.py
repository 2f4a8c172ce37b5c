"""Shared CLI helpers: config assembly from presets/YAML/flags, Ctrl-C handling, the progress bar."""

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


@contextmanager
def stop_on_sigint() -> Iterator[Callable[[], bool]]:
    """Within the block, Ctrl-C (SIGINT) sets a flag instead of raising; yields ``should_stop``.

    A second Ctrl-C raises KeyboardInterrupt immediately.
    """
    flag = {"stop": False}

    def handler(signum, frame):  # noqa: ARG001
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True
        print(
            "\nstopping after this step and saving a checkpoint (Ctrl-C again to abort)...", file=sys.stderr
        )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: flag["stop"]
    finally:
        signal.signal(signal.SIGINT, previous)


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
    """Run ``run_fn(callback=..., should_stop=...)`` with a progress bar and Ctrl-C handling.

    Returns the exit code: 0 when done, 130 when interrupted (a checkpoint was saved and the resume
    command is printed).
    """
    from t23d.run.state import TrainingInterrupted

    progress: Progress | None = None

    def on_step(info: Any) -> None:
        nonlocal progress
        if progress is None:
            progress = Progress(info.total_steps, initial=info.step - 1)
        progress(info)

    with stop_on_sigint() as should_stop:
        try:
            run_dir = run_fn(callback=on_step, should_stop=should_stop)
        except TrainingInterrupted as e:
            if progress:
                progress.close()
            print(
                f"interrupted at step {e.step}; checkpoint saved in {e.run_dir}/checkpoints\n"
                f"resume with: t23d {command} --resume {e.run_dir}",
                file=sys.stderr,
            )
            return 130
        finally:
            if progress:
                progress.close()
    print(f"done: {run_dir}")
    return 0


def schedules_for_steps(cfg: Any, steps: int | None) -> Any:
    """A preset ``cfg`` whose step-based SDF schedules are rescaled to ``--steps`` (None or < 1: as is),
    before YAML overrides are applied (a YAML file still wins)."""
    if steps is None or steps < 1 or not hasattr(cfg, "sdf_training"):
        return cfg
    import dataclasses

    from t23d.field.sdf import rescale_sdf_training

    return dataclasses.replace(cfg, sdf_training=rescale_sdf_training(cfg.sdf_training, cfg.steps, steps))
