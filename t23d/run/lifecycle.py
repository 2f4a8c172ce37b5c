"""The life of a run directory around training, shared by ``generate`` and ``reconstruct``.

``run.json``'s ``status`` moves ``running -> completed`` on success, ``interrupted`` on Ctrl-C
(checkpoint saved), ``failed`` on an error during training (last good checkpoint kept), and
``export_failed`` when training finished but the asset could not be written (rerun ``t23d export``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from t23d.common.errors import T23dError
from t23d.run.rundir import attach_log_file, detach_log_file, update_run
from t23d.run.state import LoopState, TrainingInterrupted


@contextmanager
def recorded_run(run_dir: Path, state: LoopState) -> Iterator[None]:
    """Log into ``run_dir/log.txt``; any error but an interrupt marks the run ``failed`` with its message."""
    handler = attach_log_file(run_dir)
    try:
        yield
    except TrainingInterrupted:
        raise
    except BaseException as e:
        status = getattr(e, "run_status", "failed")
        update_run(run_dir, status=status, error=f"{type(e).__name__}: {e}", completed_steps=state.step)
        raise
    finally:
        detach_log_file(handler)


def timed_training(
    run_dir: Path, state: LoopState, timings: dict[str, float], train_fn: Callable[[], None]
) -> None:
    """Run ``train_fn``, adding its wall time to ``timings['train_s']``; record interrupts in run.json."""
    t0 = time.perf_counter()
    try:
        train_fn()
    except TrainingInterrupted as e:
        timings["train_s"] = timings.get("train_s", 0.0) + time.perf_counter() - t0
        update_run(run_dir, status="interrupted", completed_steps=e.step, timings=timings)
        raise TrainingInterrupted(e.step, run_dir) from None
    timings["train_s"] = timings.get("train_s", 0.0) + time.perf_counter() - t0
    update_run(run_dir, completed_steps=state.step, timings=timings)


class ExportFailed(T23dError):
    """Training finished but the asset stage failed; the run can be exported again on its own."""

    run_status = "export_failed"


def timed_export(
    run_dir: Path, timings: dict[str, float], export_fn: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run the end-of-run export; on a T23dError keep the trained run and say how to export it alone."""
    t0 = time.perf_counter()
    try:
        info = export_fn()
    except T23dError as e:
        raise ExportFailed(
            f"training finished, but the export failed: {e}. The trained field is saved; rerun only the export "
            f"with: t23d export {run_dir} (options such as --threshold, --resolution)"
        ) from e
    timings["export_s"] = time.perf_counter() - t0
    return info
