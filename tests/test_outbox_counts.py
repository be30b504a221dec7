"""The outbox's row counts: never the zeros of a half-done recount."""

from __future__ import annotations

import asyncio

from gateway.model import Lane, Reading
from gateway.outbox.counts import Counts
from gateway.outbox.database import connect
from gateway.outbox.rows import INSERT, to_row


async def test_a_recount_changes_the_counts_only_when_its_answer_is_in(tmp_path):
    # The uplink and `gateway status` read the counts while a recount's query runs (a dead
    # letter recounts); they saw 0 rows there once, and a test took the queue for empty.
    db = await connect(tmp_path / "o.db", "full")
    try:
        await db.executemany(
            INSERT, [to_row(Reading(s, "d", "q", 1.0, "u", 1.8e9 + s)) for s in range(1, 6)]
        )
        counts = Counts()
        await counts.recount(db)
        assert counts.total == 5 and counts.rows[Lane.TELEMETRY] == 5
        await db.execute("DELETE FROM outbox WHERE seq <= 2")
        seen: list[int] = []
        task = asyncio.create_task(counts.recount(db))
        while not task.done():
            seen.append(counts.total)
            await asyncio.sleep(0)
        assert set(seen) <= {5, 3}, seen  # the old count or the new one, never 0
        assert counts.total == 3 and counts.bytes > 0
    finally:
        await db.close()
