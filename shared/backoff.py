"""Backoff arithmetic shared by the API transports and the Celery retry countdowns."""

from __future__ import annotations

import random
from collections.abc import Callable

Jitter = Callable[[float], float]


def full_jitter(ceiling: float) -> float:
    """AWS-style full jitter: a uniform draw in ``[0, ceiling]``."""
    return random.uniform(0, ceiling)


def no_jitter(ceiling: float) -> float:
    return ceiling


def exponential(
    attempt: int, *, base: float, cap: float, floor: float = 0.0, jitter: Jitter = no_jitter
) -> float:
    """Delay before retry number ``attempt`` (1-based): ``min(cap, base * 2**(attempt-1))``,
    passed through ``jitter`` and never below ``floor``."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return max(floor, jitter(ceiling))
