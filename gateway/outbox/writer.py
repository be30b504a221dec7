"""The outbox's one writer: every change to the file, one transaction each, one at a time.

Appends (with the bounds enforced in the same transaction), acknowledgements and stamp
corrections run under one lock, each one transaction (appends and acknowledgements each in
one hand-off to the SQLite thread, `atomic`). Only after a commit are the
in-memory views brought up to date (counts, leases, the tail), so a failed write leaves
them as the file is. A full disk sends appends to the spill and is never raised to the
caller; the spill is written back before the next batch, once the space `reserve` is held
again. A delete that fails for lack of space releases the reserve and is retried, and while
the disk is full every acknowledgement checkpoints the WAL and gives freed pages back, so a
full disk drains. Drops are logged on transitions and as a periodic count (`losses`).
Nothing here reads for a caller or hands out leases, and nothing here shields against
cancellation: the store's facade does.
"""

from __future__ import annotations

import asyncio
import operator
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiosqlite

from gateway.errors import StoreFull
from gateway.model import LANE_OF, SEQ_OF, Lane, Reading
from gateway.outbox import deadletter, meta
from gateway.outbox.bounds import Bounds, Dropped
from gateway.outbox.counts import Counts
from gateway.outbox.database import checkpoint, is_full, shrink
from gateway.outbox.leases import Leases
from gateway.outbox.losses import Losses
from gateway.outbox.reserve import Reserve
from gateway.outbox.rows import delete, insert, runs, to_row
from gateway.outbox.spill import Spill
from gateway.outbox.transaction import atomic, transaction

_SIZE = operator.itemgetter(-1)  # a to_row row's size
PIECE_MIN = 100  # rows: the smallest delete tried on a full disk (a few pages of WAL)


class Writer:
    def __init__(
        self,
        db: aiosqlite.Connection,
        *,
        bounds: Bounds,
        counts: Counts,
        leases: Leases,
        spill: Spill,
        listeners: list[Callable[[set[Lane]], None]],
        log: Any,
        reserve: Reserve,
        monotonic: Callable[[], float],
    ) -> None:
        self.db = db
        self.bounds = bounds
        self.counts = counts
        self.leases = leases
        self.spill = spill
        self.listeners = listeners
        self.log = log
        self.reserve = reserve
        self.drops = Losses(log, "outbox full", monotonic=monotonic)
        self.spill_drops = Losses(log, "outbox memory buffer full", monotonic=monotonic)
        self._lock = asyncio.Lock()

    async def append(self, readings: Sequence[Reading]) -> None:
        """Write the spill back, then `readings` (or buffer them while the disk is full);
        then tell the listeners which lanes got rows."""
        async with self._lock:
            if self.spill or self.spill.full:
                await self.flush()
            if not readings:
                return
            lanes = set(map(LANE_OF, readings))
            if self.spill.full:
                self._buffer(readings)
            else:
                try:
                    await self._write(readings, lanes)
                except StoreFull:
                    self._buffer(readings)
            for listener in self.listeners:
                listener(lanes)

    async def flush(self) -> None:
        """Write the spill back to the file, if the file takes it now (caller holds the lock,
        or the outbox is closing)."""
        if self.spill.full and not self.reserve.restore():
            return  # the space freed so far serves the drain, not more rows
        if not self.spill:
            self.spill.leave()  # drained in memory; the reserve is back: try the disk again
            return
        # Rows already acked while in memory were removed from the spill by ack().
        try:
            rows = list(self.spill)
            await self._write(rows, set(map(LANE_OF, rows)))
        except StoreFull:
            return
        self.spill.clear()

    async def _write(self, readings: Sequence[Reading], lanes: set[Lane]) -> None:
        """Insert a batch (of the `lanes` given), dropping over the bounds, in one
        transaction; StoreFull when the disk is full (the spill then holds until a write
        succeeds)."""
        rows = [to_row(r) for r in readings]
        added = sum(map(_SIZE, rows))  # to_row puts the row's size last
        try:
            dropped = await atomic(
                self.db,
                _append,
                rows,
                self.bounds,
                (self.counts.total, self.counts.bytes, added),
                max(map(SEQ_OF, readings)),
            )
        except sqlite3.Error as exc:
            if is_full(exc):
                if not self.spill.full:
                    self.spill.enter(str(exc))
                    await self._consolidate()
                raise StoreFull(str(exc)) from exc
            raise
        gone = self._apply_drops(dropped) if dropped else set()
        if not dropped:
            self.drops.clear()
        self.counts.added(readings, lanes, added)
        if gone:
            self.leases.remember([r for r in readings if r.seq not in gone])
        else:
            self.leases.remember(readings, lanes)
        self.spill.leave()

    def _apply_drops(self, dropped: Dropped) -> set[int]:
        """Account for rows the bounds dropped (committed); returns their seqs."""
        all_gone: set[int] = set()
        for lane, gone in dropped.items():
            seqs = {seq for seq, _ in gone}
            all_gone |= seqs
            self.leases.drop(lane, seqs)
            self.counts.lost(lane, gone)
        self.drops.lost(
            {lane.name.lower(): len(gone) for lane, gone in dropped.items()},
            max_rows=self.bounds.max_rows,
            max_bytes=self.bounds.max_bytes,
        )
        return all_gone

    def _buffer(self, readings: Sequence[Reading]) -> None:
        lost: dict[str, int] = {}
        for victim in self.spill.add(readings):
            self.leases.discard(victim.lane, victim.seq)
            self.counts.lost_in_memory(victim.lane)
            name = victim.lane.name.lower()
            lost[name] = lost.get(name, 0) + 1
        if lost:
            self.spill_drops.lost(lost, memory_limit=self.spill.limit)
        else:
            self.spill_drops.clear()

    async def ack(self, readings: Sequence[Reading]) -> None:
        """Delete delivered rows in one transaction; rows dropped meanwhile are fine. On a
        full disk the space reserve is released for the delete, which goes in pieces when it
        is too large for it (`_delete_in_pieces`); without a reserve the rows stay (deleting
        needs WAL space too): their leases have ended but the lease cursor is past them, so
        they are sent again only after the session's `release_all` (a reconnect)."""
        seqs = sorted(map(SEQ_OF, readings))
        acked = set(seqs)
        async with self._lock:
            self.leases.end(acked)
            self.spill.discard(acked)
            try:
                deleted = await self._delete(seqs)
            except sqlite3.Error as exc:
                if not is_full(exc):
                    raise
                self.spill.enter(str(exc))
                if not self.reserve.release():
                    return
                deleted = await self._delete_in_pieces(seqs)
                if not deleted:
                    return
            lanes = set(map(LANE_OF, readings))
            for lane in lanes:
                self.leases.forget(lane, acked)
            if deleted == len(readings):
                self.counts.removed(readings, lanes)
            else:
                # Some were dropped or still in memory only: recount from the file.
                await self.counts.recount(self.db)
            if not self.counts.total or self.spill.full:
                # Drained, or draining a full disk: give the WAL and free pages back now.
                await self._shrink()

    async def _delete(self, seqs: list[int]) -> int:
        # Leases are mostly contiguous: delete by runs, not one IN list per row.
        return await atomic(self.db, delete, runs(seqs))

    async def _delete_in_pieces(self, seqs: list[int]) -> int:
        """On a full disk: delete `seqs` whole, or in ever smaller pieces down to PIECE_MIN
        rows, each its own transaction (the WAL of a large lease's delete may not fit in the
        reserve; small ones do, and each commit lets a checkpoint reuse the WAL). Returns the
        rows deleted; what no piece could delete stays."""
        deleted, size, i = 0, len(seqs), 0
        while i < len(seqs):
            piece = seqs[i : i + size]
            try:
                deleted += await self._delete(piece)
            except sqlite3.Error as exc:
                if not is_full(exc):
                    raise
                if size <= PIECE_MIN:
                    return deleted
                size = max(PIECE_MIN, size // 4)
                continue
            i += len(piece)
        return deleted

    async def _consolidate(self) -> None:
        """The disk just filled: move what the WAL holds into the file and cut the WAL to
        nothing, on the reserve's space, then take the reserve back. Without this the rows
        of the last few batches live only in the WAL, and checkpointing them (needed before
        any delete can be recorded) needs space that never comes back."""
        if not self.reserve.release(quiet=True):
            return
        try:
            await checkpoint(self.db)
        except sqlite3.Error as exc:
            self.log.warning("outbox checkpoint on a full disk failed", error=str(exc))
        self.reserve.restore()

    async def _shrink(self) -> None:
        try:
            await shrink(self.db)
        except sqlite3.Error as exc:
            if not is_full(exc):  # on a full disk it is retried after the next ack
                self.log.warning("outbox shrink failed", error=str(exc))

    async def correct_times(self, delta: float, since_seq: int) -> int:
        """Shift unsynchronised stamps from `since_seq` on by `delta` seconds, marking them
        synchronised, in the file and the spill. Returns the rows corrected in the file
        (0 when the file could not be written: logged, the rows keep their stamps)."""
        async with self._lock:
            try:
                async with transaction(self.db) as db:
                    before = db.total_changes
                    await db.execute(
                        "UPDATE outbox SET ts = ts + ?, flags = flags | 1 "
                        "WHERE seq >= ? AND (flags & 1) = 0",
                        (delta, since_seq),
                    )
                    changed = db.total_changes - before
            except sqlite3.Error as exc:
                self.log.warning("could not correct stamps", error=str(exc))
                return 0
            self.spill.shift_times(delta, since_seq)
            self.leases.clear_tail()  # its copies carry the old stamps
            return changed

    async def side(self, work: Callable[[aiosqlite.Connection], Awaitable[None]]) -> None:
        """Run `work` in one transaction of its own, between the queue's writes: the side
        tables that share the file and its one connection (gateway.outbox.daybook)."""
        async with self._lock, transaction(self.db) as db:
            await work(db)

    async def dead_letter(self, readings: Sequence[Reading], reason: str, at: float) -> int:
        """Move rows that can never be published to the dead-letter table in one transaction,
        ending their leases; the rows moved (0 when the disk is full: they stay queued)."""
        gone = {r.seq for r in readings}
        async with self._lock:
            self.leases.end(gone)
            try:
                async with transaction(self.db) as db:
                    await deadletter.move(db, readings, reason, at)
            except sqlite3.Error as exc:
                if is_full(exc):
                    self.spill.enter(str(exc))
                    return 0
                raise
            self.spill.discard(gone)
            for lane in set(map(LANE_OF, readings)):
                self.leases.forget(lane, gone)
            await self.counts.recount(self.db)  # dead letters are rare: recount, exactly
            return len(readings)


def _append(
    conn: sqlite3.Connection,
    rows: list[tuple[Any, ...]],
    bounds: Bounds,
    held: tuple[int, int, int],
    top_seq: int,
) -> Dropped:
    """An append's whole write, the body of its `atomic` transaction (in the SQLite thread:
    it sees only its arguments and the connection; an ack's is `rows.delete`). Inserts
    `rows`, drops what is then over the bounds (`held`: the file's rows and bytes before the
    batch, and the batch's bytes) and raises the seq mark to `top_seq`."""
    nrows, nbytes, added = held
    insert(conn, rows)
    dropped = bounds.enforce(conn, rows=nrows, nbytes=nbytes, adding=len(rows), adding_bytes=added)
    meta.raise_to(conn, meta.SEQ_HWM, top_seq)
    return dropped
