"""The drop policy (gateway.outbox.bounds) on a real SQLite file, inside the caller's
transaction."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.model import Lane, Reading
from gateway.outbox import meta
from gateway.outbox.bounds import NEWEST_TELEMETRY, Bounds, Dropped
from gateway.outbox.database import connect, fetch
from gateway.outbox.rows import INSERT, row_size, to_row
from gateway.outbox.transaction import atomic, transaction

T, M, A = Lane.TELEMETRY, Lane.MAIL, Lane.ALERT


def rows(lane: Lane, *seqs: int) -> list[Reading]:
    return [Reading(s, "d1", "level", float(s), "cm", float(s), True, lane) for s in seqs]


async def fill(db, readings: list[Reading]) -> tuple[int, int]:
    """Write `readings`; returns what the file then holds (rows, bytes)."""
    async with transaction(db):
        await db.executemany(INSERT, [to_row(r) for r in readings])
    ((n, size),) = await fetch(db, "SELECT count(*), total(size) FROM outbox")
    return n, int(size)


async def enforce(db, bounds: Bounds, **sizes: int) -> Dropped:
    """`bounds.enforce` in a transaction of its own, as the writer runs it (SQLite thread)."""
    return await atomic(db, lambda conn: bounds.enforce(conn, **sizes))


async def remaining(db) -> list[int]:
    return [seq for (seq,) in await fetch(db, "SELECT seq FROM outbox ORDER BY seq")]


async def test_within_bounds_nothing_is_dropped(tmp_path):
    db = await connect(tmp_path / "o.db", "full")
    try:
        n, size = await fill(db, rows(T, 1, 2, 3))
        dropped = await enforce(
            db, Bounds(5, 1 << 20), rows=n, nbytes=size, adding=2, adding_bytes=100
        )
        assert dropped == {} and await remaining(db) == [1, 2, 3]
        assert await meta.read(db) == {}
    finally:
        await db.close()


async def test_telemetry_gives_way_first_then_mail_then_alerts_and_each_drop_is_counted(tmp_path):
    db = await connect(tmp_path / "o.db", "full")
    try:
        batch = rows(A, 1, 2) + rows(T, 3, 4) + rows(M, 5, 6)
        n, size = await fill(db, batch)
        # Room for 6 rows, 5 more coming: 5 must go.
        dropped = await enforce(
            db, Bounds(6, 1 << 20), rows=n, nbytes=size, adding=5, adding_bytes=500
        )
        sizes = {r.seq: row_size(r) for r in batch}
        assert {lane: sorted(gone) for lane, gone in dropped.items()} == {
            T: [(3, sizes[3]), (4, sizes[4])],
            M: [(5, sizes[5]), (6, sizes[6])],
            A: [(1, sizes[1])],
        }
        assert await remaining(db) == [2]
        assert await meta.read(db) == {
            "dropped_telemetry": 2,
            "dropped_mail": 2,
            "dropped_alert": 1,
        }
    finally:
        await db.close()


async def test_newest_telemetry_policy_drops_the_latest_arrivals(tmp_path):
    db = await connect(tmp_path / "o.db", "full")
    try:
        n, size = await fill(db, rows(T, 1, 2, 3, 4) + rows(A, 5))
        dropped = await enforce(
            db,
            Bounds(5, 1 << 20, NEWEST_TELEMETRY),
            rows=n,
            nbytes=size,
            adding=2,
            adding_bytes=100,
        )
        assert sorted(seq for seq, _ in dropped[T]) == [3, 4] and A not in dropped
        assert await remaining(db) == [1, 2, 5]
    finally:
        await db.close()


async def test_the_byte_bound_drops_enough_rows_to_free_the_excess(tmp_path):
    db = await connect(tmp_path / "o.db", "full")
    try:
        n, size = await fill(db, rows(T, *range(1, 101)))
        mean = size // n
        # 10 rows' worth of bytes over: about 10 rows go (from the mean row size).
        dropped = await enforce(
            db, Bounds(10_000, size), rows=n, nbytes=size, adding=10, adding_bytes=10 * mean
        )
        assert len(dropped[T]) == 10 and await remaining(db) == list(range(11, 101))
    finally:
        await db.close()


async def test_drops_and_their_counters_roll_back_with_the_transaction(tmp_path):
    db = await connect(tmp_path / "o.db", "full")
    try:
        n, size = await fill(db, rows(T, 1, 2, 3))

        def drop_then_fail(conn: sqlite3.Connection) -> None:
            Bounds(2, 1 << 20).enforce(conn, rows=n, nbytes=size, adding=1, adding_bytes=50)
            conn.execute(INSERT, to_row(rows(T, 3)[0]))  # the batch's insert fails

        with pytest.raises(sqlite3.IntegrityError):
            await atomic(db, drop_then_fail)
        assert await remaining(db) == [1, 2, 3] and await meta.read(db) == {}
    finally:
        await db.close()
