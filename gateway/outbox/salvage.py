"""What can still be read from a quarantined outbox file, and putting it back in the queue.

`last_seq(path)` is the highest sequence number a damaged file shows (its `meta` mark or its
largest row), best effort, so that a fresh outbox can start above it. `read_rows(path)`
reads every row it can, window by window, halving a window that fails down to single rows,
so one damaged page costs only the rows on it. `requeue` appends the rows read to the
current outbox in one transaction with new sequence numbers above its high-water mark (their
lane, device, values and stamps kept, in their original order) and records in `meta` the
highest original seq taken from that file (`salvaged:<file name>`): running it again
re-queues nothing twice. Read-only on the damaged file; never deletes or renames it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.model import Reading
from gateway.outbox import meta
from gateway.outbox.database import fetch
from gateway.outbox.rows import SELECT, from_row, insert, to_row
from gateway.outbox.transaction import atomic

_WINDOW = 1000  # seqs per read; a failing window is halved until single rows
_NO_PARENT = SELECT.replace(", parent FROM", ", NULL FROM")  # files from before sub-devices
SALVAGED = "salvaged:"


@dataclass(frozen=True)
class Salvaged:
    requeued: int  # rows appended to the current outbox
    already: int  # rows a previous salvage of the same file took
    unreadable: int  # seqs in damaged places (rows possibly lost)
    first_seq: int  # the new seqs given, first..last (0 when none)
    last_seq: int


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def _mark(db: sqlite3.Connection) -> int:
    best = 0
    hwm = f"SELECT value FROM meta WHERE key = '{meta.SEQ_HWM}'"
    for sql in ("SELECT max(seq) FROM outbox", hwm):
        try:
            row = db.execute(sql).fetchone()
        except sqlite3.Error:
            continue
        if row and isinstance(row[0], int):
            best = max(best, row[0])
    return best


def last_seq(path: Path) -> int:
    """The highest seq the (damaged) file at `path` shows; 0 when nothing can be read."""
    try:
        db = _open(path)
    except sqlite3.Error:
        return 0
    try:
        return _mark(db)
    finally:
        db.close()


def read_rows(path: Path) -> tuple[list[Reading], int]:
    """The readable rows of `path` by original seq, and how many seqs could not be read.

    Raises sqlite3.Error when the file is not a database at all."""
    db = _open(path)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # not a database: raises
        try:
            db.execute("SELECT parent FROM outbox LIMIT 0")
            select = SELECT
        except sqlite3.OperationalError:
            select = _NO_PARENT
        rows: dict[int, Reading] = {}
        bad = 0
        top = _mark(db)
        pending = [(lo, min(lo + _WINDOW - 1, top)) for lo in range(1, top + 1, _WINDOW)]
        while pending:
            lo, hi = pending.pop()
            try:
                found = db.execute(f"{select} WHERE seq BETWEEN ? AND ?", (lo, hi)).fetchall()
            except sqlite3.DatabaseError:
                if lo == hi:
                    bad += 1
                else:
                    mid = (lo + hi) // 2
                    pending += [(mid + 1, hi), (lo, mid)]
                continue
            for row in found:
                reading = _reading(row)
                if reading is not None:
                    rows[reading.seq] = reading
        return [rows[s] for s in sorted(rows)], bad
    finally:
        db.close()


def _reading(row: tuple[Any, ...]) -> Reading | None:
    """A row as a Reading, or None when a damaged page gave values of the wrong kind."""
    try:
        r = from_row(tuple(row))
    except (IndexError, TypeError, ValueError):
        return None
    texts = (r.device, r.quantity, r.unit)
    if not all(isinstance(t, str) for t in texts) or not isinstance(r.ts, float | int):
        return None
    return r


async def requeue(
    db: aiosqlite.Connection, allocate: Callable[[int], range], path: Path
) -> Salvaged:
    """Append what `read_rows(path)` found that no earlier salvage of the file took.

    `db` is the current outbox's connection (its claim held), `allocate` its seq allocator.
    Raises sqlite3.Error when `path` is not a database at all."""
    readings, bad = read_rows(path)
    key = SALVAGED + path.name
    ((done,),) = await fetch(db, "SELECT coalesce(max(value), 0) FROM meta WHERE key = ?", (key,))
    todo = [r for r in readings if r.seq > done]
    if not todo:
        return Salvaged(0, len(readings), bad, 0, 0)
    seqs = allocate(len(todo))
    renumbered = [r._replace(seq=s) for r, s in zip(todo, seqs, strict=True)]
    await atomic(db, _queue, [to_row(r) for r in renumbered], seqs[-1], (key, todo[-1].seq))
    return Salvaged(len(todo), len(readings) - len(todo), bad, seqs[0], seqs[-1])


def _queue(
    conn: sqlite3.Connection, rows: list[tuple[Any, ...]], top_seq: int, done: tuple[str, int]
) -> None:
    """The salvaged rows and how far the salvage got, in the caller's transaction."""
    insert(conn, rows)
    meta.raise_to(conn, meta.SEQ_HWM, top_seq)
    meta.raise_to(conn, *done)
