"""``progress.json``: live step, loss, rate and ETA of a training run, for anything watching the run
directory (``t23d serve``, scripts). Written atomically by the training loop at most once per interval
(and at the end), so a reader never sees a torn file and a fast loop does not pay for it."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from t23d.common.atomic import write_json_atomic

logger = logging.getLogger(__name__)
PROGRESS_JSON = "progress.json"


class ProgressFile:
    """Writes ``run_dir/progress.json``: ``{"phase", "step", "total_steps", "loss", "losses",
    "steps_per_s", "elapsed_s", "eta_s", "time"}`` (``step`` = steps done; seconds; ``time`` = Unix time
    of writing; the rate and ETA count only this process's steps, so a resumed run is not skewed)."""

    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        start_step: int,
        interval_s: float = 1.0,
        phase: str = "training",
    ):
        self.path = Path(run_dir) / PROGRESS_JSON
        self.phase = phase
        self.total_steps = total_steps
        self.start_step = start_step
        self.interval_s = interval_s
        self.t0 = time.monotonic()
        self.last_write = -float("inf")
        self.step = start_step
        self.losses: dict[str, float] = {}
        self.warned = False

    def update(self, step: int, losses: dict[str, float]) -> None:
        """Record a finished step; write the file if ``interval_s`` has passed since the last write."""
        self.step, self.losses = step, losses
        if time.monotonic() - self.last_write >= self.interval_s:
            self.write(self.phase)

    def write(self, phase: str) -> None:
        """Write the file now with ``phase`` (the loop's own, e.g. "training" or "warm start", then
        "finishing" or "interrupted")."""
        elapsed = time.monotonic() - self.t0
        done = self.step - self.start_step
        rate = done / elapsed if done > 0 and elapsed > 0 else None
        eta = (self.total_steps - self.step) / rate if rate else None
        record: dict[str, Any] = {
            "phase": phase,
            "step": self.step,
            "total_steps": self.total_steps,
            "loss": self.losses.get("total"),
            "losses": self.losses,
            "steps_per_s": rate,
            "elapsed_s": elapsed,
            "eta_s": eta if phase == self.phase else None,
            "time": time.time(),
        }
        self.last_write = time.monotonic()
        try:
            write_json_atomic(self.path, record)
        except (OSError, TypeError, ValueError) as e:  # progress is for watchers: never stop training for it
            if not self.warned:
                logger.warning("could not write %s (%s); training goes on", self.path, e)
                self.warned = True
