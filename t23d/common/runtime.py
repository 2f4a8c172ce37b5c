"""Process-wide settings of torch and its math libraries that keep CPU runs fast and repeatable.

- :func:`prepare_runtime`, before torch loads: ``OMP_WAIT_POLICY=PASSIVE``, so OpenMP threads (torch's
  and the hash-grid kernel's) sleep instead of spinning while they wait. On a machine shared with other
  busy processes, spinning threads burn the cores the other threads need (a training step of the learned
  toy prior took 5-8 s with passive threads and 40-55 s with spinning ones at load 13-15 on 2 cores:
  benchmarks/learned_prior/train.py). A value the user exported is kept. Read once, when torch loads its
  OpenMP runtime, so the CLI calls it first thing (``tests/conftest.py`` too).
- :func:`reuse_freed_memory`, for the CLI's computing commands: glibc's allocator keeps large freed blocks
  for reuse instead of returning them to the kernel, so a training step's big buffers (a hash grid's
  dense table gradient: 49 MB at the default size, several per step) are not page-faulted in afresh at
  every step. Measured on a photo run (candlestick, one thread): 18.5 of 76.1 CPU-s were the kernel's
  page faults; with it 1.4 of 75.5, and 35 % more steps in the same time (benchmarks/RESULTS.md).
- :func:`deterministic_algorithms`, around every CPU training loop: bit-exact runs and resumes.
"""

from __future__ import annotations

import ctypes
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


MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
"""glibc's tuning variables: when the user sets any of them, :func:`reuse_freed_memory` leaves the
allocator as they chose."""
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, <malloc.h>


def reuse_freed_memory() -> bool:
    """With glibc, serve every allocation from the heap (``M_MMAP_MAX`` 0) and keep up to 2 GiB of freed
    memory at its top (``M_TRIM_THRESHOLD``): by default blocks over 32 MiB are mapped on allocation and
    unmapped on free, so each one is page-faulted in, page by page, every time (the kernel also zeroes
    every page). The process's memory then stays at its peak instead of returning between steps, which a
    training run reaches again at every step anyway. Returns whether the allocator was changed: not on
    another C library, nor when the environment sets one of :data:`MALLOC_ENV`."""
    if not _glibc() or any(k in os.environ for k in MALLOC_ENV):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def _glibc() -> bool:
    """Whether this process's C library is glibc."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):  # not a GNU system
        return False


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
