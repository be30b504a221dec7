"""The one write transaction of the outbox: BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error.

Every write to the outbox file goes through `transaction(db)`, so a batch is exactly one
transaction and no error (nor a cancellation) leaves one open behind it. This module decides
nothing about what is written and never swallows an error: the caller maps SQLITE_FULL and
the rest. It does not serialise writers either; the store's write lock does.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator

import aiosqlite


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
