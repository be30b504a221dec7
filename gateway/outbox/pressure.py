"""Back-pressure seen from outside: intake against delivery, and when the outbox fills.

`Pressure.sample` is fed the running totals every second or so (readings taken in, readings
the platform acknowledged, rows waiting in the outbox; by gateway.report). Over the last
`window` seconds it works out ingest/s, uplink/s and how fast the backlog grows. An
imbalance (more taken in than delivered while the backlog grows) that lasts `sustain`
seconds is an episode: logged once, as a warning with the figures (ingest/s, uplink/s,
backlog, time until the outbox is full at `store.max_rows`, after which its oldest telemetry
is dropped); its end (the backlog no longer grows) is logged once too. `snapshot()` is what
status.json and `gateway status` show, and `summary()` the line a technician reads
("ingest 30k/s, uplink 9k/s: outbox full in ~4 min").

Only reads the figures it is given: it changes nothing (the thinning policy is the
pipeline's, gateway.outbox.averaging), and it has no clock or task of its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

WINDOW = 30.0  # seconds the rates are taken over
SUSTAIN = 30.0  # seconds an imbalance must last before it is reported


@dataclass(frozen=True)
class _Sample:
    t: float
    ingested: int
    delivered: int
    backlog: int


def per_s(rate: float) -> str:
    """A rate as a technician reads it: 950/s, 9.8k/s, 30k/s."""
    if rate < 1000:
        return f"{rate:.0f}/s"
    if rate < 10_000:
        return f"{rate / 1000:.1f}k/s"
    return f"{rate / 1000:.0f}k/s"


def duration(seconds: float) -> str:
    """~40 s, ~4 min, ~3 h."""
    if seconds < 120:
        return f"~{seconds:.0f} s"
    if seconds < 7200:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.0f} h"


class Pressure:
    """The imbalance watch: `sample(now, ...)` often, `snapshot()` for the status."""

    def __init__(
        self, max_rows: int, log: Any, *, window: float = WINDOW, sustain: float = SUSTAIN
    ) -> None:
        self.max_rows = max_rows
        self.log = log
        self.window = window
        self.sustain = sustain
        self._samples: deque[_Sample] = deque()
        self._since: float | None = None  # monotonic time the current imbalance began
        self.reported = False  # the current episode was logged
        self.episodes = 0  # episodes reported since start

    # -- the figures -----------------------------------------------------------------------
    def rates(self) -> tuple[float, float, float] | None:
        """(ingest/s, uplink/s, backlog growth/s) over the samples kept; None before two."""
        if len(self._samples) < 2:
            return None
        a, b = self._samples[0], self._samples[-1]
        dt = b.t - a.t
        if dt <= 0:
            return None
        return (
            (b.ingested - a.ingested) / dt,
            (b.delivered - a.delivered) / dt,
            (b.backlog - a.backlog) / dt,
        )

    def full_in(self) -> float | None:
        """Seconds until the outbox holds `max_rows` at the present growth; None when it
        does not grow."""
        rates = self.rates()
        if rates is None or rates[2] <= 0 or not self._samples:
            return None
        return max(0.0, (self.max_rows - self._samples[-1].backlog) / rates[2])

    # -- feeding ---------------------------------------------------------------------------
    def sample(
        self, now: float, *, ingested: int, delivered: int, backlog: int, connected: bool = True
    ) -> None:
        """Running totals at monotonic time `now`. A total that went back (an uplink
        restarted by a reload counts from 0) starts the window afresh. While the uplink is
        not connected nothing is judged (an outage has its own log lines and status)."""
        if not connected:
            self._samples.clear()
            self._since = None
            return
        last = self._samples[-1] if self._samples else None
        if last is not None and (ingested < last.ingested or delivered < last.delivered):
            self._samples.clear()
        self._samples.append(_Sample(now, ingested, delivered, backlog))
        while len(self._samples) > 2 and now - self._samples[1].t >= self.window:
            self._samples.popleft()
        rates = self.rates()
        if rates is None or now - self._samples[0].t < min(self.window, self.sustain) / 2:
            return  # too little history to judge
        ingest, uplink, growth = rates
        if ingest > uplink and growth > 0:
            if self._since is None:
                self._since = now
            if not self.reported and now - self._since >= self.sustain:
                self._report(ingest, uplink, growth)
        elif growth <= 0:
            if self.reported:
                self.log.info(
                    "back-pressure over: the backlog no longer grows",
                    ingest_per_s=round(ingest),
                    uplink_per_s=round(uplink),
                    backlog=self._samples[-1].backlog,
                    lasted_s=round(now - (self._since or now)),
                )
            self._since = None
            self.reported = False

    def _report(self, ingest: float, uplink: float, growth: float) -> None:
        self.reported = True
        self.episodes += 1
        full = self.full_in()
        self.log.warning(
            "back-pressure: more is read than the uplink delivers",
            ingest_per_s=round(ingest),
            uplink_per_s=round(uplink),
            backlog=self._samples[-1].backlog,
            growth_per_s=round(growth),
            full_in_s=None if full is None else round(full),
            max_rows=self.max_rows,
            then="the oldest telemetry is dropped",
            summary=self.summary(),
        )

    # -- the status ------------------------------------------------------------------------
    def summary(self) -> str:
        """The technician's line, or "" while the rates are unknown."""
        rates = self.rates()
        if rates is None:
            return ""
        text = f"ingest {per_s(rates[0])}, uplink {per_s(rates[1])}"
        full = self.full_in()
        if full is not None:
            text += f": outbox full in {duration(full)}"
        return text

    def snapshot(self) -> dict[str, object]:
        """What status.json carries under `pressure`."""
        rates = self.rates()
        full = self.full_in()
        return {
            "imbalanced": self.reported,
            "episodes": self.episodes,
            "ingest_per_s": None if rates is None else round(rates[0], 1),
            "uplink_per_s": None if rates is None else round(rates[1], 1),
            "growth_per_s": None if rates is None else round(rates[2], 1),
            "backlog": self._samples[-1].backlog if self._samples else None,
            "max_rows": self.max_rows,
            "full_in_s": None if full is None else round(full),
            "summary": self.summary(),
        }
