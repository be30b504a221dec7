"""The outbox against a real SQLite file: durability, leases, bounds, corruption, full disk."""

from __future__ import annotations

import os
import sqlite3

import pytest

from gateway.model import Lane, Reading
from gateway.outbox.store import Outbox


def make(outbox: Outbox, n: int, lane: Lane = Lane.TELEMETRY, device: str = "d1") -> list[Reading]:
    return [
        Reading(seq, device, "water_level", float(seq), "cm", 1_780_000_000.0 + seq, True, lane)
        for seq in outbox.allocate(n)
    ]


async def test_lease_ack_deletes_only_acked_rows(tmp_path):
    async with Outbox.open(tmp_path / "o.db") as ob:
        await ob.append(make(ob, 10))
        first = await ob.lease(Lane.TELEMETRY, 4)
        second = await ob.lease(Lane.TELEMETRY, 4)
        assert [r.seq for r in first] == [1, 2, 3, 4]
        assert [r.seq for r in second] == [5, 6, 7, 8]
        await ob.ack(second)
        assert await ob.count() == 6
        ob.release([r.seq for r in first])
        again = await ob.lease(Lane.TELEMETRY, 100)
        assert [r.seq for r in again] == [1, 2, 3, 4, 9, 10]


async def test_rows_and_sequence_survive_reopen(tmp_path):
    path = tmp_path / "o.db"
    async with Outbox.open(path) as ob:
        await ob.append(make(ob, 5))
        await ob.ack(await ob.lease(Lane.TELEMETRY, 5))
        await ob.append(make(ob, 3))
    async with Outbox.open(path) as ob:
        rows = await ob.lease(Lane.TELEMETRY, 10)
        assert [r.seq for r in rows] == [6, 7, 8]
        assert rows[0].value == 6.0 and rows[0].unit == "cm" and rows[0].synced
        await ob.ack(rows)
    async with Outbox.open(path) as ob:
        # Empty outbox: the high-water mark alone keeps numbers strictly increasing.
        assert list(ob.allocate(2)) == [9, 10]


async def test_value_types_round_trip(tmp_path):
    async with Outbox.open(tmp_path / "o.db") as ob:
        s = list(ob.allocate(4))
        await ob.append(
            [
                Reading(s[0], "t", "motion", True, "", 1.0),
                Reading(s[1], "t", "trap_state", "triggered", "", 1.0, False, Lane.ALERT),
                Reading(s[2], "t", "count", 7, "", 1.0),
                Reading(s[3], "t", "temperature", -3.25, "degC", 1.5),
            ]
        )
        got = {r.quantity: r for r in await ob.peek()}
        assert got["motion"].value is True
        assert got["trap_state"].value == "triggered" and got["trap_state"].lane == Lane.ALERT
        assert got["trap_state"].synced is False
        assert got["count"].value == 7 and not isinstance(got["count"].value, bool)
        assert got["temperature"].value == -3.25 and got["temperature"].ts == 1.5


async def test_bound_drops_oldest_telemetry_keeps_alerts_and_counts(tmp_path):
    async with Outbox.open(tmp_path / "o.db", max_rows=100) as ob:
        await ob.append(make(ob, 5, Lane.ALERT, "trap"))
        await ob.append(make(ob, 100))
        stats = ob.stats()
        assert stats.rows == 100
        assert stats.dropped["telemetry"] == 5 and stats.dropped["alert"] == 0
        alerts = await ob.lease(Lane.ALERT, 10)
        assert [r.seq for r in alerts] == [1, 2, 3, 4, 5]
        tele = await ob.lease(Lane.TELEMETRY, 1000)
        assert tele[0].seq == 11  # 6..10 were the oldest telemetry
    async with Outbox.open(tmp_path / "o.db", max_rows=100) as ob:
        assert ob.stats().dropped["telemetry"] == 5  # persisted


async def test_alerts_dropped_only_when_no_telemetry_remains(tmp_path):
    async with Outbox.open(tmp_path / "o.db", max_rows=100) as ob:
        await ob.append(make(ob, 60))
        await ob.append(make(ob, 60, Lane.ALERT, "trap"))
        assert ob.stats().by_lane == {"alert": 60, "mail": 0, "telemetry": 40}
        await ob.append(make(ob, 50, Lane.ALERT, "trap"))
        stats = ob.stats()
        assert stats.by_lane["telemetry"] == 0
        assert stats.dropped == {"alert": 10, "mail": 0, "telemetry": 60}


async def test_newest_telemetry_policy_keeps_history(tmp_path):
    async with Outbox.open(tmp_path / "o.db", max_rows=100, drop_policy="newest-telemetry") as ob:
        await ob.append(make(ob, 100))
        await ob.append(make(ob, 10))
        kept = await ob.lease(Lane.TELEMETRY, 1000)
        assert kept[0].seq == 1 and len(kept) == 100 and ob.stats().dropped["telemetry"] == 10


async def test_byte_bound(tmp_path):
    async with Outbox.open(tmp_path / "o.db", max_bytes=64 * 1024) as ob:
        for _ in range(20):
            await ob.append(make(ob, 200))
        assert ob.stats().bytes <= 64 * 1024
        assert ob.stats().dropped["telemetry"] > 0


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
async def test_corrupt_file_is_quarantined_and_fresh_one_used(tmp_path, damage):
    path = tmp_path / "o.db"
    async with Outbox.open(path) as ob:
        await ob.append(make(ob, 2000))
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"this is not sqlite" * 100)
    else:
        path.write_bytes(data[: len(data) // 3])
    async with Outbox.open(path) as ob:
        stats = ob.stats()
        assert stats.quarantined is not None and ".corrupt-" in stats.quarantined
        assert os.path.exists(stats.quarantined)
        await ob.append(make(ob, 3))
        assert await ob.count() == 3


async def test_full_disk_buffers_in_memory_and_recovers(tmp_path):
    path = tmp_path / "o.db"
    async with Outbox.open(path, hard_limit_bytes=64 * 1024, memory_rows=5000) as ob:
        for _ in range(30):
            await ob.append(make(ob, 100))  # never raises, even past the cap
        stats = ob.stats()
        assert stats.disk_full and stats.memory_rows > 0
        total = await ob.count()
        assert total == 3000 and stats.dropped["telemetry"] == 0
        # A live link keeps draining: leases include buffered rows.
        leased = await ob.lease(Lane.TELEMETRY, 5000)
        assert [r.seq for r in leased] == list(range(1, 3001))
        await ob.ack(leased[:100])
        ob.release_all()
        await ob.set_hard_limit(0)  # space returns
        await ob.append(make(ob, 1))
        stats = ob.stats()
        assert not stats.disk_full and stats.memory_rows == 0
        assert await ob.count() == 2901
    async with Outbox.open(path) as ob:
        assert await ob.count() == 2901  # the buffered rows reached the disk


async def test_memory_buffer_is_bounded_and_counts_drops(tmp_path):
    async with Outbox.open(tmp_path / "o.db", hard_limit_bytes=32 * 1024, memory_rows=500) as ob:
        await ob.append(make(ob, 5, Lane.ALERT))
        for _ in range(20):
            await ob.append(make(ob, 100))
        stats = ob.stats()
        assert stats.memory_rows <= 500
        assert stats.dropped["telemetry"] > 0 and stats.dropped["alert"] == 0


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_file_shrinks_after_drain(tmp_path):
    path = tmp_path / "o.db"
    async with Outbox.open(path) as ob:
        for _ in range(50):
            await ob.append(make(ob, 1000))
        async with ob.db.execute("PRAGMA wal_checkpoint(TRUNCATE)"):
            pass
        full = path.stat().st_size
        while True:
            batch = await ob.lease(Lane.TELEMETRY, 5000)
            if not batch:
                break
            await ob.ack(batch)
        assert await ob.count() == 0
        assert path.stat().st_size < full / 5
        assert os.path.getsize(str(path) + "-wal") == 0


async def test_sync_full_is_set(tmp_path):
    async with Outbox.open(tmp_path / "o.db", sync="full") as ob:
        async with ob.db.execute("PRAGMA synchronous") as cur:
            assert (await cur.fetchone())[0] == 2  # FULL
        async with ob.db.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"
    assert sqlite3.connect(tmp_path / "o.db").execute("PRAGMA auto_vacuum").fetchone()[0] == 2


async def test_ack_of_rows_dropped_while_leased_keeps_counts_exact(tmp_path):
    async with Outbox.open(tmp_path / "o.db", max_rows=100) as ob:
        await ob.append(make(ob, 100))
        leased = await ob.lease(Lane.TELEMETRY, 50)  # seqs 1..50
        await ob.append(make(ob, 30))  # drops 1..30 while they are in flight
        await ob.ack(leased)
        stats = ob.stats()
        assert stats.rows == 80 == await ob.count()
        rest = await ob.lease(Lane.TELEMETRY, 1000)
        assert [r.seq for r in rest] == list(range(51, 131))
        await ob.ack(rest)
        assert ob.stats().rows == 0 and ob.stats().bytes == 0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_random_operations_match_a_simple_model(tmp_path, seed):
    """Leases (served from the in-memory tail or by SELECT) always hand out the oldest
    unleased rows of the lane, never a delivered one; counts stay exact."""
    import random

    rng = random.Random(seed)
    present: dict[int, Lane] = {}
    leased: set[int] = set()
    tail_limit = rng.choice([5, 50, 50_000])
    async with Outbox.open(tmp_path / "o.db", max_rows=10_000, tail_limit=tail_limit) as ob:
        for _ in range(300):
            op = rng.random()
            if op < 0.35:
                lane = rng.choice([Lane.TELEMETRY, Lane.TELEMETRY, Lane.ALERT])
                new = make(ob, rng.randint(1, 30), lane)
                await ob.append(new)
                present.update((r.seq, lane) for r in new)
            elif op < 0.7:
                lane = rng.choice([Lane.TELEMETRY, Lane.ALERT])
                limit = rng.randint(1, 40)
                got = await ob.lease(lane, limit)
                want = sorted(s for s, ln in present.items() if ln == lane and s not in leased)
                assert [r.seq for r in got] == want[:limit]
                leased.update(r.seq for r in got)
            elif op < 0.85 and leased:
                done = rng.sample(sorted(leased), rng.randint(1, len(leased)))
                await ob.ack(
                    [
                        Reading(s, "d1", "water_level", 0.0, "cm", 0.0, True, present[s])
                        for s in done
                    ]
                )
                for s in done:
                    present.pop(s)
                    leased.discard(s)
            elif op < 0.95 and leased:
                back = rng.sample(sorted(leased), rng.randint(1, len(leased)))
                ob.release(back)
                leased.difference_update(back)
            else:
                ob.release_all()
                leased.clear()
            assert await ob.count() == len(present)
        assert ob.stats().by_lane["alert"] == sum(1 for ln in present.values() if ln == Lane.ALERT)


async def test_pipeline_sanitises_sources_and_refuses_non_finite_values(tmp_path):
    from gateway.clock import FixedClock
    from gateway.model import Observation
    from gateway.pipeline import Pipeline

    async with Outbox.open(tmp_path / "o.db") as ob:
        async with Pipeline(ob, clock=FixedClock(1.8e9, synced=False)) as pipe:
            await pipe.emit(
                "traps",
                [
                    Observation("trap_state", "triggered", "", source="7/#+ x"),
                    Observation("water_level", float("nan"), "cm"),
                    Observation("water_level", 5.0, "cm", plausible=False),
                ],
            )
        rows = await ob.peek()
        # NaN is refused; an implausible value is forwarded with its flag (issue 10).
        assert [(r.device, r.quantity, r.value, r.ts, r.synced, r.plausible) for r in rows] == [
            ("traps-7____x", "trap_state", "triggered", 1.8e9, False, True),
            ("traps", "water_level", 5.0, 1.8e9, False, False),
        ]
        # The sub-device's receiver is carried explicitly and survives the file.
        assert [(r.parent, r.sub) for r in rows] == [("traps", "7____x"), (None, None)]
        assert (pipe.implausible, pipe.refused) == (1, 1)


async def test_a_file_from_before_sub_device_parents_gets_the_column(tmp_path):
    """An outbox written by the previous schema (no `parent` column) opens, keeps its rows
    (without a parent) and takes new sub-device rows with theirs."""
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE outbox(seq INTEGER PRIMARY KEY, lane INTEGER NOT NULL, device TEXT NOT NULL,"
        " quantity TEXT NOT NULL, value, unit TEXT NOT NULL, ts REAL NOT NULL,"
        " flags INTEGER NOT NULL, size INTEGER NOT NULL);"
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "INSERT INTO outbox VALUES (1, 2, 'traps-7', 'rssi', -80, 'dBm', 1.8e9, 1, 60);"
        "INSERT INTO meta VALUES ('seq_hwm', 1);"
    )
    db.commit()
    db.close()
    async with Outbox.open(path) as ob:
        (seq,) = ob.allocate(1)
        assert seq == 2
        await ob.append([Reading(seq, "traps-8", "rssi", -70, "dBm", 1.8e9, parent="traps")])
        rows = await ob.peek()
    assert [(r.seq, r.device, r.parent) for r in rows] == [
        (1, "traps-7", None),
        (2, "traps-8", "traps"),
    ]


async def test_stamps_taken_before_ntp_are_corrected_when_the_clock_syncs(tmp_path):
    from gateway.clock import FixedClock
    from gateway.model import Observation
    from gateway.pipeline import Pipeline

    async with Outbox.open(tmp_path / "o.db") as ob:
        # A row from an earlier boot, never synchronised: nothing can correct it.
        (old,) = ob.allocate(1)
        await ob.append([Reading(old, "d1", "water_level", 1.0, "cm", 50.0, False)])
        clock = FixedClock(100.0, synced=False, mono=1000.0)  # a Pi without RTC: 1970
        async with Pipeline(ob, clock=clock) as pipe:
            await pipe.emit("d1", [Observation("water_level", 2.0, "cm")])
            await pipe.flush()  # this one is already in the outbox
            clock.t, clock.mono = 105.0, 1005.0
            await pipe.emit("d1", [Observation("water_level", 3.0, "cm")])  # still queued
            # NTP steps the wall clock: monotonic 1010 is really 1_800_000_010.
            clock.t, clock.mono, clock.is_synced = 1_800_000_010.0, 1010.0, True
            await pipe.emit("d1", [Observation("water_level", 4.0, "cm")])
        rows = {r.value: (r.ts, r.synced) for r in await ob.peek()}
        assert rows == {
            1.0: (50.0, False),
            2.0: (1_800_000_000.0, True),
            3.0: (1_800_000_005.0, True),
            4.0: (1_800_000_010.0, True),
        }
        assert pipe.clock_corrections == 1  # one row fixed on disk, one while queued
        leased = await ob.lease(Lane.TELEMETRY, 10)
        assert [r.ts for r in leased][1:] == [1_800_000_000.0, 1_800_000_005.0, 1_800_000_010.0]
