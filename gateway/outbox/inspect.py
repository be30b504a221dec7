"""Read-only queries on an outbox file for `gateway status`: rows per lane, the oldest
waiting reading, drops, dead letters, the last sequence number.

Opens the file read-only (sqlite3, `mode=ro`) beside a running daemon, which keeps writing
in WAL mode meanwhile. Never writes, never creates the file, never quarantines: a damaged
file raises sqlite3.Error for the caller to report.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from gateway.model import Lane
from gateway.outbox import deadletter, meta


@dataclass(frozen=True)
class LaneSummary:
    rows: int
    oldest_ts: float  # UTC seconds of the oldest waiting reading


@dataclass(frozen=True)
class OutboxSummary:
    lanes: dict[str, LaneSummary]  # by lane name; lanes with no rows are absent
    dropped: dict[str, int]  # persisted drop counters by lane name (zeros included)
    last_seq: int  # the sequence high-water mark
    file_bytes: int  # size of the main file (not the WAL)
    dead_letters: int = 0  # rows moved aside as unsendable (gateway.outbox.deadletter)

    @property
    def rows(self) -> int:
        return sum(lane.rows for lane in self.lanes.values())


def summary(path: Path) -> OutboxSummary | None:
    """The state of the outbox file at `path`; None when it does not exist (yet).

    Raises sqlite3.Error when the file cannot be read as an outbox."""
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        lanes = {
            Lane(lane).name.lower(): LaneSummary(count, oldest)
            for lane, count, oldest in db.execute(
                "SELECT lane, count(*), min(ts) FROM outbox GROUP BY lane"
            )
        }
        values: dict[str, int] = dict(db.execute(meta.SELECT_ALL))
        dead = deadletter.count_readonly(db)
    finally:
        db.close()
    return OutboxSummary(
        lanes=lanes,
        dropped=meta.drops(values),
        last_seq=values.get(meta.SEQ_HWM, 0),
        file_bytes=path.stat().st_size,
        dead_letters=dead,
    )
