"""The daybook: the daily digest's figures kept in the outbox file, so a restart or a power
cut mid-day loses (almost) nothing of the digest.

Per (device, quantity) one row per chart bucket (`bucket` seconds, 10 minutes by default):
count, min, max, sum (for the mean) and the last value; the day's alert lines (JSON text, the
digest's own shape); and `closed`, the due time of the last digest queued (the start of the
day being collected). The tables are created with the outbox's others (database.SCHEMA).

Writes never cost the hot path a commit: `add` and `note` only update a small dict in memory
(the buckets touched since the last flush); `flush` upserts them in one transaction through
the outbox's writer (`Outbox.side_write`), merging with what the file holds. The digest
flushes every few minutes and at stop, so a power cut loses at most the figures since the
last flush (the readings themselves are in the outbox). A flush that fails (a full disk)
keeps its buckets in memory and is tried again. `close(before)` deletes everything before
`before` once that digest is queued: the file holds one day, two when a digest was missed.
Bounded: at most `max_series` (device, quantity) pairs and `max_alerts` alert lines a day;
what is past them is counted (`ignored`), not kept. No digest logic and no logging here.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field

import aiosqlite

from gateway.outbox.database import fetch
from gateway.outbox.store import Outbox

_UPSERT = (
    "INSERT INTO daybook(device, quantity, bucket, unit, n, low, high, total, last, last_ts) "
    "VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(device, quantity, bucket) DO UPDATE SET "
    "unit = excluded.unit, n = n + excluded.n, low = min(low, excluded.low), "
    "high = max(high, excluded.high), total = total + excluded.total, "
    "last = CASE WHEN excluded.last_ts >= last_ts THEN excluded.last ELSE last END, "
    "last_ts = max(last_ts, excluded.last_ts)"
)
_SERIES = (
    "SELECT device, quantity, bucket, unit, n, low, high, total, last FROM daybook "
    "WHERE bucket < ? ORDER BY device, quantity, bucket"
)
_CLOSED = "closed"


@dataclass(slots=True)
class Bucket:
    """One bucket's figures (in memory: what arrived since the last flush)."""

    unit: str
    n: int
    low: float
    high: float
    total: float
    last: float
    last_ts: float

    def add(self, v: float, ts: float, unit: str) -> None:
        self.unit = unit
        self.n += 1
        self.low = min(self.low, v)
        self.high = max(self.high, v)
        self.total += v
        if ts >= self.last_ts:
            self.last, self.last_ts = v, ts

    @property
    def mean(self) -> float:
        return self.total / self.n


@dataclass(frozen=True, slots=True)
class Point:
    t: int  # the bucket's start, UTC s
    mean: float
    low: float
    high: float
    last: float


@dataclass(frozen=True)
class Series:
    device: str
    quantity: str
    unit: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Day:
    """What the daybook holds before a time: the figures per (device, quantity), in bucket
    order, and the alert lines in time order."""

    series: dict[tuple[str, str], Series] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)


class Daybook:
    """`add`/`note` in memory at once; `open()` before the first read or write of the file."""

    def __init__(
        self, outbox: Outbox, *, bucket: int = 600, max_series: int = 500, max_alerts: int = 500
    ) -> None:
        self.outbox = outbox
        self.bucket = bucket
        self.max_series = max_series
        self.max_alerts = max_alerts
        self.opened = False
        self.closed: float | None = None  # the due time of the last digest queued
        self.ignored = 0  # readings and alerts past the bounds, not kept
        self._series: set[tuple[str, str]] = set()
        self._alert_count = 0
        self._dirty: dict[tuple[str, str, int], Bucket] = {}
        self._alerts: dict[str, tuple[float, str]] = {}

    async def open(self) -> None:
        """Read which series the file holds, how many alerts, and when the day began."""
        rows = await fetch(
            self.outbox.db, "SELECT value FROM daybook_state WHERE key = ?", (_CLOSED,)
        )
        self.closed = float(rows[0][0]) if rows else None
        await self._recount()
        self.opened = True

    async def _recount(self) -> None:
        db = self.outbox.db
        held = {(d, q) for d, q in await fetch(db, "SELECT DISTINCT device, quantity FROM daybook")}
        self._series = held | {(d, q) for d, q, _t in self._dirty}
        ((n,),) = await fetch(db, "SELECT count(*) FROM daybook_alerts")
        self._alert_count = int(n) + len(self._alerts)

    @property
    def pending(self) -> int:
        """Buckets and alert lines in memory only (what a power cut now would lose)."""
        return len(self._dirty) + len(self._alerts)

    def add(self, device: str, quantity: str, value: float, unit: str, ts: float) -> None:
        """One reading (finite; the caller filtered the quantities). Memory only."""
        if not math.isfinite(value) or not math.isfinite(ts):
            return
        if (device, quantity) not in self._series:
            if len(self._series) >= self.max_series:
                self.ignored += 1
                return
            self._series.add((device, quantity))
        key = (device, quantity, int(ts // self.bucket) * self.bucket)
        b = self._dirty.get(key)
        if b is None:
            self._dirty[key] = Bucket(unit, 1, value, value, value, value, ts)
        else:
            b.add(value, ts, unit)

    def note(self, key: str, ts: float, line: str) -> None:
        """One alert line (`key` unique: a second note of it replaces the first). Memory only."""
        if key not in self._alerts:
            if self._alert_count >= self.max_alerts:
                self.ignored += 1
                return
            self._alert_count += 1
        self._alerts[key] = (ts, line)

    async def flush(self) -> None:
        """Write what is in memory in one transaction; raises sqlite3.Error (a full disk) and
        then keeps it for the next try."""
        if not self._dirty and not self._alerts:
            return
        dirty, alerts = self._dirty, self._alerts
        self._dirty, self._alerts = {}, {}
        rows = [
            (d, q, t, b.unit, b.n, b.low, b.high, b.total, b.last, b.last_ts)
            for (d, q, t), b in dirty.items()
        ]
        lines = [(k, ts, line) for k, (ts, line) in alerts.items()]

        async def write(db: aiosqlite.Connection) -> None:
            await db.executemany(_UPSERT, rows)
            await db.executemany("INSERT OR REPLACE INTO daybook_alerts VALUES (?,?,?)", lines)

        try:
            await self.outbox.side_write(write)
        except sqlite3.Error:
            self._merge_back(dirty, alerts)
            raise

    def _merge_back(
        self, dirty: dict[tuple[str, str, int], Bucket], alerts: dict[str, tuple[float, str]]
    ) -> None:
        for key, b in dirty.items():
            now = self._dirty.get(key)
            if now is None:
                self._dirty[key] = b
                continue
            now.n += b.n
            now.low, now.high = min(now.low, b.low), max(now.high, b.high)
            now.total += b.total
            if b.last_ts > now.last_ts:
                now.last, now.last_ts = b.last, b.last_ts
        for alert, value in alerts.items():
            self._alerts.setdefault(alert, value)

    async def day(self, before: float) -> Day:
        """Everything in the file stamped before `before` (flush first to include memory)."""
        series: dict[tuple[str, str], list[Point]] = {}
        units: dict[tuple[str, str], str] = {}
        for d, q, t, unit, n, low, high, total, last in await fetch(
            self.outbox.db, _SERIES, (before,)
        ):
            series.setdefault((d, q), []).append(Point(int(t), total / n, low, high, last))
            units[(d, q)] = unit  # the latest bucket's unit wins
        rows = await fetch(
            self.outbox.db, "SELECT line FROM daybook_alerts WHERE ts < ? ORDER BY ts", (before,)
        )
        return Day(
            {k: Series(k[0], k[1], units[k], tuple(p)) for k, p in series.items()},
            [str(line) for (line,) in rows],
        )

    async def close(self, before: float) -> None:
        """The digest of everything before `before` is queued: delete it, remember `before`."""

        async def write(db: aiosqlite.Connection) -> None:
            await db.execute("DELETE FROM daybook WHERE bucket < ?", (before,))
            await db.execute("DELETE FROM daybook_alerts WHERE ts < ?", (before,))
            await db.execute(
                "INSERT OR REPLACE INTO daybook_state VALUES (?, ?)", (_CLOSED, before)
            )

        await self.outbox.side_write(write)
        self.closed = before
        await self._recount()
