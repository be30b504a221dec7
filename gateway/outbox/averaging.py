"""The thinning policy: while the outbox backlog is large, send averages instead of every reading.

Opt-in (`[store] average_above`, rows; 0, the default, is off). When more rows wait in the
outbox than `average_above`, each sensor's telemetry is averaged over `average_seconds`
(default 60): every (device, quantity) sends one reading per period, the mean of the values
read in it (a text or on/off value: the last one), stamped with the time of the last of them
and flagged implausible or unsynchronised if any of them was. In a farmer's words: "when the
link cannot keep up, send one averaged value per sensor per minute instead of every
reading". It ends (and whatever is being averaged goes out at once) when the backlog is
back under half of `average_above`; both changes are logged once.

Only telemetry is averaged, and only on its way to the outbox: alert rules and `gateway tail`
still see every reading (gateway.pipeline shows them to observers before this), alerts and
mail are never touched. An averaged reading gets a fresh sequence number when it is queued,
so the outbox still receives rows in sequence order. Nothing is lost at a stop: `drain()`
hands over what is being averaged. No I/O, no clock of its own (the pipeline passes the
monotonic time), no task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.model import Lane, Reading, Value

CHECK_EVERY = 1.0  # seconds between looks at the backlog and at the periods that ended


@dataclass
class _Period:
    """One (device, quantity, unit)'s readings of the current period."""

    started: float
    last: Reading
    total: float = 0.0
    numbers: int = 0
    count: int = 0
    synced: bool = True
    plausible: bool = True

    def add(self, r: Reading) -> None:
        self.last = r
        self.count += 1
        if type(r.value) in (int, float):  # bool is not a measurement to average
            self.total += float(r.value)
            self.numbers += 1
        self.synced = self.synced and r.synced
        self.plausible = self.plausible and r.plausible

    def value(self) -> Value:
        if self.numbers and self.numbers == self.count:
            return self.total / self.numbers
        return self.last.value  # text or on/off: the last one


class Averaging:
    """Call `take(readings, now)` with each staged batch; queue what it returns."""

    def __init__(
        self,
        above: int,
        seconds: float,
        *,
        backlog: Callable[[], int],
        allocate: Callable[[int], range],
        log: Any,
    ) -> None:
        self.above = above
        self.seconds = seconds
        self.backlog = backlog
        self.allocate = allocate
        self.log = log
        self.active = False
        self._periods: dict[tuple[str, str, str], _Period] = {}
        self._checked = float("-inf")
        self.averaged = 0  # readings folded into averages
        self.sent = 0  # averaged readings queued

    def take(self, readings: Sequence[Reading], now: float) -> list[Reading]:
        """What of `readings` (and of periods that ended) goes to the outbox now, in sequence
        order: `readings` were numbered before, the averages get their numbers here."""
        closed: list[Reading] = []
        if now - self._checked >= CHECK_EVERY:
            self._checked = now
            self._look(closed, now)
        if not self.active:
            return [*readings, *closed] if closed else list(readings)
        out: list[Reading] = []
        for r in readings:
            if r.lane != Lane.TELEMETRY:
                out.append(r)
                continue
            key = (r.device, r.quantity, r.unit)
            period = self._periods.get(key)
            if period is None:
                period = self._periods[key] = _Period(now, r)
            period.add(r)
            self.averaged += 1
        return out + closed

    def drain(self) -> list[Reading]:
        """Everything being averaged, as averages now (at a stop: nothing is lost)."""
        return self._close(list(self._periods))

    def _look(self, out: list[Reading], now: float) -> None:
        backlog = self.backlog()
        if not self.active and backlog > self.above:
            self.active = True
            self.log.warning(
                "backlog large: averaging telemetry",
                backlog=backlog,
                average_above=self.above,
                average_seconds=self.seconds,
                until=f"the backlog is under {self.above // 2} rows",
            )
        elif self.active and backlog < self.above // 2:
            self.active = False
            out.extend(self.drain())
            self.log.info(
                "backlog down: every reading sent again",
                backlog=backlog,
                averaged=self.averaged,
                sent=self.sent,
            )
            return
        ended = [k for k, p in self._periods.items() if now - p.started >= self.seconds]
        out.extend(self._close(ended))

    def _close(self, keys: list[tuple[str, str, str]]) -> list[Reading]:
        periods = [self._periods.pop(k) for k in keys]
        if not periods:
            return []
        seqs = self.allocate(len(periods))
        self.sent += len(periods)
        return [
            Reading(
                seq,
                p.last.device,
                p.last.quantity,
                p.value(),
                p.last.unit,
                p.last.ts,
                p.synced,
                Lane.TELEMETRY,
                p.last.parent,
                p.plausible,
            )
            for seq, p in zip(seqs, periods, strict=True)
        ]
