"""The pipeline's idle path: readings that trickle in share a commit, without losing the
durability contract (alerts go at once; closing writes what waits; a busy source is not held)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.clock import FixedClock
from gateway.model import Lane, Observation
from gateway.outbox.store import Outbox
from gateway.pipeline import TRICKLE_ROWS, Pipeline

LONG = 3600.0  # a commit delay no test waits out: what is appended was appended for a reason


async def until(pred: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not pred():
            await asyncio.sleep(0.01)


def level(v: float) -> list[Observation]:
    return [Observation("water_level", v, "cm")]


async def test_a_trickle_waits_for_company_and_an_alert_takes_it_along(tmp_path):
    appended: list[int] = []
    async with Outbox.open(tmp_path / "o.db") as ob:
        ob.listeners.append(lambda lanes: appended.append(ob.rows))
        async with Pipeline(ob, clock=FixedClock(1.8e9), commit_delay=LONG) as pipe:
            await pipe.emit("d1", level(1.0))
            await until(lambda: ob.rows == 1)  # the first after a quiet spell: flush_interval
            # The row is in once its commit is, a few loop turns before the flusher's flush
            # ends; what is staged in between still goes with that flush (by design). Wait for
            # its end (flush() queues behind it; nothing is pending, so it appends nothing).
            await pipe.flush()
            await pipe.emit("d1", level(2.0))
            await pipe.emit("d2", level(3.0))
            # Both wait for the commit delay; give the flusher every chance to write them.
            for _ in range(20):
                await asyncio.sleep(0)
            await asyncio.sleep(pipe.flush_interval * 4)
            assert ob.rows == 1 and len(appended) == 1
            pipe.stage("d1", level(99.0), lane=Lane.ALERT)  # an alert never waits...
            await until(lambda: ob.rows == 4)
            assert appended == [1, 4]  # ...and the waiting trickle goes in its transaction
            await pipe.emit("d3", level(4.0))
        # Closing writes what still waits: nothing staged is left in memory.
        assert ob.rows == 5
        assert [r.value for r in await ob.peek()] == [1.0, 2.0, 3.0, 99.0, 4.0]


async def test_a_busy_source_is_not_held_by_the_commit_delay(tmp_path):
    async with Outbox.open(tmp_path / "o.db") as ob:
        async with Pipeline(ob, clock=FixedClock(1.8e9), commit_delay=LONG) as pipe:
            await pipe.emit("d1", level(0.0))
            await until(lambda: ob.rows == 1)
            await pipe.emit("d1", level(1.0))  # a trickle: waits...
            # ...until a batch's worth arrives: a full batch is written at once.
            pipe.max_batch = TRICKLE_ROWS
            for i in range(TRICKLE_ROWS):
                await pipe.emit("d2", level(float(i)))
            await until(lambda: ob.rows == 1 + 1 + TRICKLE_ROWS)
            # After a big batch the next one gathers for flush_interval only, not the delay.
            pipe.max_batch = 5000
            await pipe.emit("d3", level(7.0))
            await until(lambda: ob.rows == 2 + TRICKLE_ROWS + 1)
