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
- One process at a time: `open` takes an exclusive lock (`claim`) before touching the file;
  a second one gets StoreLocked. The same side file keeps the seq ceiling, so seq stays
  strictly increasing even across a quarantine.
- Only a file SQLite calls damaged (not a database, malformed, failed `quick_check`) is moved
  aside as `<path>.corrupt-<UTC time>` with a loud log line, and a fresh outbox is started:
  never a crash loop. A locked, unreadable or read-only file (or directory) raises
  StoreUnusable naming the file and the cause, and is left exactly as it is.
- When the disk (or the optional hard byte limit) is full, appends go to a bounded in-memory
  buffer, the condition is logged once and shown in `stats()`, and the buffer is written back
  when space returns. Leases serve buffered rows too, so a live link keeps draining. A space
  `reserve` beside the file is released so that acknowledged rows can still be deleted on a
  full disk; rows still only in memory at close are counted and logged as lost.
- The file shrinks after a drain (incremental vacuum and a WAL checkpoint).

This module is the facade: it opens the file, hands out sequence numbers and leases, and
answers counts; the parts live beside it: the file (`database`) and its rows (`rows`), the
one writer (`writer`) and its transaction (`transaction`), the drop policy (`bounds`), the persisted
counters (`meta`), the row counts (`counts`), lease bookkeeping and the tail cache
(`leases`), the disk-full buffer (`spill`). It knows nothing about MQTT, payload formats or
drivers. Rows that can never be sent leave for the dead letters (`deadletter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.model import Lane, Reading
from gateway.outbox import deadletter, intake, meta
from gateway.outbox.bounds import OLDEST_TELEMETRY, Bounds
from gateway.outbox.claim import Claim
from gateway.outbox.counts import Counts
from gateway.outbox.database import cap_size, fetch, limit_wal
from gateway.outbox.leases import TAIL_LIMIT, Leases
from gateway.outbox.priority import Priority
from gateway.outbox.quarantine import open_checked
from gateway.outbox.reserve import Reserve
from gateway.outbox.rows import SELECT, from_row
from gateway.outbox.spill import Spill
from gateway.outbox.writer import Writer


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
    dead_letters: int = 0  # rows moved to the dead-letter table (they could never be sent)


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
        claim: Claim,
        reserve: Reserve,
        tail_limit: int = TAIL_LIMIT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.path = path
        self.log = log
        self.quarantined = quarantined
        self.claim = claim
        self._next_seq = 1
        self._imports = False  # rows an import took are here: leases look their origin up
        self._dead_letters = 0
        self._counts = Counts()
        self._leases = Leases(tail_limit)
        self._spill = Spill(memory_rows, log)
        # The uplink's right of way over intake on the shared loop (claimed by the uplink,
        # given way to by the pipeline's emit).
        self.priority = Priority()
        # Called with the set of lanes after every append (and at open when rows wait):
        # the uplink and the mailer wake on it instead of polling.
        self.listeners: list[Callable[[set[Lane]], None]] = []
        self._writer = Writer(
            db,
            bounds=Bounds(max_rows, max_bytes, drop_policy),
            counts=self._counts,
            leases=self._leases,
            spill=self._spill,
            listeners=self.listeners,
            log=log,
            reserve=reserve,
            monotonic=monotonic,
        )

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
        drop_policy: str = OLDEST_TELEMETRY,
        memory_rows: int = 100_000,
        hard_limit_bytes: int | None = None,
        tail_limit: int = TAIL_LIMIT,
        reserve_bytes: int | None = None,
        log: Any = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> AsyncIterator[Outbox]:
        """Open (creating or quarantining as needed) and close on exit.

        `hard_limit_bytes` caps the file through SQLite's page budget; exceeding it behaves
        exactly like a full disk (SQLITE_FULL). Use it to keep the outbox off a shared card.
        `tail_limit` is how many of each lane's newest rows are kept in memory to serve
        leases without a SELECT. `reserve_bytes` is the space held back beside the file so
        that a full disk can still be drained (0: none; None: an eighth of the filesystem, at
        most 8 MiB). Raises StoreLocked when another process has the outbox open,
        StoreUnusable when it cannot be used as it is (both leave every file as it was),
        StoreFull when the disk is too full to open it.
        """
        import structlog

        log = log or structlog.get_logger().bind(component="outbox")
        p = Path(path)
        claim = Claim.take(p, log)
        try:
            db, quarantined = await open_checked(p, sync, log)
        except BaseException:
            claim.release()
            raise
        reserve = Reserve(p, reserve_bytes, log)
        outbox = cls(
            db,
            p,
            max_rows=max_rows,
            max_bytes=max_bytes,
            drop_policy=drop_policy,
            memory_rows=memory_rows,
            log=log,
            quarantined=quarantined,
            claim=claim,
            reserve=reserve,
            tail_limit=tail_limit,
            monotonic=monotonic,
        )
        try:
            await outbox._load(sound=claim.found_outbox and quarantined is None)
            await limit_wal(db, reserve.wal_pages(4096))
            reserve.restore()
            if hard_limit_bytes is not None:
                await outbox.set_hard_limit(hard_limit_bytes)
            yield outbox
        finally:
            with contextlib.suppress(sqlite3.Error):
                await outbox._writer.flush()
            outbox._report_lost_at_close()
            await db.close()
            claim.release()

    async def _load(self, *, sound: bool) -> None:
        """Counts, drop counters and the next seq. A file that was not there or was just
        quarantined starts above the claim's ceiling (and the old file's mark, if readable),
        so seq never goes back."""
        counters = await meta.read(self.db)
        await self._counts.load(self.db, counters)
        ((top,),) = await fetch(self.db, "SELECT max(seq) FROM outbox")
        mark = max(top or 0, counters.get(meta.SEQ_HWM, 0))
        if not sound:
            old = 0
            if self.quarantined:
                from gateway.outbox.salvage import last_seq  # loaded only after a quarantine

                old = last_seq(Path(self.quarantined))
            mark = max(mark, self.claim.ceiling, old)
        self._next_seq = mark + 1
        self.claim.cover(mark)
        self._dead_letters = await deadletter.count(self.db)
        # Imports happen with the daemon stopped (they take the claim), so once is enough.
        self._imports = await intake.has_imports(self.db)

    def _report_lost_at_close(self) -> None:
        """Rows only in memory (the disk stayed full) end with the process: count and say so."""
        if not self._spill:
            return
        lost: dict[str, int] = {}
        for r in self._spill:
            self._counts.lost_in_memory(r.lane)
            lost[r.lane.name.lower()] = lost.get(r.lane.name.lower(), 0) + 1
        self.log.error(
            "outbox closing with rows only in memory (disk full); they are lost",
            lost=lost,
            dropped_total=self._counts.dropped_by_lane(),
        )
        self._spill.clear()

    async def set_hard_limit(self, limit_bytes: int) -> None:
        """Cap the file size through SQLite's page budget (0 lifts the cap)."""
        await cap_size(self.db, limit_bytes)

    # -- sequence numbers ------------------------------------------------------------------
    def allocate(self, n: int) -> range:
        """Reserve `n` sequence numbers; they become durable with the rows that use them."""
        start = self._next_seq
        self._next_seq += n
        self.claim.cover(self._next_seq - 1)  # durable before any row carries them
        return range(start, start + n)

    # -- writing ---------------------------------------------------------------------------
    async def append(self, readings: Sequence[Reading]) -> None:
        """Write a batch in one transaction (also retries any buffered rows first).

        Never raises for a full disk: the rows are kept in memory instead (bounded) and
        `stats().disk_full` is set until a later write succeeds.
        """
        # Shielded: a caller cancelled mid-append must not leave half a transaction behind;
        # the batch is written whole (or buffered) either way.
        await asyncio.shield(self._writer.append(readings))

    async def correct_times(self, delta: float, since_seq: int) -> int:
        """Shift the stamps of unsynchronised rows from `since_seq` on by `delta` seconds and
        mark them synchronised (the clock was stepped by NTP). Returns the rows corrected."""
        return await self._writer.correct_times(delta, since_seq)

    async def side_write(self, work: Callable[[aiosqlite.Connection], Awaitable[None]]) -> None:
        """Run `work(db)` in one transaction of its own under the write lock, whole even when
        the caller is cancelled; for the side tables in the same file (the daybook). Raises
        sqlite3.Error as it comes (a full disk included): the caller keeps what it wrote."""
        await asyncio.shield(self._writer.side(work))

    # -- leasing ---------------------------------------------------------------------------
    async def lease(self, lane: Lane, limit: int) -> list[Reading]:
        """The oldest `limit` rows of `lane` not currently leased, now leased."""
        out = None if self._spill else self._leases.from_tail(lane, limit)
        if out is None:
            out = await self._select_unleased(lane, limit) if self._counts.rows[lane] else []
        if len(out) < limit and self._spill:
            self._leases.top_up(lane, out, self._spill, limit)
        self._leases.grant(lane, out)
        if self._imports:
            out = await intake.with_origins(self.db, out)
        return out

    async def _select_unleased(self, lane: Lane, limit: int) -> list[Reading]:
        # Rows past the cursor may include released-then-leased ones: fetch that many extra.
        rows = await fetch(
            self.db,
            f"{SELECT} WHERE lane = ? AND seq > ? ORDER BY seq LIMIT ?",
            (int(lane), self._leases.cursor(lane), limit + self._leases.beyond(lane)),
        )
        return self._leases.pick_rows(lane, rows, limit)

    def release(self, seqs: Iterable[int]) -> None:
        """Give leased rows back (their publish failed); they are leased again, oldest first."""
        self._leases.release(list(seqs))

    def release_all(self) -> None:
        self._leases.release_all()

    def unleased(self, lane: Lane) -> int:
        """Rows of `lane` (on disk or buffered) waiting to be leased."""
        waiting = self._counts.rows[lane] + self._spill.count(lane)
        return max(0, waiting - self._leases.count(lane))

    def leased(self) -> int:
        return self._leases.count()

    async def ack(self, readings: Sequence[Reading]) -> None:
        """Delete delivered rows in one transaction; rows dropped meanwhile are fine."""
        if readings:
            # Shielded like append: the counts must follow what the file holds.
            await asyncio.shield(self._writer.ack(readings))

    async def dead_letter(self, readings: Sequence[Reading], reason: str) -> None:
        """Move leased rows that can never be published (invalid topic, unencodable, too
        large alone) to the dead-letter table with `reason` and the time, in one transaction,
        ending their leases: they never block the rows behind them. On a full disk they stay
        queued (and are tried again)."""
        if readings:
            # Counted inside the shield: a caller cancelled meanwhile (a stopping uplink)
            # must not leave the count behind the rows the file has moved.
            await asyncio.shield(self._move_to_dead_letters(readings, reason))

    async def _move_to_dead_letters(self, readings: Sequence[Reading], reason: str) -> None:
        self._dead_letters += await self._writer.dead_letter(readings, reason, time.time())

    # -- inspection ------------------------------------------------------------------------
    @property
    def memory_rows(self) -> int:
        return len(self._spill)

    @property
    def rows(self) -> int:
        return self._counts.total

    async def count(self, lane: Lane | None = None) -> int:
        """Rows on disk plus rows buffered in memory (of one lane, or all)."""
        if lane is None:
            return self._counts.total + len(self._spill)
        return self._counts.rows[lane] + self._spill.count(lane)

    async def peek(self, lane: Lane | None = None, limit: int = 100) -> list[Reading]:
        """The oldest rows without leasing them (for `gateway status` and tests)."""
        where = "" if lane is None else f" WHERE lane = {int(lane)}"
        return [
            from_row(r)
            for r in await fetch(self.db, f"{SELECT}{where} ORDER BY seq LIMIT ?", (limit,))
        ]

    def stats(self) -> OutboxStats:
        return OutboxStats(
            rows=self._counts.total,
            bytes=self._counts.bytes,
            by_lane=self._counts.by_lane(),
            dropped=self._counts.dropped_by_lane(),
            memory_rows=len(self._spill),
            disk_full=self._spill.full,
            next_seq=self._next_seq,
            quarantined=self.quarantined,
            dead_letters=self._dead_letters,
        )
