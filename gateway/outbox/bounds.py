"""The outbox's bounds and its drop policy: which rows leave, unsent, when it is over them.

Over the bound (rows or bytes), telemetry goes first (its oldest rows, or its newest with
`drop_policy="newest-telemetry"`), then mail, then alerts: an alert is never dropped while
telemetry remains. Each drop is counted in `meta` in the same transaction as the DELETE.
Runs in the SQLite thread inside the caller's transaction (`transaction.atomic`) and never
commits; it keeps no state and does not touch leases or counts: the store applies the
returned drops once the transaction has committed.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from gateway.model import Lane
from gateway.outbox import meta

OLDEST_TELEMETRY = "oldest-telemetry"
NEWEST_TELEMETRY = "newest-telemetry"
# The lanes in the order they give way; alerts last of all.
DROP_ORDER = (Lane.TELEMETRY, Lane.MAIL, Lane.ALERT)
# Mean row size assumed for an empty outbox (bytes), to turn a byte excess into rows.
_MEAN_ROW_GUESS = 64

# Per lane, the (seq, size) of each row dropped.
Dropped = dict[Lane, list[tuple[int, int]]]


@dataclass(frozen=True)
class Bounds:
    max_rows: int
    max_bytes: int
    drop_policy: str = OLDEST_TELEMETRY

    def enforce(
        self, conn: sqlite3.Connection, *, rows: int, nbytes: int, adding: int, adding_bytes: int
    ) -> Dropped:
        """Delete rows until `rows + adding` and `nbytes + adding_bytes` are within bounds.

        `rows` and `nbytes` are what the file holds before this batch. Returns the rows
        dropped per lane (only lanes that lost rows)."""
        over_rows = rows + adding - self.max_rows
        over_bytes = nbytes + adding_bytes - self.max_bytes
        dropped: Dropped = {}
        for lane in DROP_ORDER:
            if over_rows <= 0 and over_bytes <= 0:
                break
            # Estimate how many rows free enough bytes from the mean row size.
            mean = max(1, nbytes // max(1, rows)) if rows else _MEAN_ROW_GUESS
            want = max(over_rows, -(-over_bytes // mean), 1)
            gone = self._delete(conn, lane, want)
            if not gone:
                continue
            freed = sum(size for _, size in gone)
            rows -= len(gone)
            nbytes -= freed
            over_rows -= len(gone)
            over_bytes -= freed
            dropped[lane] = gone
            meta.add(conn, meta.dropped_key(lane), len(gone))
        return dropped

    def _delete(self, conn: sqlite3.Connection, lane: Lane, n: int) -> list[tuple[int, int]]:
        newest = self.drop_policy == NEWEST_TELEMETRY and lane == Lane.TELEMETRY
        order = "DESC" if newest else "ASC"
        gone = conn.execute(
            f"DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE lane = ? "
            f"ORDER BY seq {order} LIMIT ?) RETURNING seq, size",
            (int(lane), n),
        ).fetchall()
        return [(seq, size) for seq, size in gone]
