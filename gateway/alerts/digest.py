"""The daily digest: per paddy, the water level and temperature (latest, min, max and the
day's series for its chart) since the last digest, and the alerts raised meanwhile, mailed
once a day per recipient group at a configured site-local time (through the MAIL lane, like
alert mail).

It observes readings (a pipeline observer: cheap, synchronous) and alerts (an engine
listener) into the daybook (gateway.outbox.daybook), which keeps them in the outbox file:
in memory between flushes, written every `flush_every` seconds and at stop, so a restart or a
power cut mid-day loses at most the figures since the last flush. A digest due while the
daemon was down is queued at the next start. The mail row carries everything its mail needs
(figures, series, alerts): the chart is drawn when the mail is sent (gateway.alerts.mailer).
No I/O besides the daybook's and queueing the mail rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alerts.alert import MAIL_QUANTITY, Alert, AlertLine, DeviceDay, Summary, dumps
from gateway.alerts.compose import what
from gateway.alerts.config import DigestConfig
from gateway.clock import Clock
from gateway.model import Lane, Observation, Reading
from gateway.outbox.daybook import Day, Daybook

Stage = Callable[[str, Sequence[Observation], float | None, Lane], Any]
FLUSH_EVERY = 300.0  # s between daybook writes: what a power cut can lose of the digest


def next_due(now: float, at: tuple[int, int], tz: ZoneInfo) -> float:
    """The first local `at` (HH, MM) strictly after `now`, as epoch seconds."""
    local = datetime.fromtimestamp(now, tz)
    due = local.replace(hour=at[0], minute=at[1], second=0, microsecond=0)
    if due.timestamp() <= now:
        # Add a calendar day in local time (wall clock), not 86400 s, for DST zones.
        due = (due + timedelta(days=1)).replace(hour=at[0], minute=at[1])
    return due.timestamp()


def last_due(now: float, at: tuple[int, int], tz: ZoneInfo) -> float:
    """The last local `at` at or before `now`."""
    local = datetime.fromtimestamp(now, tz)
    due = local.replace(hour=at[0], minute=at[1], second=0, microsecond=0)
    if due.timestamp() > now:
        due = (due - timedelta(days=1)).replace(hour=at[0], minute=at[1])
    return due.timestamp()


def _round(v: float) -> float:
    return round(v, 3)


class Digest:
    """Figures and alerts of the day; `run()` queues the digest mail rows when it is due."""

    def __init__(
        self,
        cfg: DigestConfig,
        book: Daybook,
        *,
        name: Callable[[str], tuple[str, str | None]],
        stage: Stage,
        clock: Clock,
        timezone: str,
        site_name: str,
        log: Any,
        settle: Callable[[], Awaitable[None]] | None = None,
        flush_every: float = FLUSH_EVERY,
    ) -> None:
        """`settle` makes staged rows durable (the pipeline's flush): a day is deleted from
        the daybook only once its mail rows are in the outbox."""
        self.cfg = cfg
        self.book = book
        self.name = name
        self.stage = stage
        self.clock = clock
        self.tz = ZoneInfo(timezone)
        self.site_name = site_name
        self.log = log
        self.settle = settle
        self.flush_every = flush_every
        self.quantities = frozenset(cfg.quantities)
        self.sent = 0
        self._flush_failing = False

    def observe(self, readings: Sequence[Reading]) -> None:
        for r in readings:
            if r.quantity not in self.quantities or r.lane != Lane.TELEMETRY:
                continue
            v = r.value
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            self.book.add(r.device, r.quantity, float(v), r.unit, r.ts)

    def on_alert(self, alert: Alert) -> None:
        if alert.status != "alert":
            return
        line: AlertLine = {
            "ts": alert.ts,
            "rule": alert.rule,
            "device": alert.device,
            "device_name": alert.device_name,
            "trap": alert.trap,
            "what_ja": what(alert, "ja"),
            "what_en": what(alert, "en"),
            "severity": alert.severity,
            "test": alert.test,
        }
        self.book.note(alert.id, alert.ts, dumps(line))

    async def _open(self) -> None:
        if not self.book.opened:
            await self.book.open()

    async def flush(self) -> None:
        """Write the day's figures to the outbox file; a failure (a full disk) is logged on
        the transition and the figures stay in memory for the next try."""
        try:
            await self._open()
            await self.book.flush()
        except sqlite3.Error as exc:
            if not self._flush_failing:
                self.log.warning(
                    "digest figures not written; kept in memory", error=str(exc),
                    pending=self.book.pending,
                )  # fmt: skip
            self._flush_failing = True
            return
        if self._flush_failing:
            self.log.info("digest figures written again")
        self._flush_failing = False

    def summary_of(self, day: Day, start: float | None, end: float) -> Summary:
        """The mail row's body for `day` (the daybook's content before `end`)."""
        devices: dict[str, DeviceDay] = {}
        for device, quantity in sorted(day.series):
            s = day.series[(device, quantity)]
            if device not in devices:
                place, trap = self.name(device)
                devices[device] = {
                    "name": place + (f" #{trap}" if trap else ""),
                    "stats": {},
                    "series": {},
                }
            p = s.points
            devices[device]["stats"][quantity] = {
                "latest": p[-1].last,
                "min": min(x.low for x in p),
                "max": max(x.high for x in p),
                "unit": s.unit,
            }
            devices[device]["series"][quantity] = [
                [x.t, _round(x.mean), _round(x.low), _round(x.high)] for x in p
            ]
        # The digest is dated by the day it is sent on (site-local).
        return {
            "day": datetime.fromtimestamp(end, self.tz).strftime("%Y-%m-%d"),
            "site_name": self.site_name,
            "devices": devices,
            "alerts": [json.loads(line) for line in day.alerts],
            "start": start if start is not None else end - 86400,
            "end": end,
        }

    async def summary(self, end: float) -> Summary:
        await self._open()
        await self.flush()
        return self.summary_of(await self.book.day(end), self.book.closed, end)

    async def send(self, due: float | None = None) -> Summary:
        """Queue one digest mail per group for everything before `due`, then start the
        next day (deleting the queued one from the daybook once the rows are durable)."""
        due = self.clock.now() if due is None else due
        summary = await self.summary(due)
        rows = [
            Observation(
                MAIL_QUANTITY,
                dumps(
                    {
                        "kind": "digest",
                        "group": g,
                        "key": f"digest:{g}:{summary['day']}",
                        "summary": summary,
                    }
                ),
                "",
            )
            for g in self.cfg.groups
        ]
        if rows:
            self.stage("digest", rows, due, Lane.MAIL)
        if self.settle is not None:
            await self.settle()
        try:
            await self.book.close(due)
        except sqlite3.Error as exc:
            # The rows are queued; the same day is queued again at the next try (same key:
            # the mailer sends it once).
            self.log.warning("digest day not closed", error=str(exc))
        self.log.info("daily digest queued", groups=len(rows), day=summary["day"])
        self.sent += 1
        return summary

    async def catch_up(self) -> None:
        """Queue the digest that fell due while the daemon was down, if it holds anything."""
        await self._open()
        due = last_due(self.clock.now(), self.cfg.at, self.tz)
        closed = self.book.closed
        if closed is not None and closed >= due:
            return
        await self.flush()
        day = await self.book.day(due)
        if day.series or day.alerts:
            self.log.info("queueing a digest missed while stopped", due=due)
            await self.send(due)

    async def run(self) -> None:
        try:
            try:
                await self.catch_up()
            except sqlite3.Error as exc:
                self.log.warning("missed digest not checked", error=str(exc))
            while True:
                due = next_due(self.clock.now(), self.cfg.at, self.tz)
                flush_at = self.clock.now() + self.flush_every
                # Sleep in slices: the wall clock may jump (NTP sync after boot) while we wait.
                while (left := due - self.clock.now()) > 0:
                    await asyncio.sleep(min(left, 60.0, max(0.0, flush_at - self.clock.now())))
                    if self.clock.now() >= flush_at:
                        await self.flush()
                        flush_at = self.clock.now() + self.flush_every
                await self.send(due)
        finally:
            # At stop: the figures since the last flush (shielded: the stop cancelled us).
            with contextlib.suppress(sqlite3.Error, asyncio.CancelledError):
                await asyncio.shield(self.book.flush())
