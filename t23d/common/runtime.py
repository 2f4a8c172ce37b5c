"""Process-wide settings of torch and its math libraries that keep CPU runs fast and repeatable.

- :func:`prepare_runtime`, before torch loads: ``OMP_WAIT_POLICY=PASSIVE``, so OpenMP threads (torch's
  and the hash-grid kernel's) sleep instead of spinning while they wait. On a machine shared with other
  busy processes, spinning threads burn the cores the other threads need (a training step of the learned
  toy prior took 5-8 s with passive threads and 40-55 s with spinning ones at load 13-15 on 2 cores:
  benchmarks/learned_prior/train.py). A value the user exported is kept. Read once, when torch loads its
  OpenMP runtime, so the CLI calls it first thing (``tests/conftest.py`` too).
- :func:`deterministic_algorithms`, around every CPU training loop: bit-exact runs and resumes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULTS: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}
"""Environment variables set (when unset) before torch loads."""


def prepare_runtime() -> dict[str, str]:
    """Set :data:`DEFAULTS` that the environment does not already set; returns what was set. Does nothing
    (returns ``{}``) once torch is loaded, since its runtimes have read the environment by then."""
    if "torch" in sys.modules:
        return {}
    chosen = {k: v for k, v in DEFAULTS.items() if k not in os.environ}
    os.environ.update(chosen)
    return chosen


@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Within the block, torch's deterministic algorithms (when ``enabled``; CPU training loops enable it),
    restored after. Needed for bit-exact CPU runs: with more than one thread, the backward of advanced
    indexing (``x[index]``, an ``index_put_`` with accumulation) adds float gradients with atomics, in an
    order that varies run to run, so a vertex gathered by several faces got a gradient ~1e-9 off in about
    one step in ten and a resumed refine run drifted from the uninterrupted one
    (tests/optimise/test_refine_run.py). The deterministic version is serial and measured no slower here.
    ``warn_only``: an op without a deterministic implementation warns instead of failing the run, and
    ``torch.empty`` is not filled (the default fill would cost time and changes nothing the code reads)."""
    import torch
    import torch.utils.deterministic as det

    if not enabled:
        yield
        return
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    fill_before = det.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    det.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        det.fill_uninitialized_memory = fill_before
