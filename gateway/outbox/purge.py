"""Deleting a lane's old rows by hand, for `gateway outbox purge`, counted as drops.

`purge(db, lane, before)` deletes the rows of `lane` stamped before `before` (UTC seconds) in
one transaction and adds them to the lane's persisted drop counter in `meta` in the same
transaction, exactly as the drop policy counts what it drops, so `gateway status` shows
them. The caller holds the outbox's claim (no daemon running) and asks for confirmation.
No logging here: the caller logs the line.
"""

from __future__ import annotations

import sqlite3

import aiosqlite

from gateway.model import Lane
from gateway.outbox import meta
from gateway.outbox.database import fetch
from gateway.outbox.transaction import atomic

_WHERE = "FROM outbox WHERE lane = ? AND ts < ?"


async def count(db: aiosqlite.Connection, lane: Lane, before: float) -> int:
    """How many rows `purge` would delete now."""
    ((n,),) = await fetch(db, f"SELECT count(*) {_WHERE}", (int(lane), before))
    return int(n)


async def purge(db: aiosqlite.Connection, lane: Lane, before: float) -> int:
    """Delete the rows of `lane` stamped before `before`; how many were deleted."""
    return await atomic(db, _purge, lane, before)


def _purge(conn: sqlite3.Connection, lane: Lane, before: float) -> int:
    n: int = conn.execute(f"DELETE {_WHERE}", (int(lane), before)).rowcount
    if n:
        meta.add(conn, meta.dropped_key(lane), n)
    return n
