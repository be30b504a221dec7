"""When each device on a Modbus bus is polled next: pure functions of times and intervals."""

from __future__ import annotations

import random
from collections.abc import Sequence


def first_dues(dues: Sequence[float], intervals: Sequence[float], now: float) -> list[float]:
    """Due times after a (re)connect: overdue devices are staggered a little so a restart does
    not burst every trigger write and read at once (the bus serialises them anyway, so a short
    spread is enough); devices not yet due keep their time."""
    n = max(1, len(dues))
    return [
        due if due > now else now + min(interval, 2.0) * i / n
        for i, (due, interval) in enumerate(zip(dues, intervals, strict=True))
    ]


def next_due(due: float, interval: float, jitter: float, rng: random.Random, now: float) -> float:
    """Fixed rate from the previous due time, each step jittered by +-jitter of the interval;
    after falling behind, restart from now. `interval <= 0` polls again at once."""
    if interval <= 0:
        return now
    step = interval * (1 + rng.uniform(-jitter, jitter))
    return due + step if due + step > now else now + step
