"""Rows of the outbox table <-> Readings: the columns a Reading is stored in, and back.

`to_row` gives a Reading's row (its byte size last, the outbox's accounting: `rows_size` sums
the same figure over a batch without building the rows, `row_size` is one row's), `insert`
writes rows (whole groups as one multi-row INSERT), `from_row` reads a `SELECT` row back;
`runs` and `rising` turn sorted seqs into the ranges `delete` takes. These run for every
reading appended, leased and acknowledged, so they are written for speed (each says where).
No I/O beyond `insert`'s and `delete`'s statements; no queue logic.
"""

from __future__ import annotations

import itertools
import operator
import sqlite3
from collections.abc import Sequence
from typing import Any

from gateway.model import DEVICE_OF, PARENT_OF, QUANTITY_OF, UNIT_OF, VALUE_OF, Lane, Reading

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
# Bits of the `flags` column: stamped with a synchronised clock, a bool value, a value
# outside its plausibility range (Reading.plausible False).
_SYNCED, _BOOL, _IMPLAUSIBLE = 1, 2, 4
# Per-row overhead (record header, rowid, index entry) on top of the text and value bytes;
# measured on SQLite 3.40 with 1M small rows: ~38 B/row beyond the payload.
_ROW_OVERHEAD = 40


LANES = tuple(Lane)  # index -> Lane without the Enum call per row
_new_tuple = tuple.__new__


def rows_size(readings: Sequence[Reading]) -> int:
    """The `size` columns `to_row` gives these rows, summed (the outbox's byte accounting of
    an acknowledged batch)."""
    # Field by field over the whole batch, each pass in C (a Python call per row was ~0.44 us
    # of the ack's; this is ~0.3): only the rare text values and parents take a Python step.
    size = sum(map(len, map(DEVICE_OF, readings)))
    size += sum(map(len, map(QUANTITY_OF, readings)))
    size += sum(map(len, map(UNIT_OF, readings)))
    texts = [v for v in map(VALUE_OF, readings) if isinstance(v, str)]
    size += (_ROW_OVERHEAD + 8) * len(readings) - 8 * len(texts)
    size += sum(len(v.encode()) for v in texts)
    return size + sum(len(p) for p in map(PARENT_OF, readings) if p is not None)


def row_size(r: Reading) -> int:
    """The `size` column `to_row` gives the row."""
    return rows_size((r,))


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


def insert(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert `to_row` tuples: a sub-device's (with its parent) by the longer statement.
    Runs in the SQLite thread, inside the caller's transaction (`transaction.atomic`)."""
    if all(len(row) == 9 for row in rows):
        _insert_plain(conn, rows)
        return
    _insert_plain(conn, [row for row in rows if len(row) == 9])
    conn.executemany(INSERT_SUB, [row for row in rows if len(row) == 10])


def _insert_plain(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    # Whole groups of `_GROUP` rows as one multi-row INSERT each: the sqlite3 module steps,
    # resets and hands the GIL back and forth once per statement, which per row was the
    # larger part of an insert (measured: ~1.55 -> ~0.95 us of the SQLite thread per row).
    whole = len(rows) - len(rows) % _GROUP
    if whole:
        conn.executemany(
            _INSERT_GROUP,
            [tuple(_chain(rows[i : i + _GROUP])) for i in range(0, whole, _GROUP)],
        )
    if whole < len(rows):
        conn.executemany(INSERT, rows[whole:])


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


def delete(conn: sqlite3.Connection, spans: Sequence[tuple[int, int]]) -> int:
    """Delete the rows in each (first, last) span of `runs`; how many there were. Runs in the
    SQLite thread, inside the caller's transaction (`transaction.atomic`)."""
    before = conn.total_changes
    conn.executemany("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", spans)
    return conn.total_changes - before
