"""Typed schedules for values that change over training steps (never bare lists)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union


@dataclass
class Constant:
    """A value that does not change."""

    value: float = 0.0
    """The value at every step."""

    def at(self, step: int) -> float:
        """Value at ``step``."""
        return self.value


@dataclass
class Linear:
    """Linear ramp from ``start`` (at ``start_step`` and before) to ``end`` (at ``end_step`` and after)."""

    start: float = 0.0
    """Value up to ``start_step``."""
    end: float = 0.0
    """Value from ``end_step`` on."""
    start_step: int = 0
    """First step of the ramp."""
    end_step: int = 1
    """Last step of the ramp."""

    def at(self, step: int) -> float:
        """Value at ``step``."""
        if step <= self.start_step:
            return self.start
        if step >= self.end_step:
            return self.end
        t = (step - self.start_step) / max(1, self.end_step - self.start_step)
        return self.start + t * (self.end - self.start)


@dataclass
class Cosine:
    """Cosine decay from ``start`` to ``end`` between ``start_step`` and ``end_step``."""

    start: float = 1.0
    """Value up to ``start_step``."""
    end: float = 0.0
    """Value from ``end_step`` on."""
    start_step: int = 0
    """First step of the decay."""
    end_step: int = 1
    """Last step of the decay."""

    def at(self, step: int) -> float:
        """Value at ``step``."""
        if step <= self.start_step:
            return self.start
        if step >= self.end_step:
            return self.end
        t = (step - self.start_step) / max(1, self.end_step - self.start_step)
        return self.end + 0.5 * (self.start - self.end) * (1 + math.cos(math.pi * t))


Schedule = Union[Constant, Linear, Cosine]
"""Any schedule: has ``at(step) -> float``."""
