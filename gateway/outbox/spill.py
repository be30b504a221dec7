"""The bounded memory buffer that holds appended rows while the disk is full.

`full` is the condition (entered on SQLITE_FULL or the hard byte limit, left when a write
succeeds again), logged once each way. While it holds, the store adds batches here instead
of the file; the buffer keeps at most `limit` rows, dropping the oldest telemetry first and
alerts only when nothing else is left, and hands back what it dropped so the store can count
it. No I/O here: the store writes the buffer back when space returns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from gateway.model import Lane, Reading


class Spill:
    def __init__(self, limit: int, log: Any) -> None:
        self.limit = limit
        self.log = log
        self.full = False
        self._rows: deque[Reading] = deque()

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Reading]:
        """The buffered rows in the order they were added."""
        return iter(self._rows)

    def count(self, lane: Lane) -> int:
        return sum(1 for r in self._rows if r.lane == lane) if self._rows else 0

    # -- the condition -------------------------------------------------------------------------
    def enter(self, reason: str) -> None:
        """The file cannot be written; logged on the transition only."""
        if not self.full:
            self.full = True
            self.log.error(
                "outbox cannot write (disk full?); buffering in memory",
                reason=reason,
                memory_limit=self.limit,
            )

    def leave(self) -> None:
        """A write succeeded: the file takes rows again (logged on the transition only)."""
        if self.full:
            self.full = False
            self.log.warning("outbox writable again", buffered_rows=len(self._rows))

    # -- the rows --------------------------------------------------------------------------------
    def add(self, readings: Sequence[Reading]) -> list[Reading]:
        """Buffer `readings`; returns the rows dropped to stay within `limit`."""
        self._rows.extend(readings)
        dropped: list[Reading] = []
        while len(self._rows) > self.limit:
            # Drop the oldest telemetry first; alerts only when nothing else is left.
            victim = next((r for r in self._rows if r.lane == Lane.TELEMETRY), None)
            if victim is None:
                victim = self._rows[0]
            self._rows.remove(victim)
            dropped.append(victim)
        return dropped

    def discard(self, seqs: set[int]) -> None:
        """Rows delivered while buffered (acknowledged): they are never written."""
        if self._rows:
            kept = [r for r in self._rows if r.seq not in seqs]
            if len(kept) != len(self._rows):
                self._rows = deque(kept)

    def clear(self) -> None:
        """The buffered rows reached the file."""
        self._rows.clear()

    def shift_times(self, delta: float, since_seq: int) -> None:
        """Shift unsynchronised stamps from `since_seq` on by `delta` s, marking them synced."""
        self._rows = deque(
            r._replace(ts=r.ts + delta, synced=True) if r.seq >= since_seq and not r.synced else r
            for r in self._rows
        )
