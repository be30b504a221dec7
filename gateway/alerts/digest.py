"""The daily digest: per paddy, the water level and temperature (latest, min, max) since the
last digest, and the alerts raised meanwhile, mailed once a day per recipient group at a
configured site-local time (through the MAIL lane, like alert mail).

It observes readings (a pipeline observer: cheap, synchronous) and alerts (an engine
listener). The statistics live in memory: a restart starts a fresh day's figures (the
platform holds the full series). No I/O besides queueing the mail rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alerts.alert import MAIL_QUANTITY, Alert, AlertLine, DeviceDay, Summary, dumps
from gateway.alerts.compose import what
from gateway.alerts.config import DigestConfig
from gateway.clock import Clock
from gateway.model import Lane, Observation, Reading

Stage = Callable[[str, Sequence[Observation], float | None, Lane], Any]


@dataclass
class Stat:
    latest: float
    low: float
    high: float
    unit: str

    def add(self, v: float) -> None:
        self.latest = v
        self.low = min(self.low, v)
        self.high = max(self.high, v)


def next_due(now: float, at: tuple[int, int], tz: ZoneInfo) -> float:
    """The first local `at` (HH, MM) strictly after `now`, as epoch seconds."""
    local = datetime.fromtimestamp(now, tz)
    due = local.replace(hour=at[0], minute=at[1], second=0, microsecond=0)
    if due.timestamp() <= now:
        # Add a calendar day in local time (wall clock), not 86400 s, for DST zones.
        due = (due + timedelta(days=1)).replace(hour=at[0], minute=at[1])
    return due.timestamp()


class Digest:
    """Figures and alerts of the day; `run()` queues the digest mail rows when it is due."""

    def __init__(
        self,
        cfg: DigestConfig,
        *,
        name: Callable[[str], tuple[str, str | None]],
        stage: Stage,
        clock: Clock,
        timezone: str,
        site_name: str,
        log: Any,
    ) -> None:
        self.cfg = cfg
        self.name = name
        self.stage = stage
        self.clock = clock
        self.tz = ZoneInfo(timezone)
        self.site_name = site_name
        self.log = log
        self.quantities = frozenset(cfg.quantities)
        self.stats: dict[str, dict[str, Stat]] = {}
        self.alerts: list[AlertLine] = []
        self.sent = 0

    def observe(self, readings: Sequence[Reading]) -> None:
        for r in readings:
            if r.quantity not in self.quantities or r.lane != Lane.TELEMETRY:
                continue
            v = r.value
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            per = self.stats.setdefault(r.device, {})
            s = per.get(r.quantity)
            if s is None:
                per[r.quantity] = Stat(float(v), float(v), float(v), r.unit)
            else:
                s.add(float(v))

    def on_alert(self, alert: Alert) -> None:
        if alert.status != "alert":
            return
        self.alerts.append(
            {
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
        )

    def summary(self, now: float) -> Summary:
        devices: dict[str, DeviceDay] = {}
        for device in sorted(self.stats):
            place, trap = self.name(device)
            devices[device] = {
                "name": place + (f" #{trap}" if trap else ""),
                "stats": {
                    q: {"latest": s.latest, "min": s.low, "max": s.high, "unit": s.unit}
                    for q, s in sorted(self.stats[device].items())
                },
            }
        # The digest is dated by the day it is sent on (site-local).
        day = datetime.fromtimestamp(now, self.tz).strftime("%Y-%m-%d")
        return {
            "day": day,
            "site_name": self.site_name,
            "devices": devices,
            "alerts": list(self.alerts),
        }

    def send(self, now: float | None = None) -> Summary:
        """Queue one digest mail per group and start the next period."""
        now = self.clock.now() if now is None else now
        summary = self.summary(now)
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
            self.stage("digest", rows, now, Lane.MAIL)
        self.log.info("daily digest queued", groups=len(rows), day=summary["day"])
        self.stats.clear()
        self.alerts.clear()
        self.sent += 1
        return summary

    async def run(self) -> None:
        while True:
            due = next_due(self.clock.now(), self.cfg.at, self.tz)
            # Sleep in slices: the wall clock may jump (NTP sync after boot) while we wait.
            while (left := due - self.clock.now()) > 0:  # noqa: ASYNC110 (a clock, no event)
                await asyncio.sleep(min(left, 60.0))
            self.send(due)
