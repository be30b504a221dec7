"""The one write transaction (gateway.outbox.transaction) on a real SQLite file, and the
cancellation guarantees of the writes built on it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from gateway.model import Lane, Reading
from gateway.outbox.database import connect
from gateway.outbox.store import Outbox
from gateway.outbox.transaction import atomic, transaction


def _meta_rows(path) -> list[tuple[str, int]]:
    """What another process would see in `meta` (a fresh connection: committed data only)."""
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute("SELECT key, value FROM meta"))
    finally:
        db.close()


async def test_the_block_is_committed_when_it_ends(tmp_path):
    path = tmp_path / "o.db"
    db = await connect(path, "full")
    try:
        async with transaction(db) as tx:
            assert tx is db and db.in_transaction
            await tx.execute("INSERT INTO meta VALUES ('a', 1)")
        assert not db.in_transaction
        assert _meta_rows(path) == [("a", 1)]
    finally:
        await db.close()


async def test_an_error_rolls_back_and_propagates_unchanged(tmp_path):
    path = tmp_path / "o.db"
    db = await connect(path, "full")
    try:
        with pytest.raises(KeyError, match="boom"):
            async with transaction(db):
                await db.execute("INSERT INTO meta VALUES ('a', 1)")
                raise KeyError("boom")
        assert not db.in_transaction
        assert _meta_rows(path) == []
        # A failing statement (duplicate key) rolls back the whole block, earlier rows too.
        with pytest.raises(sqlite3.IntegrityError):
            async with transaction(db):
                await db.execute("INSERT INTO meta VALUES ('b', 1)")
                await db.execute("INSERT INTO meta VALUES ('b', 2)")
        assert not db.in_transaction and _meta_rows(path) == []
        async with transaction(db):  # the connection is usable again
            await db.execute("INSERT INTO meta VALUES ('c', 3)")
        assert _meta_rows(path) == [("c", 3)]
    finally:
        await db.close()


async def test_a_cancelled_block_is_rolled_back(tmp_path):
    path = tmp_path / "o.db"
    db = await connect(path, "full")
    inside = asyncio.Event()

    async def writer() -> None:
        async with transaction(db):
            await db.execute("INSERT INTO meta VALUES ('a', 1)")
            inside.set()
            await asyncio.Event().wait()  # cancelled here, mid-transaction

    try:
        task = asyncio.create_task(writer())
        await inside.wait()
        assert db.in_transaction
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not db.in_transaction
        assert _meta_rows(path) == []
        async with transaction(db):
            await db.execute("INSERT INTO meta VALUES ('b', 2)")
        assert _meta_rows(path) == [("b", 2)]
    finally:
        await db.close()


async def test_begin_immediate_takes_the_write_lock_at_the_start(tmp_path):
    """A second writer is refused while the block is open, before any statement ran in it
    (a deferred BEGIN would only lock at the first write)."""
    path = tmp_path / "o.db"
    db = await connect(path, "full")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        async with transaction(db):
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # free again once committed
        other.execute("ROLLBACK")
    finally:
        other.close()
        await db.close()


def _put(conn: sqlite3.Connection, *pairs: tuple[str, int]) -> int:
    conn.executemany("INSERT INTO meta VALUES (?, ?)", pairs)
    return len(pairs)


async def test_atomic_commits_the_work_and_returns_its_result(tmp_path):
    path = tmp_path / "o.db"
    db = await connect(path, "full")
    try:
        assert await atomic(db, _put, ("a", 1), ("b", 2)) == 2
        assert not db.in_transaction
        assert _meta_rows(path) == [("a", 1), ("b", 2)]
    finally:
        await db.close()


async def test_atomic_rolls_the_whole_work_back_on_an_error_and_raises_it(tmp_path):
    path = tmp_path / "o.db"
    db = await connect(path, "full")

    def put_then_fail(conn: sqlite3.Connection) -> None:
        _put(conn, ("a", 1))
        raise KeyError("boom")

    try:
        with pytest.raises(KeyError, match="boom"):
            await atomic(db, put_then_fail)
        # A failing statement after a good one: both gone.
        with pytest.raises(sqlite3.IntegrityError):
            await atomic(db, _put, ("b", 1), ("b", 2))
        assert not db.in_transaction and _meta_rows(path) == []
        await atomic(db, _put, ("c", 3))  # the connection is usable again
        assert _meta_rows(path) == [("c", 3)]
    finally:
        await db.close()


async def test_atomic_work_whose_caller_is_cancelled_still_ends_its_transaction(tmp_path):
    """The work runs on in the SQLite thread: committed whole, never left open."""
    path = tmp_path / "o.db"
    db = await connect(path, "full")
    started, release = threading.Event(), threading.Event()

    def slow_put(conn: sqlite3.Connection) -> None:
        _put(conn, ("a", 1))
        started.set()
        release.wait(5)
        _put(conn, ("b", 2))

    try:
        task = asyncio.create_task(atomic(db, slow_put))
        assert await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await atomic(db, _put, ("c", 3))  # queued behind the cancelled caller's work
        assert not db.in_transaction
        assert _meta_rows(path) == [("a", 1), ("b", 2), ("c", 3)]
    finally:
        release.set()
        await db.close()


async def test_atomic_takes_the_write_lock_at_the_start(tmp_path):
    path = tmp_path / "o.db"
    db = await connect(path, "full")
    # Used from the SQLite thread, inside the work.
    other = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)

    def try_other(conn: sqlite3.Connection) -> str:
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            return str(exc)
        other.execute("ROLLBACK")
        return "not locked"

    try:
        # Before the work wrote anything (a deferred BEGIN would not lock yet).
        assert "locked" in await atomic(db, try_other)
    finally:
        other.close()
        await db.close()


def _batch(ob: Outbox, n: int) -> list[Reading]:
    return [
        Reading(seq, "d1", "water_level", float(seq), "cm", 1.0 + seq, True, Lane.TELEMETRY)
        for seq in ob.allocate(n)
    ]


async def test_an_append_whose_caller_is_cancelled_is_written_whole(tmp_path):
    path = tmp_path / "o.db"
    async with Outbox.open(path) as ob:
        task = asyncio.create_task(ob.append(_batch(ob, 5000)))
        await asyncio.sleep(0.001)  # the write is under way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await ob.append([])  # waits for the writer: the shielded batch finishes first
        assert await ob.count() == 5000 == ob.stats().rows
    async with Outbox.open(path) as ob:
        assert await ob.count() == 5000


async def test_an_ack_whose_caller_is_cancelled_deletes_the_rows_and_keeps_counts(tmp_path):
    path = tmp_path / "o.db"
    async with Outbox.open(path) as ob:
        await ob.append(_batch(ob, 3000))
        leased = await ob.lease(Lane.TELEMETRY, 3000)
        task = asyncio.create_task(ob.ack(leased[:2000]))
        await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await ob.append([])
        assert ob.stats().rows == 1000 == await ob.count()
        assert ob.leased() == 1000
    async with Outbox.open(path) as ob:
        assert [r.seq for r in await ob.peek(limit=1)] == [2001]
        assert await ob.count() == 1000
