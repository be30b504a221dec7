"""The outbox file: its schema, rows <-> Readings, opening with checks, quarantine.

`connect` opens a file in WAL mode and verifies it (raising sqlite3.DatabaseError when it is
not a sound database) and adds columns a file from an older version lacks; `quarantine` moves
a bad one aside. Row helpers map a Reading to the columns of the `outbox` table and back
(`to_row`, `insert`, `from_row`, `row_size`); `fetch`, `cap_size` and `shrink` are the few
statements the store runs beyond those. No queue logic here: that is gateway.outbox.store.
"""

from __future__ import annotations

import itertools
import operator
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import aiosqlite

from gateway.model import Lane, Reading

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox(
    seq INTEGER PRIMARY KEY,
    lane INTEGER NOT NULL,
    device TEXT NOT NULL,
    quantity TEXT NOT NULL,
    value,
    unit TEXT NOT NULL,
    ts REAL NOT NULL,
    flags INTEGER NOT NULL,
    size INTEGER NOT NULL,
    parent TEXT  -- the configured device behind a sub-device's key; NULL for most rows
);
-- Alerts and mail are few: a partial index finds them without costing telemetry inserts
-- anything; telemetry (lane 2) is scanned in rowid order, which is seq order.
CREATE INDEX IF NOT EXISTS outbox_urgent ON outbox(lane, seq) WHERE lane != 2;
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- Rows the uplink can never publish, with why and when (UTC s): gateway.outbox.deadletter.
CREATE TABLE IF NOT EXISTS dead_letter(
    seq INTEGER PRIMARY KEY,
    lane INTEGER NOT NULL,
    device TEXT NOT NULL,
    quantity TEXT NOT NULL,
    value,
    unit TEXT NOT NULL,
    ts REAL NOT NULL,
    synced INTEGER NOT NULL,
    parent TEXT,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
-- The daily digest's figures (gateway.outbox.daybook): per device and quantity, one row per
-- chart bucket (UTC s at its start) with count, min, max, sum and the last value; the day's
-- alerts; and `closed`, the due time of the last digest queued. Rows before it are deleted.
CREATE TABLE IF NOT EXISTS daybook(
    device TEXT NOT NULL,
    quantity TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    unit TEXT NOT NULL,
    n INTEGER NOT NULL,
    low REAL NOT NULL,
    high REAL NOT NULL,
    total REAL NOT NULL,
    last REAL NOT NULL,
    last_ts REAL NOT NULL,
    PRIMARY KEY(device, quantity, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daybook_alerts(
    key TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    line TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS daybook_state(key TEXT PRIMARY KEY, value REAL NOT NULL);
"""
# Columns named: `parent` is last in a migrated file's table. A row of a configured device
# (nearly all) leaves `parent` out: binding a NULL for it costs about as much again as the
# rest of the insert (measured, SQLite 3.40 via the sqlite3 module).
INSERT = (
    "INSERT INTO outbox(seq, lane, device, quantity, value, unit, ts, flags, size) "
    "VALUES (?,?,?,?,?,?,?,?,?)"
)
INSERT_SUB = (
    "INSERT INTO outbox(seq, lane, device, quantity, value, unit, ts, flags, parent, size) "
    "VALUES (?,?,?,?,?,?,?,?,?,?)"
)
# Rows per multi-row INSERT: 9 values each, 900 in all, under the 999 variables older SQLite
# builds allow in one statement.
_GROUP = 100
_INSERT_GROUP = INSERT.replace(
    "VALUES (?,?,?,?,?,?,?,?,?)", "VALUES " + ",".join(["(?,?,?,?,?,?,?,?,?)"] * _GROUP)
)
_chain = itertools.chain.from_iterable
SELECT = "SELECT seq, lane, device, quantity, value, unit, ts, flags, parent FROM outbox"
# Files written before sub-devices carried their parent get the column on open; their old
# rows keep NULL (a sub-device row among them is published without its receiver's names).
_ADD_PARENT = "ALTER TABLE outbox ADD COLUMN parent TEXT"
# Bits of the `flags` column: stamped with a synchronised clock, a bool value, a value
# outside its plausibility range (Reading.plausible False).
_SYNCED, _BOOL, _IMPLAUSIBLE = 1, 2, 4
# Per-row overhead (record header, rowid, index entry) on top of the text and value bytes;
# measured on SQLite 3.40 with 1M small rows: ~38 B/row beyond the payload.
_ROW_OVERHEAD = 40
# SQLITE_FULL, and the I/O error class (SQLITE_IOERR and its extended codes) a full disk
# produces on WAL writes (sqlite3.h result codes).
_SQLITE_FULL, _SQLITE_IOERR = 13, 10
# What SQLite itself calls a damaged file (sqlite3.h): only these are ever quarantined.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
# Another connection holds the file (SQLITE_BUSY, SQLITE_LOCKED).
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


# Pages freed per step of `shrink` (4 KiB each: 256 KiB of WAL at most per step).
_VACUUM_STEP = 64


class CheckFailed(sqlite3.DatabaseError):
    """`PRAGMA quick_check` found damage in a file that opened."""


LANES = tuple(Lane)  # index -> Lane without the Enum call per row
_new_tuple = tuple.__new__


def row_size(r: Reading) -> int:
    """The `size` column `to_row` gives the row (the outbox's byte accounting)."""
    # Inline, not shared with to_row: this runs for every row appended and acknowledged.
    _, device, quantity, v, unit, _, _, _, parent, _, _ = r
    size = _ROW_OVERHEAD + len(device) + len(quantity) + len(unit)
    size += len(v.encode()) if isinstance(v, str) else 8
    return size if parent is None else size + len(parent)


_LANE_NUMBER = {lane: int(lane) for lane in Lane}


def to_row(r: Reading) -> tuple[Any, ...]:
    """The row for `insert`: 9 values, or 10 for a sub-device (its parent before the size);
    the row's size is always last."""
    # Runs for every reading appended: one unpack instead of nine attribute reads, and the
    # value's class compared before any isinstance (floats are nearly all of them).
    seq, device, quantity, v, unit, ts, synced, lane, parent, plausible, _ = r
    size = _ROW_OVERHEAD + len(device) + len(quantity) + len(unit)
    cls = v.__class__
    if cls is float or cls is int:
        flags = _SYNCED if synced else 0
        size += 8
    elif isinstance(v, str):
        flags = _SYNCED if synced else 0
        size += len(v.encode())
    else:  # a bool (or a subclass of int or float)
        flags = _BOOL if v is True or v is False else 0
        if synced:
            flags |= _SYNCED
        size += 8
    if not plausible:
        flags |= _IMPLAUSIBLE
    if parent is None:
        return (seq, _LANE_NUMBER[lane], device, quantity, v, unit, ts, flags, size)
    size += len(parent)
    return (seq, _LANE_NUMBER[lane], device, quantity, v, unit, ts, flags, parent, size)


async def insert(db: aiosqlite.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert `to_row` tuples: a sub-device's (with its parent) by the longer statement."""
    if all(len(row) == 9 for row in rows):
        await _insert_plain(db, rows)
        return
    await _insert_plain(db, [row for row in rows if len(row) == 9])
    await db.executemany(INSERT_SUB, [row for row in rows if len(row) == 10])


async def _insert_plain(db: aiosqlite.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    # Whole groups of `_GROUP` rows as one multi-row INSERT each: the sqlite3 module steps,
    # resets and hands the GIL back and forth once per statement, which per row was the
    # larger part of an insert (measured: ~1.55 -> ~0.95 us of the SQLite thread per row).
    whole = len(rows) - len(rows) % _GROUP
    if whole:
        await db.executemany(
            _INSERT_GROUP,
            [tuple(_chain(rows[i : i + _GROUP])) for i in range(0, whole, _GROUP)],
        )
    if whole < len(rows):
        await db.executemany(INSERT, rows[whole:])


def from_row(row: tuple[Any, ...]) -> Reading:
    seq, lane, device, quantity, value, unit, ts, flags, parent = row
    # Every field in Reading's order, the tuple built in one call (gateway.model says why):
    # this runs for every row a lease reads.
    return _new_tuple(
        Reading,
        (
            seq,
            device,
            quantity,
            value == 1 if flags & _BOOL else value,
            unit,
            ts,
            flags & _SYNCED == 1,
            LANES[lane],
            parent,
            not flags & _IMPLAUSIBLE,
            None,
        ),
    )


def rising(seqs: Sequence[int]) -> bool:
    """Each seq above the one before (compared in C, pair by pair)."""
    return all(map(operator.lt, seqs, seqs[1:]))


def runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted seqs as (first, last) runs of consecutive numbers."""
    first, last = seqs[0], seqs[-1]
    # An in-order ack is one run: strictly rising and as long as its span.
    if last - first + 1 == len(seqs) and rising(seqs):
        return [(first, last)]
    runs: list[tuple[int, int]] = []
    start = prev = seqs[0]
    for s in seqs[1:]:
        if s != prev + 1:
            runs.append((start, prev))
            start = s
        prev = s
    runs.append((start, prev))
    return runs


def is_corrupt(exc: sqlite3.Error) -> bool:
    """SQLite says the file is damaged (not a database, malformed, failed its check); a lock,
    a permission or an I/O problem is not."""
    if isinstance(exc, CheckFailed):
        return True
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def is_busy(exc: sqlite3.Error) -> bool:
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def describe(exc: sqlite3.Error) -> str:
    """The error as a log line shows it: SQLite's message and its code name."""
    name = getattr(exc, "sqlite_errorname", None)
    return f"{exc} ({name})" if name else str(exc)


def is_full(exc: sqlite3.Error) -> bool:
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code == _SQLITE_FULL or code & 0xFF == _SQLITE_IOERR
    return "full" in str(exc) or "disk I/O" in str(exc)


async def connect(path: Path, sync: str) -> aiosqlite.Connection:
    """Open, verify and take the write lock once; raises sqlite3.Error when that fails
    (`is_corrupt` tells a damaged file from a locked or read-only one) and PermissionError
    when the file or its WAL is not readable and writable by this user."""
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        _check_access(path.with_name(name))
    # Created here, 0600, rather than by SQLite (0644 less the umask): the WAL and shm files
    # take the main file's mode, so the whole outbox is private whatever the umask.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) so that one
    # batch is exactly one transaction and PRAGMAs run outside any.
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        # auto_vacuum must be chosen before the first table exists (SQLite docs, PRAGMA
        # auto_vacuum); it is a no-op on an existing file.
        await db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute(f"PRAGMA synchronous = {'FULL' if sync == 'full' else 'NORMAL'}")
        async with db.execute("PRAGMA quick_check") as cur:
            result = list(await cur.fetchall())
        if [tuple(r) for r in result] != [("ok",)]:
            raise CheckFailed(f"quick_check: {result[:3]}")
        # Take the write lock once: a file held by another process or opened read-only
        # fails here, at start, not at the first append.
        await db.execute("BEGIN IMMEDIATE")
        await db.execute("ROLLBACK")
        await db.executescript(SCHEMA)
        async with db.execute("PRAGMA table_info(outbox)") as cur:
            columns = {row[1] for row in await cur.fetchall()}
        if "parent" not in columns:
            await db.execute(_ADD_PARENT)
    except BaseException:
        await db.close()
        raise
    return db


def _check_access(path: Path) -> None:
    # SQLite opens a file it may not write read-only without a word; the first write would
    # then fail deep in the daemon. Open it for writing once to get the real reason.
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        st = path.stat()
        raise PermissionError(
            f"cannot open for writing: {exc.strerror} (uid {os.getuid()}; the file's owner "
            f"uid {st.st_uid}, mode {st.st_mode & 0o777:04o})"
        ) from None
    os.close(fd)


def quarantine(path: Path) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    path.rename(target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    return str(target)


async def fetch(
    db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    """Run one statement and return all its rows as plain tuples.

    The outbox's connection keeps sqlite3's default row factory, so rows are tuples;
    aiosqlite's annotations call them sqlite3.Row whatever the factory."""
    async with db.execute(sql, params) as cur:
        return cast(list[tuple[Any, ...]], await cur.fetchall())


async def cap_size(db: aiosqlite.Connection, limit_bytes: int) -> None:
    """Cap the file through SQLite's page budget (0 lifts the cap); beyond it a write fails
    exactly like on a full disk (SQLITE_FULL)."""
    ((page,),) = await fetch(db, "PRAGMA page_size")
    pages = max(1, limit_bytes // page) if limit_bytes else 2**31 - 2
    await db.execute(f"PRAGMA max_page_count = {int(pages)}")


async def checkpoint(db: aiosqlite.Connection) -> None:
    """Move every WAL page into the file and truncate the WAL to nothing."""
    await fetch(db, "PRAGMA wal_checkpoint(TRUNCATE)")


async def limit_wal(db: aiosqlite.Connection, pages: int) -> None:
    """Checkpoint automatically once the WAL holds `pages` pages, and cut it back to that
    size after each checkpoint (0 leaves SQLite's defaults)."""
    if pages:
        ((page,),) = await fetch(db, "PRAGMA page_size")
        await db.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")
        await db.execute(f"PRAGMA journal_size_limit = {int(pages) * page}")


async def shrink(db: aiosqlite.Connection) -> None:
    """Give a drained file's free pages back to the filesystem and truncate the WAL.

    In steps, with the WAL truncated between them, so that it works on a full disk: each
    step needs WAL space for `_VACUUM_STEP` pages only."""
    await fetch(db, "PRAGMA wal_checkpoint(TRUNCATE)")
    left = 2**63
    while True:
        ((free,),) = await fetch(db, "PRAGMA freelist_count")
        if not free or free >= left:  # done, or a file without incremental auto_vacuum
            return
        left = free
        # executescript steps the pragma to completion; a cursor frees one page a step.
        await db.executescript(f"PRAGMA incremental_vacuum({_VACUUM_STEP});")
        await fetch(db, "PRAGMA wal_checkpoint(TRUNCATE)")
