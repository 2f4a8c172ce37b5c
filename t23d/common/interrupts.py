"""How a stop request (Ctrl-C, SIGTERM) reaches a run: gracefully inside the training loop, at once elsewhere.

The command line installs the signal handlers (``t23d.cli.common.stop_on_signals``) and records each
request here (:func:`request_stop`); the library only declares where a graceful stop is possible and
where a pending one is honoured. Inside :func:`graceful_stop_window` (the training loop) the first
signal sets a flag that the loop polls before every step, so the run stops after the current step with
a fresh checkpoint. Outside it (loading, previews, evaluation, the end-of-run export) there is no step
to finish, so the first signal raises :class:`StopSignal` at once; the run directory's lifecycle
(:func:`t23d.run.lifecycle.recorded_run`) records it as ``interrupted`` and keeps the last checkpoint.

A ``KeyboardInterrupt`` raised inside third-party code can be swallowed (trimesh guards its lazy
imports with ``except BaseException``), so the request stays pending and long stages call
:func:`raise_if_stop_requested` between their steps (the export pipeline does, between stages).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_window_depth = 0
_pending: int | None = None


class StopSignal(KeyboardInterrupt):
    """Raised by the signal handlers when a stop cannot wait for the end of a step (a KeyboardInterrupt,
    so code that handles Ctrl-C handles SIGTERM alike)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        """``SIGINT`` or ``SIGTERM``."""
        return signal.Signals(self.signum).name


@contextmanager
def graceful_stop_window() -> Iterator[None]:
    """Within the block a stop request only sets the flag that ``should_stop`` reports."""
    global _window_depth
    _window_depth += 1
    try:
        yield
    finally:
        _window_depth -= 1


def in_graceful_stop_window() -> bool:
    """Whether a stop request can wait for the current training step to finish."""
    return _window_depth > 0


def request_stop(signum: int) -> None:
    """Record a stop request (called by the signal handlers)."""
    global _pending
    _pending = signum


def clear_stop_request() -> None:
    """Forget a recorded stop request (when the handlers are removed)."""
    global _pending
    _pending = None


def stop_requested() -> int | None:
    """The signal of a pending stop request, or None."""
    return _pending


def raise_if_stop_requested() -> None:
    """Raise :class:`StopSignal` when a stop was requested (outside the training loop's window, where the
    loop itself stops gracefully). A cancellation point for stages that run long outside the loop."""
    if _pending is not None and not in_graceful_stop_window():
        raise StopSignal(_pending)
