"""Read-only inspection for `gateway status` (gateway.outbox.inspect) on real outbox files."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.model import Lane, Reading
from gateway.outbox import inspect
from gateway.outbox.store import Outbox


def make(ob: Outbox, n: int, lane: Lane, ts0: float) -> list[Reading]:
    return [
        Reading(seq, "d1", "level", 1.0, "cm", ts0 + i, True, lane)
        for i, seq in enumerate(ob.allocate(n))
    ]


def test_a_missing_file_is_none_and_is_not_created(tmp_path):
    path = tmp_path / "outbox.sqlite"
    assert inspect.summary(path) is None
    assert not path.exists()


async def test_rows_per_lane_oldest_drops_and_last_seq_beside_a_live_outbox(tmp_path):
    path = tmp_path / "outbox.sqlite"
    async with Outbox.open(path, max_rows=100) as ob:
        await ob.append(make(ob, 3, Lane.ALERT, 500.0))
        await ob.append(make(ob, 100, Lane.TELEMETRY, 1000.0))  # 3 oldest telemetry dropped
        await ob.ack(await ob.lease(Lane.ALERT, 1))
        # Read while the daemon's connection is open (WAL): committed rows are visible.
        box = inspect.summary(path)
        assert box is not None
        assert box.lanes == {
            "alert": inspect.LaneSummary(2, 501.0),
            "telemetry": inspect.LaneSummary(97, 1003.0),
        }
        assert box.rows == 99
        assert box.dropped == {"telemetry": 3}
        assert box.last_seq == 103
        assert box.file_bytes == path.stat().st_size > 0
    after = inspect.summary(path)
    assert after is not None and after.rows == 99 and after.dropped == {"telemetry": 3}


def test_a_damaged_file_raises_and_is_left_as_it_is(tmp_path):
    path = tmp_path / "outbox.sqlite"
    damage = b"this is not sqlite" * 100
    path.write_bytes(damage)
    with pytest.raises(sqlite3.Error):
        inspect.summary(path)
    assert path.read_bytes() == damage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.sqlite"]
