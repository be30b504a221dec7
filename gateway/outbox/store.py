"""The outbox: the gateway's only queue, a SQLite file in WAL mode (aiosqlite).

Contract:
- `append(readings)` writes one transaction per call; with `sync="full"` a reading survives
  power loss once `append` returned. Sequence numbers come from `allocate`, strictly increasing
  across restarts (the high-water mark is written in the same transaction as the rows).
- `lease(lane, limit)` hands out the oldest rows of a lane not already leased; leases live in
  memory only, so a crash or `release_all()` makes them leasable again (at most the batches in
  flight are sent twice). `ack(seqs)` deletes rows in one transaction: rows leave only then.
- Bounded by rows and bytes. Over the bound, telemetry goes first (oldest-first by default, or
  the newest arrivals with `drop_policy="newest-telemetry"`), then mail, then alerts: an alert
  is never dropped while telemetry remains. Every drop is counted (persisted in `meta`).
- A corrupt or truncated file at open is moved aside as `<path>.corrupt-<UTC time>` with a loud
  log line, and a fresh outbox is started: never a crash loop.
- When the disk (or the optional hard byte limit) is full, appends go to a bounded in-memory
  buffer, the condition is logged once and shown in `stats()`, and the buffer is written back
  when space returns. Leases serve buffered rows too, so a live link keeps draining.
- The file shrinks after a drain (incremental vacuum and a WAL checkpoint).
This module knows nothing about MQTT, payload formats or drivers.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.errors import StoreFull
from gateway.model import Lane, Reading
from gateway.outbox.database import (
    INSERT,
    LANES,
    SELECT,
    connect,
    from_row,
    is_full,
    quarantine,
    row_size,
    runs,
    seq_of,
    to_row,
)


@dataclass(frozen=True)
class OutboxStats:
    rows: int
    bytes: int
    by_lane: dict[str, int]
    dropped: dict[str, int]
    memory_rows: int
    disk_full: bool
    next_seq: int
    quarantined: str | None


class Outbox:
    """Durable queue of Readings. Create with `async with Outbox.open(path) as outbox`."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: Path,
        *,
        max_rows: int,
        max_bytes: int,
        drop_policy: str,
        memory_rows: int,
        log: Any,
        quarantined: str | None,
    ) -> None:
        self.db = db
        self.path = path
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.drop_policy = drop_policy
        self.memory_limit = memory_rows
        self.log = log
        self.quarantined = quarantined
        self._next_seq = 1
        self._rows = dict.fromkeys(Lane, 0)
        self._bytes = 0
        self._dropped = dict.fromkeys(Lane, 0)
        self._cursor = dict.fromkeys(Lane, 0)
        self._leased: dict[Lane, set[int]] = {lane: set() for lane in Lane}
        self._memory: deque[Reading] = deque()
        # The newest committed rows of each lane, in seq order: in the steady state a lease
        # is served from here without a SELECT (the file stays the durable record).
        self._tail: dict[Lane, deque[Reading]] = {lane: deque() for lane in Lane}
        self.tail_limit = 50_000
        self._disk_full = False
        self._write_lock = asyncio.Lock()
        # Called with the set of lanes after every append (and at open when rows wait):
        # the uplink and the mailer wake on it instead of polling.
        self.listeners: list[Callable[[set[Lane]], None]] = []

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        path: str | Path,
        *,
        sync: str = "full",
        max_rows: int = 5_000_000,
        max_bytes: int = 1 << 30,
        drop_policy: str = "oldest-telemetry",
        memory_rows: int = 100_000,
        hard_limit_bytes: int | None = None,
        log: Any = None,
    ) -> AsyncIterator[Outbox]:
        """Open (creating or quarantining as needed) and close on exit.

        `hard_limit_bytes` caps the file through SQLite's page budget; exceeding it behaves
        exactly like a full disk (SQLITE_FULL). Use it to keep the outbox off a shared card.
        """
        import structlog

        log = log or structlog.get_logger().bind(component="outbox")
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        quarantined = None
        try:
            db = await connect(p, sync)
        except sqlite3.DatabaseError as exc:
            quarantined = quarantine(p)
            log.error(
                "outbox file is corrupt; moved aside and starting a fresh one",
                path=str(p),
                moved_to=quarantined,
                error=str(exc),
            )
            db = await connect(p, sync)
        outbox = cls(
            db,
            p,
            max_rows=max_rows,
            max_bytes=max_bytes,
            drop_policy=drop_policy,
            memory_rows=memory_rows,
            log=log,
            quarantined=quarantined,
        )
        try:
            await outbox._load()
            if hard_limit_bytes is not None:
                await outbox.set_hard_limit(hard_limit_bytes)
            yield outbox
        finally:
            with contextlib.suppress(sqlite3.Error):
                await outbox._flush_memory()
            await db.close()

    async def _load(self) -> None:
        await self._recount()
        async with self.db.execute("SELECT max(seq) FROM outbox") as cur:
            row = await cur.fetchone()
        top = (row[0] if row else None) or 0
        meta = await self._meta()
        self._next_seq = max(top, meta.get("seq_hwm", 0)) + 1
        for lane in Lane:
            self._dropped[lane] = meta.get(f"dropped_{lane.name.lower()}", 0)

    async def _meta(self) -> dict[str, int]:
        async with self.db.execute("SELECT key, value FROM meta") as cur:
            return {k: v for k, v in await cur.fetchall()}

    async def set_hard_limit(self, limit_bytes: int) -> None:
        """Cap the file size through SQLite's page budget (0 lifts the cap)."""
        async with self.db.execute("PRAGMA page_size") as cur:
            (page,) = await cur.fetchone()  # type: ignore[misc]
        pages = max(1, limit_bytes // page) if limit_bytes else 2**31 - 2
        await self.db.execute(f"PRAGMA max_page_count = {int(pages)}")

    # -- sequence numbers ------------------------------------------------------------------
    def allocate(self, n: int) -> range:
        """Reserve `n` sequence numbers; they become durable with the rows that use them."""
        start = self._next_seq
        self._next_seq += n
        return range(start, start + n)

    # -- writing ---------------------------------------------------------------------------
    async def append(self, readings: Sequence[Reading]) -> None:
        """Write a batch in one transaction (also retries any buffered rows first).

        Never raises for a full disk: the rows are kept in memory instead (bounded) and
        `stats().disk_full` is set until a later write succeeds.
        """
        # Shielded: a caller cancelled mid-append must not leave half a transaction behind;
        # the batch is written whole (or buffered) either way.
        await asyncio.shield(self._append(readings))

    async def _append(self, readings: Sequence[Reading]) -> None:
        async with self._write_lock:
            if self._memory:
                await self._flush_memory()
            if not readings:
                return
            if self._disk_full:
                self._buffer(readings)
            else:
                try:
                    await self._write(readings)
                except StoreFull:
                    self._buffer(readings)
            lanes = {r.lane for r in readings}
            for listener in self.listeners:
                listener(lanes)

    async def _write(self, readings: Sequence[Reading]) -> None:
        rows = [to_row(r) for r in readings]
        added = sum(row[-1] for row in rows)
        try:
            await self.db.execute("BEGIN IMMEDIATE")
            await self.db.executemany(INSERT, rows)
            dropped, gone = await self._enforce_bounds(len(rows), added)
            await self.db.execute(
                "INSERT INTO meta VALUES ('seq_hwm', ?) ON CONFLICT(key) DO UPDATE "
                "SET value = max(value, excluded.value)",
                (max(r.seq for r in readings),),
            )
            await self.db.commit()
        except sqlite3.Error as exc:
            await self._rollback()
            if is_full(exc):
                self._enter_full(str(exc))
                raise StoreFull(str(exc)) from exc
            raise
        for lane, n in dropped.items():
            self._dropped[lane] += n
        for r in readings:
            self._rows[r.lane] += 1
        self._bytes += added
        self._remember([r for r in readings if r.seq not in gone] if gone else readings)
        if self._disk_full:
            self._disk_full = False
            self.log.warning("outbox writable again", buffered_rows=len(self._memory))

    async def _enforce_bounds(
        self, adding: int, adding_bytes: int
    ) -> tuple[dict[Lane, int], set[int]]:
        """Delete rows (inside the caller's transaction) until the bounds hold again.

        Returns the count dropped per lane and the dropped seqs."""
        over_rows = self.rows + adding - self.max_rows
        over_bytes = self._bytes + adding_bytes - self.max_bytes
        dropped: dict[Lane, int] = {}
        all_gone: set[int] = set()
        if over_rows <= 0 and over_bytes <= 0:
            return dropped, all_gone
        newest_first = self.drop_policy == "newest-telemetry"
        for lane in (Lane.TELEMETRY, Lane.MAIL, Lane.ALERT):
            if over_rows <= 0 and over_bytes <= 0:
                break
            order = "DESC" if newest_first and lane == Lane.TELEMETRY else "ASC"
            # Estimate how many rows free enough bytes from the lane's mean row size.
            mean = max(1, self._bytes // max(1, self.rows)) if self.rows else 64
            want = max(over_rows, -(-over_bytes // mean), 1)
            async with self.db.execute(
                f"DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE lane = ? "
                f"ORDER BY seq {order} LIMIT ?) RETURNING seq, size",
                (int(lane), want),
            ) as cur:
                gone = await cur.fetchall()
            if not gone:
                continue
            freed = sum(size for _, size in gone)
            self._leased[lane].difference_update(seq for seq, _ in gone)
            gone_seqs = {seq for seq, _ in gone}
            all_gone |= gone_seqs
            self._forget(lane, gone_seqs)
            self._rows[lane] -= len(gone)
            self._bytes -= freed
            over_rows -= len(gone)
            over_bytes -= freed
            dropped[lane] = len(gone)
            await self.db.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                "SET value = value + excluded.value",
                (f"dropped_{lane.name.lower()}", len(gone)),
            )
        if dropped:
            self.log.warning(
                "outbox full; dropped rows",
                dropped={k.name.lower(): v for k, v in dropped.items()},
                max_rows=self.max_rows,
                max_bytes=self.max_bytes,
            )
        return dropped, all_gone

    async def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            await self.db.rollback()

    def _enter_full(self, reason: str) -> None:
        if not self._disk_full:
            self._disk_full = True
            self.log.error(
                "outbox cannot write (disk full?); buffering in memory",
                reason=reason,
                memory_limit=self.memory_limit,
            )

    def _buffer(self, readings: Sequence[Reading]) -> None:
        self._memory.extend(readings)
        while len(self._memory) > self.memory_limit:
            # Drop the oldest telemetry first; alerts only when nothing else is left.
            victim = next((r for r in self._memory if r.lane == Lane.TELEMETRY), None)
            if victim is None:
                victim = self._memory[0]
            self._memory.remove(victim)
            self._leased[victim.lane].discard(victim.seq)
            self._dropped[victim.lane] += 1

    async def _flush_memory(self) -> None:
        if not self._memory:
            return
        # Rows already acked while in memory were removed from the deque by ack().
        pending = list(self._memory)
        try:
            await self._write(pending)
        except StoreFull:
            return
        self._memory.clear()

    async def correct_times(self, delta: float, since_seq: int) -> int:
        """Shift the stamps of unsynchronised rows from `since_seq` on by `delta` seconds and
        mark them synchronised (the clock was stepped by NTP). Returns the rows corrected."""
        async with self._write_lock:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                before = self.db.total_changes
                await self.db.execute(
                    "UPDATE outbox SET ts = ts + ?, flags = flags | 1 "
                    "WHERE seq >= ? AND (flags & 1) = 0",
                    (delta, since_seq),
                )
                changed = self.db.total_changes - before
                await self.db.commit()
            except sqlite3.Error as exc:
                await self._rollback()
                self.log.warning("could not correct stamps", error=str(exc))
                return 0
            self._memory = deque(
                replace(r, ts=r.ts + delta, synced=True)
                if r.seq >= since_seq and not r.synced
                else r
                for r in self._memory
            )
            for tail in self._tail.values():
                tail.clear()  # cached copies carry the old stamps; leases use SQL again
            return changed

    # -- reading ---------------------------------------------------------------------------
    async def lease(self, lane: Lane, limit: int) -> list[Reading]:
        """The oldest `limit` rows of `lane` not currently leased, now leased."""
        out: list[Reading] = []
        tail = self._tail[lane]
        if tail and not self._memory and self._cursor[lane] >= tail[0].seq - 1:
            # Every row of the lane older than the tail is leased or gone: serve the tail.
            leased = self._leased[lane]
            start = bisect.bisect_right(tail, self._cursor[lane], key=seq_of)
            for i in range(start, len(tail)):
                r = tail[i]
                if r.seq not in leased:
                    out.append(r)
                    if len(out) == limit:
                        break
        elif self._rows[lane]:
            async with self.db.execute(
                f"{SELECT} WHERE lane = ? AND seq > ? ORDER BY seq LIMIT ?",
                (int(lane), self._cursor[lane], limit + len(self._leased[lane])),
            ) as cur:
                rows = await cur.fetchall()
            leased = self._leased[lane]
            for row in rows:
                if row[0] not in leased:
                    out.append(from_row(row))
                    if len(out) == limit:
                        break
        if len(out) < limit and self._memory:
            taken = {r.seq for r in out}
            for r in self._memory:
                if r.lane == lane and r.seq not in self._leased[lane] and r.seq not in taken:
                    out.append(r)
                    if len(out) == limit:
                        break
        if out:
            self._cursor[lane] = max(self._cursor[lane], max(r.seq for r in out))
            self._leased[lane].update(r.seq for r in out)
        return out

    def release(self, seqs: Iterable[int]) -> None:
        """Give leased rows back (their publish failed); they are leased again, oldest first."""
        seqs = list(seqs)
        if not seqs:
            return
        low = min(seqs) - 1
        for lane in Lane:
            before = len(self._leased[lane])
            self._leased[lane].difference_update(seqs)
            if len(self._leased[lane]) != before:
                self._cursor[lane] = min(self._cursor[lane], low)

    def release_all(self) -> None:
        for leased in self._leased.values():
            leased.clear()
        self._cursor = dict.fromkeys(Lane, 0)

    def unleased(self, lane: Lane) -> int:
        """Rows of `lane` (on disk or buffered) waiting to be leased."""
        mem = sum(1 for r in self._memory if r.lane == lane) if self._memory else 0
        return max(0, self._rows[lane] + mem - len(self._leased[lane]))

    def leased(self) -> int:
        return sum(len(s) for s in self._leased.values())

    async def ack(self, readings: Sequence[Reading]) -> None:
        """Delete delivered rows in one transaction; rows dropped meanwhile are fine."""
        if readings:
            await asyncio.shield(self._ack(readings))

    async def _ack(self, readings: Sequence[Reading]) -> None:
        seqs = sorted(r.seq for r in readings)
        async with self._write_lock:
            for leased in self._leased.values():
                leased.difference_update(seqs)
            if self._memory:
                gone = set(seqs)
                kept = [r for r in self._memory if r.seq not in gone]
                if len(kept) != len(self._memory):
                    self._memory = deque(kept)
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                before = self.db.total_changes
                # Leases are mostly contiguous: delete by runs, not one IN list per row.
                await self.db.executemany(
                    "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", runs(seqs)
                )
                deleted = self.db.total_changes - before
                await self.db.commit()
            except sqlite3.Error as exc:
                await self._rollback()
                if is_full(exc):
                    # Deleting needs WAL space too; the rows stay and are re-sent later.
                    self._enter_full(str(exc))
                    return
                raise
            acked = set(seqs)
            for lane in {r.lane for r in readings}:
                self._forget(lane, acked)
            if deleted == len(readings):
                for r in readings:
                    self._rows[r.lane] -= 1
                    self._bytes -= row_size(r)
            else:
                # Some were dropped or still in memory only: recount from the file.
                await self._recount()
            if not self.rows:
                await self._shrink()

    def _remember(self, readings: Sequence[Reading]) -> None:
        for r in readings:
            tail = self._tail[r.lane]
            if tail and r.seq <= tail[-1].seq:
                tail.clear()  # out of order (rows back from memory): leases use SQL again
            tail.append(r)
        for tail in self._tail.values():
            while len(tail) > self.tail_limit:
                tail.popleft()

    def _forget(self, lane: Lane, seqs: set[int]) -> None:
        tail = self._tail[lane]
        while tail and tail[0].seq in seqs:
            tail.popleft()
        # In order acks leave nothing behind; scan the tail only when some could be in it.
        if tail and max(seqs) >= tail[0].seq and any(r.seq in seqs for r in tail):
            self._tail[lane] = deque(r for r in tail if r.seq not in seqs)

    async def _recount(self) -> None:
        self._rows = dict.fromkeys(Lane, 0)
        self._bytes = 0
        async with self.db.execute(
            "SELECT lane, count(*), total(size) FROM outbox GROUP BY lane"
        ) as cur:
            for lane, count, size in await cur.fetchall():
                self._rows[LANES[lane]] = count
                self._bytes += int(size)

    async def _shrink(self) -> None:
        """Give the drained file's pages back to the filesystem."""
        try:
            # executescript steps the pragma to completion; a cursor frees one page a step.
            await self.db.executescript("PRAGMA incremental_vacuum;")
            async with self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
                await cur.fetchall()
        except sqlite3.Error as exc:
            self.log.warning("outbox shrink failed", error=str(exc))

    # -- inspection ------------------------------------------------------------------------
    @property
    def memory_rows(self) -> int:
        return len(self._memory)

    @property
    def rows(self) -> int:
        return sum(self._rows.values())

    async def count(self, lane: Lane | None = None) -> int:
        """Rows on disk plus rows buffered in memory (of one lane, or all)."""
        if lane is None:
            return self.rows + len(self._memory)
        return self._rows[lane] + sum(1 for r in self._memory if r.lane == lane)

    async def peek(self, lane: Lane | None = None, limit: int = 100) -> list[Reading]:
        """The oldest rows without leasing them (for `gateway status` and tests)."""
        where = "" if lane is None else f" WHERE lane = {int(lane)}"
        async with self.db.execute(f"{SELECT}{where} ORDER BY seq LIMIT ?", (limit,)) as cur:
            return [from_row(r) for r in await cur.fetchall()]

    def stats(self) -> OutboxStats:
        return OutboxStats(
            rows=self.rows,
            bytes=self._bytes,
            by_lane={lane.name.lower(): n for lane, n in self._rows.items()},
            dropped={lane.name.lower(): n for lane, n in self._dropped.items()},
            memory_rows=len(self._memory),
            disk_full=self._disk_full,
            next_seq=self._next_seq,
            quarantined=self.quarantined,
        )
