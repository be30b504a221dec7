"""The uplink's read-ahead (gateway.uplink.readahead): one query for several small batches,
oldest first, bounded, failures surfaced, nothing kept after `clear`."""

from __future__ import annotations

import asyncio

import pytest

from gateway.model import Lane, Reading
from gateway.uplink.readahead import AHEAD_ROWS, ReadAhead
from gateway.uplink.triage import Triage


def _rows(start: int, n: int) -> list[Reading]:
    return [
        Reading(s, "d", "q", float(s), "u", 1.0, True, Lane.TELEMETRY)
        for s in range(start, start + n)
    ]


class Queue:
    """A fake outbox lane: `lease(n)` hands out the next n of `total` rows (optionally only
    after `gate` is set, or raising `error`)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.next = 1
        self.calls: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: Exception | None = None
        self.cancelled = False
        self.encoded: list[list[int]] = []

    async def lease(self, n: int) -> list[Reading]:
        self.calls.append(n)
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.error is not None:
            raise self.error
        take = max(0, min(n, self.total - self.next + 1))
        rows = _rows(self.next, take)
        self.next += take
        return rows

    async def encode(self, rows: list[Reading]) -> Triage:
        self.encoded.append([r.seq for r in rows])
        return Triage(rows=list(rows))


def _ahead(q: Queue) -> tuple[ReadAhead, list[int]]:
    kicks: list[int] = []
    return ReadAhead(q.lease, q.encode, on_ready=lambda: kicks.append(1)), kicks


async def _settle(ra: ReadAhead) -> None:
    while ra.refilling:
        await asyncio.sleep(0)


async def test_small_batches_are_leased_in_one_query_and_come_out_oldest_first() -> None:
    q = Queue(10_000)
    ra, kicks = _ahead(q)
    ra.refill(200)
    await _settle(ra)
    assert q.calls == [AHEAD_ROWS]  # one query for all of them
    assert kicks == [1]  # the pump hears that they are ready
    assert ra.rows == AHEAD_ROWS
    seen: list[int] = []
    while (batch := await ra.take()) is not None:
        rows, triage, limit = batch
        assert limit == 200 and len(rows) == 200 and triage.rows == rows
        seen += [r.seq for r in rows]
    assert seen == list(range(1, AHEAD_ROWS + 1))  # oldest first, none twice
    assert [len(e) for e in q.encoded] == [200] * (AHEAD_ROWS // 200)  # encoded per batch
    assert not ra and ra.rows == 0


async def test_an_odd_batch_size_leases_whole_batches_and_a_dry_queue_gives_a_short_last() -> None:
    q = Queue(450)
    ra, _ = _ahead(q)
    ra.refill(300)
    await _settle(ra)
    assert q.calls == [300 * (AHEAD_ROWS // 300)]  # whole batches only
    sizes = []
    while (batch := await ra.take()) is not None:
        sizes.append(len(batch[0]))
    assert sizes == [300, 150]  # the queue ran dry: the last batch is short


async def test_a_large_lease_is_one_batch() -> None:
    q = Queue(100_000)
    ra, _ = _ahead(q)
    ra.refill(20_000)
    await _settle(ra)
    assert q.calls == [20_000]
    batch = await ra.take()
    assert batch is not None and len(batch[0]) == 20_000
    assert await ra.take() is None


async def test_a_second_query_only_when_half_a_read_ahead_or_less_is_left_and_none_runs() -> None:
    q = Queue(10_000)
    ra, _ = _ahead(q)
    q.gate.clear()
    ra.refill(200)
    await asyncio.sleep(0)
    ra.refill(200)  # one runs
    assert q.calls == [AHEAD_ROWS]
    q.gate.set()
    await _settle(ra)
    ra.refill(200)  # all of it waits
    await asyncio.sleep(0)
    assert q.calls == [AHEAD_ROWS]
    taken: list[int] = []
    while True:
        batch = await ra.take()
        assert batch is not None
        taken += [r.seq for r in batch[0]]
        left = ra.rows
        ra.refill(200)
        await asyncio.sleep(0)
        if left > AHEAD_ROWS // 2:
            assert len(q.calls) == 1  # more than half still waits: no query
        else:
            assert len(q.calls) == 2 and left > 0  # the next query, while the rest goes out
            break
    await _settle(ra)
    assert q.calls == [AHEAD_ROWS, AHEAD_ROWS]
    assert ra.rows <= AHEAD_ROWS * 3 // 2  # bounded: one and a half read-aheads
    while (batch := await ra.take()) is not None:
        taken += [r.seq for r in batch[0]]
    assert taken == list(range(1, 2 * AHEAD_ROWS + 1))  # in order across the two queries


async def test_take_waits_for_a_running_refill_and_a_cancelled_taker_does_not_stop_it() -> None:
    q = Queue(1_000)
    ra, _ = _ahead(q)
    q.gate.clear()
    ra.refill(200)
    taker = asyncio.create_task(ra.take())
    await asyncio.sleep(0.01)
    assert not taker.done()  # waiting for the query
    taker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taker
    assert ra.refilling and not q.cancelled  # the lease itself goes on
    q.gate.set()
    batch = await ra.take()
    assert batch is not None and [r.seq for r in batch[0]] == list(range(1, 201))


async def _failed(error: Exception) -> tuple[Queue, ReadAhead, list[int]]:
    """A read-ahead whose one query failed with `error`."""
    q = Queue(1_000)
    q.error = error
    ra, kicks = _ahead(q)
    ra.refill(200)
    await _settle(ra)
    return q, ra, kicks


async def test_a_failed_refill_is_raised_to_the_pump_once() -> None:
    q, ra, kicks = await _failed(RuntimeError("disk I/O error"))
    assert kicks == [1]  # woken to see it
    with pytest.raises(RuntimeError, match="disk I/O error"):
        await ra.take()
    ra.check()  # raised once: the next session starts clean
    q.error = None
    ra.refill(200)
    await _settle(ra)
    assert ra.rows == AHEAD_ROWS


async def test_check_raises_a_failure_before_anyone_takes() -> None:
    _, ra, _ = await _failed(OSError("gone"))
    with pytest.raises(OSError, match="gone"):
        ra.refill(200)  # the pump's next look sees it


async def test_clear_cancels_a_running_query_and_forgets_what_was_prepared() -> None:
    q = Queue(10_000)
    ra, _ = _ahead(q)
    ra.refill(200)
    await _settle(ra)
    assert ra
    await ra.clear()
    assert not ra and ra.rows == 0 and await ra.take() is None
    q.gate.clear()
    ra.refill(200)
    await asyncio.sleep(0)
    await ra.clear()
    assert q.cancelled and not ra.refilling
    q.gate.set()
    assert await ra.take() is None  # nothing comes back from a cancelled query


async def test_clear_returns_a_failure_nobody_saw_and_nothing_otherwise() -> None:
    """At a session's end the pump no longer looks: the session logs what clear returns."""
    _, ra, _ = await _failed(OSError("disk I/O error"))
    lost = await ra.clear()
    assert isinstance(lost, OSError) and "disk I/O error" in str(lost)
    assert await ra.clear() is None  # returned once
    q = Queue(10_000)
    ra, _ = _ahead(q)
    ra.refill(200)
    await _settle(ra)
    assert await ra.clear() is None  # a refill that went well
    q.gate.clear()
    ra.refill(200)
    await asyncio.sleep(0)
    assert await ra.clear() is None and q.cancelled  # one we cancelled is no failure
