"""Which rows of the outbox are leased, and the tail cache that serves most leases.

Leases live in memory only: a crash or `release_all()` makes every row leasable again (at
most the batches in flight are sent twice). Per lane, a cursor marks the newest seq handed
out, so the next lease starts after it; `release` moves it back. The tail is a copy of the
newest committed rows of each lane in seq order: in the steady state a lease is served from
it without a SELECT (the file stays the durable record).

No I/O here: the store runs the SQL and tells this bookkeeping what was written, leased,
delivered or dropped. It must not decide what is durable.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.model import LANE_OF, SEQ_OF, Lane, Reading
from gateway.outbox.rows import from_row, rising

TAIL_LIMIT = 50_000


class Leases:
    def __init__(self, tail_limit: int = TAIL_LIMIT) -> None:
        self.tail_limit = tail_limit
        self._leased: dict[Lane, set[int]] = {lane: set() for lane in Lane}
        self._cursor = dict.fromkeys(Lane, 0)
        # Leased rows past the cursor: none, unless a release moved the cursor back below rows
        # still leased. A lease SELECT skips them, so it fetches this many extra rows (not one
        # per row in flight: a drain has a whole lease in flight while it reads the next).
        self._beyond = dict.fromkeys(Lane, 0)
        self._tail: dict[Lane, deque[Reading]] = {lane: deque() for lane in Lane}

    # -- questions --------------------------------------------------------------------------
    def cursor(self, lane: Lane) -> int:
        """The newest seq of `lane` handed out since the last release; leases start after it."""
        return self._cursor[lane]

    def beyond(self, lane: Lane) -> int:
        """Leased rows of `lane` with a seq past its cursor (a lease must skip them)."""
        return self._beyond[lane]

    def _recount(self, lane: Lane) -> None:
        cursor = self._cursor[lane]
        self._beyond[lane] = sum(1 for s in self._leased[lane] if s > cursor)

    def count(self, lane: Lane | None = None) -> int:
        """Rows leased now (of one lane, or all)."""
        if lane is None:
            return sum(len(s) for s in self._leased.values())
        return len(self._leased[lane])

    # -- choosing what to hand out ------------------------------------------------------------
    def from_tail(self, lane: Lane, limit: int) -> list[Reading] | None:
        """Up to `limit` unleased rows of `lane` from the tail, oldest first; None when the
        tail cannot answer (rows older than it may still be unleased: the caller SELECTs)."""
        tail = self._tail[lane]
        cursor = self._cursor[lane]
        if not tail or cursor < tail[0].seq - 1:
            return None
        # Every row of the lane older than the tail is leased or gone: serve the tail.
        out: list[Reading] = []
        leased = self._leased[lane]
        start = bisect.bisect_right(tail, cursor, key=SEQ_OF)
        if not self._beyond[lane]:  # nothing past the cursor is leased: take the rows as they are
            return list(itertools.islice(tail, start, start + limit))
        # islice walks the deque from its start in C; tail[i] would walk its blocks per row.
        for r in itertools.islice(tail, start, None):
            if r.seq not in leased:
                out.append(r)
                if len(out) == limit:
                    break
        return out

    def pick_rows(self, lane: Lane, rows: Iterable[tuple[Any, ...]], limit: int) -> list[Reading]:
        """Up to `limit` of the file's `rows` (SELECT order) that are not leased, as Readings."""
        out: list[Reading] = []
        leased = self._leased[lane]
        for row in rows:
            if row[0] not in leased:
                out.append(from_row(row))
                if len(out) == limit:
                    break
        return out

    def top_up(self, lane: Lane, out: list[Reading], more: Iterable[Reading], limit: int) -> None:
        """Append to `out`, up to `limit`, the rows of `more` in `lane` neither leased nor
        already in `out` (the memory spill, which may repeat rows the file also holds)."""
        taken = {r.seq for r in out}
        leased = self._leased[lane]
        for r in more:
            if r.lane == lane and r.seq not in leased and r.seq not in taken:
                out.append(r)
                if len(out) == limit:
                    break

    def grant(self, lane: Lane, readings: Sequence[Reading]) -> None:
        """Mark `readings` (all of `lane`) leased."""
        if readings:
            seqs = list(map(SEQ_OF, readings))
            self._cursor[lane] = max(self._cursor[lane], max(seqs))
            self._leased[lane].update(seqs)
            if self._beyond[lane]:
                self._recount(lane)

    # -- giving back ---------------------------------------------------------------------------
    def release(self, seqs: Sequence[int]) -> None:
        """Give leased rows back (their publish failed); they are leased again, oldest first."""
        if not seqs:
            return
        low = min(seqs) - 1
        for lane in Lane:
            leased = self._leased[lane]
            before = len(leased)
            leased.difference_update(seqs)
            if len(leased) != before:
                self._cursor[lane] = min(self._cursor[lane], low)
                self._recount(lane)

    def release_all(self) -> None:
        for leased in self._leased.values():
            leased.clear()
        self._cursor = dict.fromkeys(Lane, 0)
        self._beyond = dict.fromkeys(Lane, 0)

    def end(self, seqs: Iterable[int]) -> None:
        """The rows were delivered: their leases end, in whichever lane (cursors stay)."""
        seqs = seqs if isinstance(seqs, set | list | tuple) else list(seqs)
        for lane, leased in self._leased.items():
            leased.difference_update(seqs)
            if self._beyond[lane]:
                self._recount(lane)

    def discard(self, lane: Lane, seq: int) -> None:
        """One row of `lane` left before it reached the file (dropped from the spill)."""
        self._leased[lane].discard(seq)
        if self._beyond[lane]:
            self._recount(lane)

    # -- the tail -----------------------------------------------------------------------------
    def remember(self, readings: Sequence[Reading], lanes: set[Lane] | None = None) -> None:
        """Rows just committed, in seq order within each lane (`lanes`: theirs, if known)."""
        lanes = set(map(LANE_OF, readings)) if lanes is None else set(lanes)
        # A batch of one lane in seq order (nearly all): joins the tail in one extend.
        if len(lanes) == 1 and rising(list(map(SEQ_OF, readings))):
            tail = self._tail[lanes.pop()]
            if tail and readings[0].seq <= tail[-1].seq:
                tail.clear()  # out of order (rows back from memory): leases use SQL again
            tail.extend(readings)
        else:
            for r in readings:
                tail = self._tail[r.lane]
                if tail and r.seq <= tail[-1].seq:
                    tail.clear()
                tail.append(r)
        for tail in self._tail.values():
            while len(tail) > self.tail_limit:
                tail.popleft()

    def forget(self, lane: Lane, seqs: set[int]) -> None:
        """Rows of `lane` left the file (acknowledged): drop them from the tail."""
        tail = self._tail[lane]
        if not tail or not seqs:
            return
        # The tail is in seq order, so every row of it an ack names lies in its prefix up to
        # the highest seq acknowledged: only that prefix is walked, however long the tail and
        # whatever it still holds before them (rows a drain's order holds back).
        low, top = min(seqs), max(seqs)
        end = bisect.bisect_right(tail, top, key=SEQ_OF)
        popleft = tail.popleft
        if top - low + 1 == len(seqs) and tail[0].seq >= low:
            # An in-order ack (nearly all): `seqs` is one run, and the prefix lies inside it,
            # so all of it goes, popped in C without a look at each row.
            deque(itertools.starmap(popleft, itertools.repeat((), end)), maxlen=0)
            return
        prefix = [popleft() for _ in range(end)]
        kept = [r for r in prefix if r.seq not in seqs]
        if kept:
            tail.extendleft(reversed(kept))

    def drop(self, lane: Lane, seqs: set[int]) -> None:
        """Rows of `lane` were dropped from the file over its bounds: no lease, no tail copy."""
        self._leased[lane].difference_update(seqs)
        if self._beyond[lane]:
            self._recount(lane)
        self.forget(lane, seqs)

    def clear_tail(self) -> None:
        """Cached copies are stale (stamps corrected on disk): leases use SQL again."""
        for tail in self._tail.values():
            tail.clear()
