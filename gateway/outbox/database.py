"""The outbox file: its schema, opening with checks, quarantine, maintenance.

`connect` opens a file in WAL mode and verifies it (raising sqlite3.DatabaseError when it is
not a sound database) and adds columns a file from an older version lacks; `quarantine` moves
a bad one aside; `is_full`/`is_corrupt`/`is_busy` classify SQLite's errors. `fetch`,
`cap_size`, `checkpoint`, `limit_wal` and `shrink` are the statements the store runs beyond
the rows' own (gateway.outbox.rows). No queue logic here: that is gateway.outbox.store.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import aiosqlite

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
# Files written before sub-devices carried their parent get the column on open; their old
# rows keep NULL (a sub-device row among them is published without its receiver's names).
_ADD_PARENT = "ALTER TABLE outbox ADD COLUMN parent TEXT"
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
    """Run one statement and return all its rows as plain tuples, in one hand-off to the
    SQLite thread (a cursor's execute, fetchall and close are three: a lease's SELECT waited
    in that thread's queue behind writes three times).

    The outbox's connection keeps sqlite3's default row factory, so rows are tuples;
    aiosqlite's annotations call them sqlite3.Row whatever the factory."""
    return cast(list[tuple[Any, ...]], await db.execute_fetchall(sql, params))


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
