"""The one write transaction of the outbox: BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error.

Every write to the outbox file goes through `atomic(db, work)` or `transaction(db)`, so a
batch is exactly one transaction and no error (nor a cancellation) leaves one open behind
it. `atomic` runs a plain function of the `sqlite3` connection in the SQLite thread, the
whole transaction in one hand-off; it is for the writes that run per batch (append, ack).
`transaction` is a block of awaited statements, each its own hand-off, for the rare writes.
This module decides nothing about what is written and never swallows an error: the caller
maps SQLITE_FULL and the rest. It does not serialise writers either; the store's write lock
does.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Concatenate, ParamSpec, TypeVar

import aiosqlite

P = ParamSpec("P")
T = TypeVar("T")


async def atomic(
    db: aiosqlite.Connection,
    work: Callable[Concatenate[sqlite3.Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run `work(conn, *args, **kwargs)` in one IMMEDIATE transaction in the connection's own
    thread, and return its result: committed when it returns, rolled back when it raises
    (the exception then propagates unchanged).

    `work` runs in the SQLite thread: it may use the connection and its arguments, never the
    event loop's state. It is one hand-off to that thread, where each awaited statement of
    `transaction` is one (a wake-up of the thread and then of the loop, each): an append
    went from four to one. Cancelling the caller does not stop `work`: the transaction is
    still committed or rolled back whole, only the caller no longer learns which (the store
    shields its writes so that it always does). The connection must be in autocommit mode
    (`isolation_level=None`)."""
    # aiosqlite has no public call for running a function in its thread; `_execute` is how
    # its own methods do it, up to 0.22 (the newest pyproject.toml admits). The outbox
    # tests run every append and ack through here, so a change there fails them.
    conn = db._conn
    result: T = await db._execute(_whole, conn, work, *args, **kwargs)  # type: ignore[no-untyped-call]
    return result


def _whole(
    conn: sqlite3.Connection,
    work: Callable[Concatenate[sqlite3.Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn, *args, **kwargs)
        conn.commit()
    except BaseException:
        # As in `_rollback`: the original error is the one worth reporting.
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        raise
    return result


@contextlib.asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """Run the block in one IMMEDIATE transaction (the write lock is taken at BEGIN, so a
    full disk or a busy file shows at the start, not at COMMIT).

    Commits when the block ends normally. On any exception, including CancelledError, the
    transaction is rolled back and the exception propagates unchanged. The rollback itself is
    shielded: a second cancellation while it runs still leaves the connection outside any
    transaction. The connection must be in autocommit mode (`isolation_level=None`).

    Cancellation of the *whole* write (so that a batch is written whole even when its caller
    is cancelled) is the caller's choice: the store wraps append and ack in `asyncio.shield`.
    """
    try:
        # BEGIN inside the try: cancelled while BEGIN runs (aiosqlite still executes it in
        # its thread), the rollback below closes the transaction it opened.
        await db.execute("BEGIN IMMEDIATE")
        yield db
        await db.commit()
    except BaseException:
        await asyncio.shield(_rollback(db))
        raise


async def _rollback(db: aiosqlite.Connection) -> None:
    # Rolling back a failed or already finished transaction may itself fail (no transaction
    # active, disk gone); the original error is the one worth reporting.
    with contextlib.suppress(sqlite3.Error):
        await db.rollback()
