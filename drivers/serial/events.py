"""Stateful shaping of decoded lines: de-duplication of radio resends, and interval sampling.

Both take the time as an argument (the bus passes its loop clock), so tests drive them with
plain numbers. They do no I/O and never raise on content.

`Deduplicator`: radios resend a message a few times to get it through; the first copy passes,
copies with the same content within `window` seconds of it are dropped. The window runs from
the first copy and is not extended by repeats, so a trap that keeps saying "set" every few
seconds still gets through once per window (the heartbeat a stale-alert rule watches for).

`Sampler`: an NMEA talker sends every second but the platform wants one value per device
interval. Numbers are averaged over the interval (directions as unit vectors, so 350 deg and
10 deg average to 0, not 180); positions and text keep the latest value.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

from gateway.model import Observation, Value

MAX_KEYS = 10_000  # bound on remembered messages; a flood of distinct ones forgets the oldest
LATEST = frozenset({"latitude", "longitude"})


class Deduplicator:
    def __init__(self, window: float) -> None:
        self.window = window
        self.dropped = 0
        self._first_seen: OrderedDict[Hashable, float] = OrderedDict()

    def admit(self, key: Hashable, now: float) -> bool:
        """True for the first copy of `key` within the window, False for a repeat."""
        self._expire(now)
        if key in self._first_seen:
            self.dropped += 1
            return False
        self._first_seen[key] = now
        if len(self._first_seen) > MAX_KEYS:
            self._first_seen.popitem(last=False)
        return True

    def _expire(self, now: float) -> None:
        # Entries are in first-seen order, so expired ones are all at the front.
        while self._first_seen:
            key, seen = next(iter(self._first_seen.items()))
            if now - seen < self.window:
                return
            del self._first_seen[key]


@dataclass
class _Acc:
    unit: str
    plausible: bool = True
    count: int = 0
    total: float = 0.0
    sin: float = 0.0
    cos: float = 0.0
    last: Value = 0


@dataclass
class Sampler:
    """Accumulates observations per (source, quantity) and reduces them once per interval."""

    interval: float
    due: float | None = None
    _acc: dict[tuple[str | None, str], _Acc] = field(default_factory=dict)

    def add(self, observations: list[Observation], now: float) -> None:
        if self.due is None:
            self.due = now + self.interval
        for o in observations:
            acc = self._acc.get((o.source, o.quantity))
            if acc is None:
                acc = self._acc[(o.source, o.quantity)] = _Acc(o.unit)
            acc.count += 1
            acc.last = o.value
            acc.plausible = acc.plausible and o.plausible
            if isinstance(o.value, int | float) and not isinstance(o.value, bool):
                acc.total += o.value
                if _is_direction(o.quantity):
                    acc.sin += math.sin(math.radians(o.value))
                    acc.cos += math.cos(math.radians(o.value))

    def flush(self, now: float) -> list[Observation]:
        """The reduced observations when the interval is over, else []."""
        if self.due is None or now < self.due:
            return []
        out = [self._reduce(src, q, acc) for (src, q), acc in self._acc.items()]
        self._acc.clear()
        self.due = None  # restarts with the next observation: no empty flushes while silent
        return out

    @staticmethod
    def _reduce(source: str | None, quantity: str, acc: _Acc) -> Observation:
        value: Value = acc.last
        numeric = isinstance(acc.last, int | float) and not isinstance(acc.last, bool)
        if numeric and quantity not in LATEST and acc.count > 1:
            if _is_direction(quantity):
                # Round before wrapping: -1e-15 deg must become 0.0, not 360.0.
                value = round(math.degrees(math.atan2(acc.sin, acc.cos)), 1) % 360.0
            else:
                value = round(acc.total / acc.count, 3)
        return Observation(quantity, value, acc.unit, source, acc.plausible)


def _is_direction(quantity: str) -> bool:
    return quantity.startswith("wind_direction")
