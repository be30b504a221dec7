"""Opening the outbox file, and moving it aside only when SQLite says it is damaged.

`open_checked` opens and verifies the file (`database.connect`). A file SQLite calls damaged
(not a database, malformed, failed `quick_check`) is renamed `<path>.corrupt-<UTC time>` with
its WAL, loudly, and a fresh one is started: never a crash loop. Anything else that stops the
open is someone else's business and is raised as our error, naming the file and the cause,
with every file left as it was: a lock (StoreLocked), a permission, a read-only disk, a damaged
file that cannot be moved aside (StoreUnusable), a full disk (StoreFull).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.errors import StoreFull, StoreLocked, StoreUnusable
from gateway.outbox.database import connect, describe, is_busy, is_corrupt, is_full, quarantine


async def open_checked(path: Path, sync: str, log: Any) -> tuple[aiosqlite.Connection, str | None]:
    """Open the file; a damaged one is moved aside (loudly) and a fresh one started.

    Returns the connection and where the damaged file went (None when it was sound).
    Anything else that stops the open (a lock, a permission, a read-only disk) raises."""
    try:
        return await connect(path, sync), None
    except PermissionError as exc:
        raise StoreUnusable(str(path), str(exc)) from None
    except sqlite3.Error as exc:
        if is_full(exc):
            raise StoreFull(f"{path}: {describe(exc)}") from None
        if is_busy(exc):
            raise StoreLocked(str(path), f"locked by another process: {describe(exc)}") from None
        if not is_corrupt(exc):
            raise StoreUnusable(str(path), describe(exc)) from None
        damage = describe(exc)
    try:
        quarantined = quarantine(path)
    except OSError as exc:
        raise StoreUnusable(
            str(path), f"damaged ({damage}) and cannot be moved aside: {exc.strerror or exc}"
        ) from None
    log.error(
        "outbox file is corrupt; moved aside and starting a fresh one",
        path=str(path),
        moved_to=quarantined,
        error=damage,
        salvage=f"gateway outbox salvage {quarantined}",
    )
    return await connect(path, sync), quarantined
