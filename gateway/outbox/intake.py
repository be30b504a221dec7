"""Taking another gateway's exported rows into this outbox, for `gateway outbox import`.

`parse(record)` checks one exported row (`gateway.outbox.export.FIELDS`, values as the JSON
lines export writes them) and returns it as an `Origin`: the exporting gateway's id and seq,
and the Reading to queue. A row that does not fit raises `BadRecord` naming the field.
`take(db, allocate, origins)` appends the rows to the outbox in transactions of `CHUNK` with
fresh local seqs (the local outbox's numbering stays strictly increasing) and records each
one in the `imported` table: (origin gateway, origin seq) -> local seq. A row whose
(gateway, seq) is already there is skipped, so importing the same file twice, or two
overlapping exports, queues nothing twice; an interrupted import resumes where it stopped.
The caller holds the outbox's claim (no daemon running). `with_origins(db, rows)` gives
leased rows their origin back, for the formats that carry seq. No file reading here.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from gateway.model import Lane, Reading
from gateway.outbox import meta
from gateway.outbox.database import fetch
from gateway.outbox.rows import insert, to_row
from gateway.outbox.transaction import atomic

CHUNK = 5000  # rows per transaction
IMPORTED = """
CREATE TABLE IF NOT EXISTS imported(
    gateway TEXT NOT NULL,
    seq INTEGER NOT NULL,
    local INTEGER NOT NULL,
    PRIMARY KEY(gateway, seq)
) WITHOUT ROWID
"""
# The uplink looks rows up by their local seq (`origins`), once per leased batch.
IMPORTED_LOCAL = "CREATE INDEX IF NOT EXISTS imported_local ON imported(local)"
_LANES = {lane.name.lower(): lane for lane in Lane}


class BadRecord(ValueError):
    """An exported row that cannot be taken; the message names the field and the value."""


@dataclass(frozen=True, slots=True)
class Origin:
    gateway: str  # the exporting gateway's id
    seq: int  # its seq there
    reading: Reading  # to queue here (its seq is replaced by a local one)


@dataclass(frozen=True)
class Taken:
    queued: int  # rows appended
    already: int  # rows an earlier import took
    first_seq: int  # local seqs given, first..last (0 when none)
    last_seq: int


def parse_time(text: str) -> float:
    """ISO 8601 (`2025-06-01T05:10:00Z`, an offset, or none: UTC) as UTC seconds."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRecord(f"not an ISO 8601 time: {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def _text(record: dict[str, Any], key: str, *, empty: bool = False) -> str:
    v = record.get(key)
    if not isinstance(v, str) or (not v and not empty):
        raise BadRecord(f"{key}: expected a non-empty text, got {v!r}")
    return v


def _flag(record: dict[str, Any], key: str) -> bool:
    v = record.get(key)
    if not isinstance(v, bool):
        raise BadRecord(f"{key}: expected true or false, got {v!r}")
    return v


def parse(record: dict[str, Any]) -> Origin:
    """One exported row as an Origin; BadRecord when a field is missing or of the wrong kind."""
    seq = record.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise BadRecord(f"seq: expected a positive integer, got {seq!r}")
    lane = _LANES.get(str(record.get("lane")))
    if lane is None:
        raise BadRecord(f"lane: expected one of {sorted(_LANES)}, got {record.get('lane')!r}")
    value = record.get("value")
    if not isinstance(value, int | float | str) or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        raise BadRecord(f"value: expected a number, text or boolean, got {value!r}")
    parent = record.get("parent")
    if parent is not None and (not isinstance(parent, str) or not parent):
        raise BadRecord(f"parent: expected a text or null, got {parent!r}")
    reading = Reading(
        seq,
        _text(record, "device"),
        _text(record, "quantity"),
        value,
        _text(record, "unit", empty=True),
        parse_time(_text(record, "time")),
        _flag(record, "synced"),
        lane,
        parent,
        _flag(record, "plausible"),
    )
    return Origin(_text(record, "gateway"), seq, reading)


async def _known(db: aiosqlite.Connection, chunk: list[Origin]) -> set[tuple[str, int]]:
    """The (gateway, seq) pairs of `chunk` an earlier import took: one query per gateway."""
    known: set[tuple[str, int]] = set()
    for gw in {o.gateway for o in chunk}:
        seqs = [o.seq for o in chunk if o.gateway == gw]
        rows = await fetch(
            db,
            "SELECT seq FROM imported WHERE gateway = ? AND seq BETWEEN ? AND ?",
            (gw, min(seqs), max(seqs)),
        )
        known.update((gw, s) for (s,) in rows)
    return known


async def _take_chunk(
    db: aiosqlite.Connection, allocate: Callable[[int], range], chunk: list[Origin]
) -> tuple[int, range]:
    known = await _known(db, chunk)
    todo: list[Origin] = []
    for o in chunk:
        if (o.gateway, o.seq) not in known:
            known.add((o.gateway, o.seq))  # the same row twice in one file: once
            todo.append(o)
    if not todo:
        return 0, range(0)
    seqs = allocate(len(todo))
    pairs = list(zip(todo, seqs, strict=True))
    await atomic(
        db,
        _queue,
        [to_row(o.reading._replace(seq=s)) for o, s in pairs],
        [(o.gateway, o.seq, s) for o, s in pairs],
        seqs[-1],
    )
    return len(todo), seqs


def _queue(
    conn: sqlite3.Connection,
    rows: list[tuple[Any, ...]],
    origins: list[tuple[str, int, int]],
    top_seq: int,
) -> None:
    """The rows and where each came from, in the caller's transaction (SQLite thread)."""
    insert(conn, rows)
    conn.executemany("INSERT INTO imported VALUES (?, ?, ?)", origins)
    meta.raise_to(conn, meta.SEQ_HWM, top_seq)


async def take(
    db: aiosqlite.Connection, allocate: Callable[[int], range], origins: Iterable[Origin]
) -> Taken:
    """Queue every row of `origins` no import took before (see the module docstring)."""
    await db.execute(IMPORTED)
    await db.execute(IMPORTED_LOCAL)
    queued = seen = first = last = 0
    chunk: list[Origin] = []
    for o in origins:
        chunk.append(o)
        seen += 1
        if len(chunk) >= CHUNK:
            n, seqs = await _take_chunk(db, allocate, chunk)
            chunk = []
            if n:
                queued, first, last = queued + n, first or seqs[0], seqs[-1]
    if chunk:
        n, seqs = await _take_chunk(db, allocate, chunk)
        if n:
            queued, first, last = queued + n, first or seqs[0], seqs[-1]
    return Taken(queued, seen - queued, first, last)


async def has_imports(db: aiosqlite.Connection) -> bool:
    """Whether any import ever took rows into this outbox (the uplink then looks origins up)."""
    rows = await fetch(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'imported'")
    if not rows:
        return False
    await db.execute(IMPORTED_LOCAL)  # files from before the index
    return bool(await fetch(db, "SELECT 1 FROM imported LIMIT 1"))


async def with_origins(db: aiosqlite.Connection, rows: list[Reading]) -> list[Reading]:
    """`rows` with `origin` set on those an import took (looked up by local seq)."""
    if not rows:
        return rows
    found = dict(
        (local, (gw, seq))
        for gw, seq, local in await fetch(
            db,
            "SELECT gateway, seq, local FROM imported WHERE local BETWEEN ? AND ?",
            (min(r.seq for r in rows), max(r.seq for r in rows)),
        )
    )
    if not found:
        return rows
    return [r._replace(origin=found[r.seq]) if r.seq in found else r for r in rows]
