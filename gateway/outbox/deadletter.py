"""Dead letters: rows the uplink can never publish, kept in the outbox file with their reason.

A row whose topic MQTT forbids, whose value the payload format cannot encode, or that is too
large for `max_payload_bytes` alone would be leased and refused for ever, blocking the rows
behind it. The uplink moves it here instead (gateway.outbox.store `Outbox.dead_letter`): the
`dead_letter` table (created by gateway.outbox.database's SCHEMA, so older files get it on
open) holds the row as it was, the reason and the time it was moved, for a person to look at.
Nothing ever leases from it. This module holds the table's statements only; the store's
writer runs them inside its one transaction, under its lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite

from gateway.model import Reading

# OR REPLACE: a crash after the move but before the uplink forgot the row may move it twice.
_INSERT = (
    "INSERT OR REPLACE INTO dead_letter"
    "(seq, lane, device, quantity, value, unit, ts, synced, parent, reason, at) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
_DELETE = "DELETE FROM outbox WHERE seq = ?"
COUNT = "SELECT count(*) FROM dead_letter"


def _text(value: str) -> str:
    # The row is here because it may hold text SQLite cannot store (a lone surrogate).
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _row(r: Reading, reason: str, at: float) -> tuple[Any, ...]:
    value: Any = _text(r.value) if isinstance(r.value, str) else r.value
    parent = None if r.parent is None else _text(r.parent)
    return (
        r.seq,
        r.lane.value,
        _text(r.device),
        _text(r.quantity),
        value,
        _text(r.unit),
        r.ts,
        int(r.synced),
        parent,
        _text(reason),
        at,
    )


async def move(
    db: aiosqlite.Connection, readings: Sequence[Reading], reason: str, at: float
) -> None:
    """Insert `readings` as dead letters and delete them from the outbox (the caller's
    transaction makes it one step)."""
    await db.executemany(_INSERT, [_row(r, reason, at) for r in readings])
    await db.executemany(_DELETE, [(r.seq,) for r in readings])


async def count(db: aiosqlite.Connection) -> int:
    async with db.execute(COUNT) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def count_readonly(db: sqlite3.Connection) -> int:
    """Dead letters in a file opened read-only (`gateway status`); 0 for a file written
    before the table existed."""
    try:
        return int(db.execute(COUNT).fetchone()[0])
    except sqlite3.OperationalError:  # no such table: an older file, never opened since
        return 0
