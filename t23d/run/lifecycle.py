"""The life of a run directory around training, shared by ``generate``, ``refine`` and ``reconstruct``.

A run starts with :func:`open_resumed_run` (``--resume``: checks, lock, the saved config) or
:func:`create_locked_run`, then records its start with :func:`record_new_run` or
:func:`record_resumed_run` once its state is built.

``run.json``'s ``status`` moves ``running -> completed`` on success; ``interrupted`` on Ctrl-C or
SIGTERM (the checkpoint of the step reached is saved; after a second signal, the last periodic one is
kept); ``failed`` on an error during training (last good checkpoint kept); ``export_failed`` when
training finished but something after it (previews, evaluation, the asset) failed: the trained field
is kept and ``t23d export`` reruns the asset stage alone. A run whose training finished is never
marked ``failed``.

While a run trains, its process holds the run lock (:mod:`t23d.run.lock`); on taking it, the
temporary files that killed writes left in the run directory are removed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from t23d.common.atomic import remove_stale_temp_files
from t23d.common.errors import T23dError
from t23d.common.interrupts import StopSignal, raise_if_stop_requested
from t23d.run.checkpoint import check_resumable, has_checkpoint, latest_step
from t23d.run.lock import RunLock
from t23d.run.rundir import (
    attach_log_file,
    check_writable,
    create_run_dir,
    detach_log_file,
    read_run,
    update_run,
    write_config,
)
from t23d.run.state import LoopState, TrainingInterrupted

logger = logging.getLogger(__name__)

C = TypeVar("C")


@contextmanager
def locked_run(run_dir: Path, purpose: str) -> Iterator[RunLock]:
    """Hold ``run_dir``'s lock for the block (raises :class:`t23d.run.lock.RunBusy` if another process
    has it) and first remove the temporary files that killed writes left there."""
    with RunLock(run_dir, purpose) as lock:
        removed = remove_stale_temp_files(run_dir, recursive=True, owner_locked=True)
        if removed:
            logger.warning(
                "removed %d temporary file(s) left in %s by interrupted writes", len(removed), run_dir
            )
        yield lock


def open_resumed_run(
    held: ExitStack,
    resume: Path,
    kind: str,
    cfg: C,
    load_config: Callable[[Path], C],
    validate: Callable[[C], Any],
    first_stage: str | None = None,
) -> tuple[Path, dict[str, Any], C]:
    """The start of ``--resume``, before anything is loaded: ``resume`` must be a ``kind`` run; its lock is
    taken for as long as ``held`` is open; its saved config (``load_config``) gets ``cfg.steps`` when that
    is larger (0 keeps the saved count) and is validated; its latest checkpoint must be readable and the
    folder writable. ``first_stage``: a subfolder holding a stage that runs before the main training
    (e.g. reconstruct's warm start); a run stopped during it resumes from that stage's checkpoint.
    Returns ``(run_dir, run.json's record, the config to resume with)``."""
    run_dir = Path(resume)
    info = read_run(run_dir, kind)
    held.enter_context(locked_run(run_dir, "resume"))
    saved = load_config(run_dir)
    cfg = dataclasses.replace(saved, steps=max(cfg.steps, saved.steps) if cfg.steps else saved.steps)  # type: ignore[attr-defined,type-var]
    validate(cfg)
    ckpts = run_dir / "checkpoints"
    if (
        first_stage is not None
        and not has_checkpoint(ckpts)
        and has_checkpoint(run_dir / first_stage / "checkpoints")
    ):
        ckpts = run_dir / first_stage / "checkpoints"
    check_resumable(ckpts, run_dir)
    check_writable(run_dir, "--resume")
    return run_dir, info, cfg


def create_locked_run(held: ExitStack, out_parent: Path, name: str) -> Path:
    """A new run directory ``out_parent/<name>-<time>`` (:func:`create_run_dir`), locked for training for as
    long as ``held`` is open."""
    run_dir = create_run_dir(Path(out_parent), name)
    held.enter_context(locked_run(run_dir, "train"))
    return run_dir


def record_new_run(run_dir: Path, cfg: Any, kind: str, **fields: Any) -> None:
    """Write a new run's resolved config and start its ``run.json``: ``t23d_run`` = ``kind``, ``status``
    running, then ``fields`` (in order)."""
    write_config(run_dir, cfg)
    update_run(run_dir, t23d_run=kind, status="running", **fields)


def record_resumed_run(run_dir: Path, cfg: Any, step: int) -> None:
    """Rewrite a resumed run's config (its step count may have grown) and mark it running again from ``step``."""
    write_config(run_dir, cfg)
    update_run(run_dir, status="running", steps=cfg.steps, resumed_from_step=step)


def _training_finished(run_dir: Path) -> tuple[bool, int]:
    """(whether the last checkpoint is at the run's final step, that checkpoint's step)."""
    step = latest_step(run_dir / "checkpoints")
    try:
        total = int(read_run(run_dir).get("steps", -1))
    except (T23dError, ValueError, TypeError):
        total = -1
    return step is not None and total > 0 and step >= total, step or 0


@contextmanager
def recorded_run(run_dir: Path, state: LoopState) -> Iterator[None]:
    """Log into ``run_dir/log.txt`` and record how the block ends in ``run.json`` (see the module doc).

    A stop request outside the training loop's graceful window (:class:`StopSignal`, or a plain
    KeyboardInterrupt) becomes :class:`TrainingInterrupted` with the step of the checkpoint on disk.
    """
    handler = attach_log_file(run_dir)
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as e:
        name = e.name if isinstance(e, StopSignal) else "SIGINT"
        finished, step = _training_finished(run_dir)
        interrupted = TrainingInterrupted(
            step,
            run_dir,
            signal_name=name,
            after_training=finished,
            aborted=not finished,
            command=_command(run_dir),
        )
        logger.warning("%s", interrupted)
        update_run(run_dir, status="interrupted", completed_steps=step, error=str(interrupted))
        raise interrupted from None
    except BaseException as e:
        finished, step = _training_finished(run_dir)
        status = getattr(e, "run_status", "export_failed" if finished else "failed")
        logger.error("run %s: %s: %s", status, type(e).__name__, e)
        update_run(
            run_dir,
            status=status,
            error=f"{type(e).__name__}: {e}",
            completed_steps=step if finished else state.step,
        )
        raise
    finally:
        detach_log_file(handler)


def _command(run_dir: Path) -> str | None:
    try:
        return str(read_run(run_dir)["t23d_run"])
    except (T23dError, KeyError):
        return None


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
        raise TrainingInterrupted(
            e.step,
            run_dir,
            signal_name=e.signal_name,
            after_training=e.after_training,
            aborted=e.aborted,
            command=_command(run_dir),
        ) from None
    timings["train_s"] = timings.get("train_s", 0.0) + time.perf_counter() - t0
    update_run(run_dir, completed_steps=state.step, timings=timings)


class ExportFailed(T23dError):
    """Training finished but the asset stage failed; the run can be exported again on its own."""

    run_status = "export_failed"


def timed_export(
    run_dir: Path, timings: dict[str, float], export_fn: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run the end-of-run export; on an error keep the trained run and say how to export it alone.

    Any ``Exception`` (a :class:`T23dError`, but also e.g. a ``MemoryError`` of an oversized grid)
    becomes :class:`ExportFailed`; the traceback of an unexpected one goes to the run's log.
    """
    raise_if_stop_requested()
    t0 = time.perf_counter()
    logger.info("training finished; exporting the asset")
    try:
        info = export_fn()
    except Exception as e:  # noqa: BLE001 - training is done: whatever broke, the run must say export_failed
        if not isinstance(e, T23dError):
            logger.exception("the export raised an unexpected error")
        reason = str(e) if isinstance(e, T23dError) else f"{type(e).__name__}: {e}"
        raise ExportFailed(
            f"training finished, but the export failed: {reason}. The trained field is saved; rerun only the "
            f"export with: t23d export {run_dir} (options such as --threshold, --resolution)"
        ) from e
    raise_if_stop_requested()  # a request that third-party code swallowed during the export
    timings["export_s"] = time.perf_counter() - t0
    return info
