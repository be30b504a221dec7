"""The `meta` table: the sequence high-water mark and the persisted drop counters.

One key per counter (`seq_hwm`, `dropped_<lane>`). Writers take the `sqlite3` connection in
the SQLite thread, run inside the caller's transaction (`transaction.atomic`) and never
commit; the readers take a connection of either kind (aiosqlite for the store, sqlite3
read-only for `gateway status`). No queue logic here.
"""

from __future__ import annotations

import sqlite3

import aiosqlite

from gateway.model import Lane
from gateway.outbox.database import fetch

SEQ_HWM = "seq_hwm"
DROPPED = "dropped_"
SELECT_ALL = "SELECT key, value FROM meta"


def dropped_key(lane: Lane) -> str:
    return f"{DROPPED}{lane.name.lower()}"


def drops(meta: dict[str, int]) -> dict[str, int]:
    """The drop counters in `meta`, by lane name (`telemetry`, `mail`, `alert`)."""
    return {k[len(DROPPED) :]: v for k, v in meta.items() if k.startswith(DROPPED)}


async def read(db: aiosqlite.Connection) -> dict[str, int]:
    return {k: v for k, v in await fetch(db, SELECT_ALL)}


def add(conn: sqlite3.Connection, key: str, n: int) -> None:
    """Add `n` to a counter (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
        "SET value = value + excluded.value",
        (key, n),
    )


def raise_to(conn: sqlite3.Connection, key: str, value: int) -> None:
    """Set a mark to `value` unless it is already higher (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
        "SET value = max(value, excluded.value)",
        (key, value),
    )
