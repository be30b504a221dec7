"""Telemetry leased and encoded ahead of the in-flight window: the uplink's read-ahead.

Why: while a backlog drains through a full window, the next batch should go the moment the
PUBACKs are in. Leasing it then would put a SELECT (behind the pipeline's appends on the
outbox's one SQLite thread, each commit an fsync) and the encoding between a PUBACK and the
next publish. So the session starts a refill while the PUBACKs travel: one lease, in a task of
its own, so the pump still publishes (and reads PUBACKs) while the query waits its turn. With
small batches (a latency-bound link: `inflight = 1`, each batch a round trip of its own) one
query leases several batches (`AHEAD_ROWS`), so a query stuck behind a long append costs one
wait per several round trips, not one per round trip (measured with bench/pressure.py's
`latency` setting at 4x offered: the lease waited up to 37 ms beside an 8 ms round).

Contract:
- At most one refill runs, and one starts only when half a read-ahead or less is ready: at
  most one and a half read-aheads are leased ahead. Batches come out oldest first, each the
  rows of one part of a lease (`size` rows, the last part shorter when the queue ran dry),
  already triaged (rows that can never be published went to the dead letters via `encode`).
- `take()` waits for a running refill when nothing is ready and re-raises its failure (a
  store fault is the pump's to handle, as if it had leased itself).
- `clear()` cancels a refill and forgets every batch: their rows stay leased until the
  session's `release_all` (call it first), so nothing is lost and nothing is sent twice. A
  failure nobody saw yet is returned, not raised (the session is over; its caller logs it).
Knows nothing of MQTT, the window or the outbox's file: two callables and a task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

from gateway.model import Reading
from gateway.uplink.triage import Triage

AHEAD_ROWS = 1_000  # rows one refill leases when batches are smaller (whole batches of them)

Prepared = tuple[list[Reading], Triage, int]  # a batch's rows, its messages, its lease limit


class ReadAhead:
    def __init__(
        self,
        lease: Callable[[int], Awaitable[list[Reading]]],
        encode: Callable[[list[Reading]], Awaitable[Triage]],
        on_ready: Callable[[], None],
    ) -> None:
        """`lease(n)` leases up to n telemetry rows; `encode(rows)` triages them (moving the
        unsendable to the dead letters); `on_ready()` is called when a refill ends."""
        self._lease = lease
        self._encode = encode
        self._on_ready = on_ready
        self._batches: deque[Prepared] = deque()
        self._task: asyncio.Task[None] | None = None

    def __bool__(self) -> bool:
        """A batch is ready to publish."""
        return bool(self._batches)

    @property
    def rows(self) -> int:
        """Rows held in ready batches (leased, not yet published)."""
        return sum(len(b[0]) for b in self._batches)

    @property
    def refilling(self) -> bool:
        return self._task is not None and not self._task.done()

    def refill(self, size: int) -> None:
        """Unless a refill runs or more than half a read-ahead is ready: lease ahead in the
        background, in batches of `size` rows (at least one batch, whole batches up to
        AHEAD_ROWS). Starting at half, not at empty, gives the query the time the rest takes
        to go out (a query waits its turn behind the appends)."""
        self.check()
        rows = size * max(1, AHEAD_ROWS // size)
        if self._task is not None or self.rows > rows // 2:
            return
        self._task = asyncio.create_task(self._fill(size, rows), name="uplink-read-ahead")

    async def _fill(self, size: int, limit: int) -> None:
        try:
            rows = await self._lease(limit)
            for i in range(0, len(rows), size):
                if i:  # between parts, the loop reads the PUBACKs that may be in meanwhile
                    await asyncio.sleep(0)
                part = rows[i : i + size]
                self._batches.append((part, await self._encode(part), size))
        finally:
            self._on_ready()

    def check(self) -> None:
        """Re-raise the failure of a finished refill (once); forget a finished one."""
        task = self._task
        if task is not None and task.done():
            self._task = None
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error

    async def take(self) -> Prepared | None:
        """The oldest ready batch, waiting for a running refill when none is; None when
        nothing was leased ahead."""
        if not self._batches and self._task is not None:
            await asyncio.wait([self._task])  # not `await task`: our cancel must not kill it
        self.check()
        return self._batches.popleft() if self._batches else None

    async def clear(self) -> Exception | None:
        """Stop a refill and forget what was prepared (the caller releases the leases).
        Returns the failure of a refill nobody saw (`check` not reached before the session
        ended), for the caller to log: it is not raised, the session is over."""
        task, self._task = self._task, None
        self._batches.clear()
        if task is None:
            return None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if not task.done() or task.cancelled():  # not done: we were cancelled while waiting
            return None
        error = task.exception()
        return error if isinstance(error, Exception) else None
