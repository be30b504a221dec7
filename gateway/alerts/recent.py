"""The last hours of the quantities threshold and rate rules watch, for an alert mail's chart.

A pipeline observer keeps, per (device, quantity) a rule watches, one point a minute (mean,
min, max) for the last `keep` seconds: small, bounded rings in memory (two hours of 60
points each, at most `max_series` series). When such a rule raises or clears an alert (an
engine listener), the hour before it is copied into a snapshot kept by (alert id, status),
so the mailer can draw it whenever the mail leaves, however long the mail server was down
(the last `max_snapshots` alerts). Ten-minute daybook buckets would flatten the fall a rate
alert is about, hence a ring of its own. It lives in memory only: after a restart an alert
mail of a rule that fires before a few minutes of readings are back has no chart (the mail is
text-first, and its text says everything). No I/O, no logging.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

from gateway.alerts.alert import Alert
from gateway.alerts.rules import Rule
from gateway.model import Lane, Reading

HOUR = 3600.0


class Recent:
    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        step: int = 60,
        keep: float = 2 * HOUR,
        max_series: int = 500,
        max_snapshots: int = 100,
    ) -> None:
        self.rules = {r.name: r for r in rules if r.kind in ("threshold", "rate")}
        self.quantities = frozenset(r.quantity for r in self.rules.values())
        self.step = step
        self.length = max(2, int(keep // step))
        self.max_series = max_series
        self.max_snapshots = max_snapshots
        # (device, quantity) -> unit and [minute start, n, sum, min, max] per minute.
        self.rings: dict[tuple[str, str], deque[list[float]]] = {}
        self.units: dict[tuple[str, str], str] = {}
        self.snapshots: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self.ignored = 0

    def observe(self, readings: Sequence[Reading]) -> None:
        """Pipeline observer: cheap, synchronous."""
        for r in readings:
            if r.quantity not in self.quantities or r.lane != Lane.TELEMETRY:
                continue
            v = r.value
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                continue
            key = (r.device, r.quantity)
            ring = self.rings.get(key)
            if ring is None:
                if len(self.rings) >= self.max_series:
                    self.ignored += 1
                    continue
                ring = self.rings[key] = deque(maxlen=self.length)
            self.units[key] = r.unit
            t = float(int(r.ts // self.step) * self.step)
            last = ring[-1] if ring else None
            if last is not None and last[0] == t:
                last[1] += 1
                last[2] += v
                last[3] = min(last[3], v)
                last[4] = max(last[4], v)
            elif last is None or t > last[0]:
                ring.append([t, 1, float(v), float(v), float(v)])
            # An older minute (a late reading) is left out: the ring is in time order.

    def on_alert(self, alert: Alert) -> None:
        """Engine listener: keep the hour before a threshold or rate alert (raised or
        cleared) of the rule's quantity on the alert's device."""
        rule = self.rules.get(alert.rule)
        if rule is None:
            return
        key = (alert.device, rule.quantity)
        ring = self.rings.get(key, ())
        since = alert.ts - HOUR - self.step
        points = [[p[0], round(p[2] / p[1], 3), p[3], p[4]] for p in ring if p[0] >= since]
        self.snapshots[(alert.id, alert.status)] = {
            "quantity": rule.quantity,
            "unit": self.units.get(key, ""),
            "points": points,
        }
        while len(self.snapshots) > self.max_snapshots:
            self.snapshots.popitem(last=False)

    def snapshot(self, alert_id: str, status: str) -> dict[str, Any] | None:
        """What `on_alert` kept for that alert (gateway.alerts.compose's `Recent`)."""
        return self.snapshots.get((alert_id, status))
