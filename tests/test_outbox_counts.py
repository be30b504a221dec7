"""The outbox's row and byte counts: never the zeros of a half-done recount, and always what
the file holds."""

from __future__ import annotations

import asyncio

from gateway.model import Lane, Reading
from gateway.outbox.counts import Counts
from gateway.outbox.database import connect
from gateway.outbox.rows import INSERT, row_size, rows_size, to_row
from gateway.outbox.store import Outbox


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


class _Name(str):
    """A text value of a str subclass (an enum-like decoder output)."""


def _varied(seqs: range) -> list[Reading]:
    # Every kind of value and key the size accounting distinguishes: float, int, bool, ASCII
    # and multi-byte text (its UTF-8 length, not its character count), a str subclass, a
    # sub-device (its parent counted), every lane.
    values: list[object] = [1.5, 7, True, False, "set", "水位計", _Name("press"), 0.0]
    out = []
    for i, s in enumerate(seqs):
        parent = "traps" if i % 3 == 0 else None
        device = f"traps-{i}" if parent else f"dev-{i % 4}"
        lane = tuple(Lane)[i % 2 * 2] if i % 5 else Lane.ALERT
        v = values[i % len(values)]
        out.append(
            Reading(
                s, device, f"q{i % 7}", v, "ünit" if i % 2 else "", 1.8e9 + s, True, lane, parent
            )
        )  # type: ignore[arg-type]
    return out


def test_a_batch_is_sized_as_its_rows_are():
    batch = _varied(range(1, 41))
    assert rows_size(batch) == sum(to_row(r)[-1] for r in batch)
    assert [row_size(r) for r in batch] == [to_row(r)[-1] for r in batch]
    assert rows_size([]) == 0


async def test_the_counts_follow_the_file_through_mixed_appends_and_acks(tmp_path):
    # The counts are kept by arithmetic on each commit, not read back: after batches of
    # mixed lanes and values, partly acknowledged (in and out of order, across lanes), they
    # must equal what the file holds.
    async with Outbox.open(tmp_path / "o.db") as ob:
        for _ in range(3):
            await ob.append(_varied(ob.allocate(40)))
        await ob.append(make_one_lane(ob, 30))
        leased = [r for lane in Lane for r in await ob.lease(lane, 1000)]
        await ob.ack(leased[5:40])  # a mixed-lane ack
        await ob.ack(leased[60:61] + leased[90:100])  # out of order, gaps
        await ob.ack([r for r in leased if r.lane == Lane.TELEMETRY][-20:])  # one lane
        kept = ob.stats()
        fresh = Counts()
        await fresh.recount(ob.db)
        assert (kept.rows, kept.bytes, kept.by_lane) == (fresh.total, fresh.bytes, fresh.by_lane())
        assert 0 < kept.rows < 150


def make_one_lane(ob: Outbox, n: int) -> list[Reading]:
    return [Reading(s, "d1", "water_level", float(s), "cm", 1.8e9 + s) for s in ob.allocate(n)]
