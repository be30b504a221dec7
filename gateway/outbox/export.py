"""Reading an outbox's rows out, for `gateway outbox export`: a generator, no formatting of
files and no CLI.

`readings(path, ...)` yields the queued rows (a lane, a time window) in seq order from a
read-only connection (`mode=ro`), so it runs beside a daemon that keeps writing (WAL). It
reads `CHUNK` rows per query, resuming after the last seq seen (keyset, not OFFSET), so
memory stays constant for any number of rows and no read transaction stays open long enough
to hold back the daemon's checkpoints. Rows appended meanwhile with higher seqs are included;
rows acknowledged meanwhile may or may not be. `record(reading, gateway)` is one row as the
export writes it (`FIELDS`; time as `gateway.clock.iso`). Never writes the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.clock import iso
from gateway.model import Lane, Reading
from gateway.outbox.rows import SELECT, from_row

CHUNK = 5000  # rows per query: a few MB at most, and short read transactions
FIELDS = (
    "gateway",
    "seq",
    "lane",
    "device",
    "parent",
    "quantity",
    "value",
    "unit",
    "time",
    "synced",
    "plausible",
)


def _where(lane: Lane | None, since: float | None, until: float | None) -> tuple[str, list[Any]]:
    clauses: list[str] = ["seq > ?"]
    params: list[Any] = []
    if lane is not None:
        clauses.append("lane = ?")
        params.append(int(lane))
    if since is not None:
        clauses.append("ts >= ?")
        params.append(since)
    if until is not None:
        clauses.append("ts < ?")
        params.append(until)
    return " AND ".join(clauses), params


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection; sqlite3.Error when `path` is missing or not an outbox."""
    if not path.is_file():
        raise sqlite3.OperationalError(f"{path}: no such file")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    db.execute("SELECT seq FROM outbox LIMIT 0")  # not an outbox: raises here
    return db


def count(
    path: Path,
    lane: Lane | None = None,
    since: float | None = None,
    until: float | None = None,
) -> int:
    """How many rows `readings` would yield now (for a progress bar)."""
    where, params = _where(lane, since, until)
    db = connect(path)
    try:
        ((n,),) = db.execute(f"SELECT count(*) FROM outbox WHERE {where}", [0, *params])
    finally:
        db.close()
    return int(n)


def readings(
    path: Path,
    lane: Lane | None = None,
    since: float | None = None,
    until: float | None = None,
    *,
    chunk: int = CHUNK,
) -> Iterator[Reading]:
    """The rows of `lane` (all lanes when None) stamped in [since, until) (UTC seconds; None
    leaves that end open), in seq order. Raises sqlite3.Error when the file cannot be read."""
    where, params = _where(lane, since, until)
    sql = f"{SELECT} WHERE {where} ORDER BY seq LIMIT ?"
    db = connect(path)
    try:
        last = 0
        while True:
            rows = db.execute(sql, [last, *params, chunk]).fetchall()
            for row in rows:
                yield from_row(tuple(row))
            if len(rows) < chunk:
                return
            last = rows[-1][0]
    finally:
        db.close()


def record(r: Reading, gateway: str) -> dict[str, Any]:
    """One exported row: `FIELDS` in order, lane by name, time in ISO 8601 UTC."""
    return {
        "gateway": gateway,
        "seq": r.seq,
        "lane": r.lane.name.lower(),
        "device": r.device,
        "parent": r.parent,
        "quantity": r.quantity,
        "value": r.value,
        "unit": r.unit,
        "time": iso(r.ts),
        "synced": r.synced,
        "plausible": r.plausible,
    }
