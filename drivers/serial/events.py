"""Stateful shaping of decoded lines: de-duplication of radio resends, and interval sampling.

Both take the time as an argument (the bus passes its loop clock), so tests drive them with
plain numbers. They do no I/O and never raise on content.

`Deduplicator`: radios resend a message a few times to get it through. A copy is a duplicate
only when it repeats the last message of the same sender (a trap id) exactly and arrives
within `window` seconds of that message's first copy: repeats come back-to-back, so any other
message of that sender in between ends the run, and a change of state always passes (SET,
TRIG, SET, TRIG within seconds is four events: four animals, not two). The window runs from
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

MAX_KEYS = 10_000  # bound on remembered senders; a flood of ids forgets the least recent
LATEST = frozenset({"latitude", "longitude"})


class Deduplicator:
    """Drops back-to-back repeats of one sender's last message within `window` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.dropped = 0
        # sender -> (its last message's content, when that message's first copy came)
        self._last: OrderedDict[Hashable, tuple[Hashable, float]] = OrderedDict()

    def admit(self, sender: Hashable, content: Hashable, now: float) -> bool:
        """False for a repeat of `sender`'s last message within the window, else True (and
        `content` becomes the sender's last message)."""
        last = self._last.get(sender)
        if last is not None and last[0] == content and now - last[1] < self.window:
            self.dropped += 1
            return False
        self._last[sender] = (content, now)
        self._last.move_to_end(sender)
        if len(self._last) > MAX_KEYS:
            self._last.popitem(last=False)  # the sender heard from least recently
        return True


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
