"""How many rows and bytes the outbox file holds per lane, and how many rows were dropped.

An in-memory mirror the store keeps exact after each committed write, so that bounds, stats
and `unleased` need no COUNT query; `recount` reads it back from the file when it may have
drifted (an ack of rows dropped meanwhile). Drop counters start from the persisted `meta`
counters; rows dropped from the memory spill are counted here only (they never reached the
file). No decisions here, and no writes: only the two reading queries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

import aiosqlite

from gateway.model import LANE_OF, Lane, Reading
from gateway.outbox import meta
from gateway.outbox.database import fetch
from gateway.outbox.rows import LANES, rows_size


class Counts:
    def __init__(self) -> None:
        self.rows = dict.fromkeys(Lane, 0)
        self.bytes = 0
        self.dropped = dict.fromkeys(Lane, 0)

    @property
    def total(self) -> int:
        """Rows in the file, all lanes."""
        return sum(self.rows.values())

    def added(self, readings: Sequence[Reading], lanes: Collection[Lane], nbytes: int) -> None:
        """`readings`, of the `lanes` given (`nbytes` in all, as `to_row` sizes them), were
        committed."""
        self._count(readings, lanes, 1)
        self.bytes += nbytes

    def removed(self, readings: Sequence[Reading], lanes: Collection[Lane]) -> None:
        """`readings`, of the `lanes` given, left the file (acknowledged)."""
        self._count(readings, lanes, -1)
        self.bytes -= rows_size(readings)

    def _count(self, readings: Sequence[Reading], lanes: Collection[Lane], sign: int) -> None:
        rows = self.rows
        if len(lanes) == 1:  # nearly every batch is one lane's: no per-row pass
            (lane,) = lanes
            rows[lane] += sign * len(readings)
            return
        for lane, n in Counter(map(LANE_OF, readings)).items():  # counted in C
            rows[lane] += sign * n

    def lost(self, lane: Lane, gone: Sequence[tuple[int, int]]) -> None:
        """Rows of `lane`, as (seq, size), were dropped from the file over its bounds."""
        self.rows[lane] -= len(gone)
        self.bytes -= sum(size for _, size in gone)
        self.dropped[lane] += len(gone)

    def lost_in_memory(self, lane: Lane) -> None:
        """One row of `lane` was dropped before it reached the file (the spill was full)."""
        self.dropped[lane] += 1

    async def recount(self, db: aiosqlite.Connection) -> None:
        """Rows and bytes per lane as the file holds them now. The counts change only when
        the answer is in: readers during the query (the uplink, `gateway status`) must never
        see the zeros of a half-done recount."""
        found = await fetch(db, "SELECT lane, count(*), total(size) FROM outbox GROUP BY lane")
        rows = dict.fromkeys(Lane, 0)
        for lane, count, _ in found:
            rows[LANES[lane]] = count
        self.rows = rows
        self.bytes = sum(int(size) for _, _, size in found)

    async def load(self, db: aiosqlite.Connection, counters: dict[str, int]) -> None:
        """Recount the file and take the drop counters from `meta`'s `counters`."""
        await self.recount(db)
        for lane in Lane:
            self.dropped[lane] = counters.get(meta.dropped_key(lane), 0)

    def by_lane(self) -> dict[str, int]:
        return {lane.name.lower(): n for lane, n in self.rows.items()}

    def dropped_by_lane(self) -> dict[str, int]:
        return {lane.name.lower(): n for lane, n in self.dropped.items()}
