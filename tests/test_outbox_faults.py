"""The outbox under faults, against real files: locks, permissions, damage, a full tmpfs.

Each test here failed on the code before issue 10 (see the README's Guarantees)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
import structlog

from gateway.errors import StoreLocked, StoreUnusable
from gateway.model import Lane, Reading
from gateway.outbox.store import Outbox
from tests.disk import needs_root, remount, tmpfs


def make(outbox: Outbox, n: int, lane: Lane = Lane.TELEMETRY) -> list[Reading]:
    return [
        Reading(seq, "d1", "water_level", float(seq), "cm", 1_780_000_000.0 + seq, True, lane)
        for seq in outbox.allocate(n)
    ]


def rows_in(path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM outbox").fetchone()[0]


def hold_write_lock(path) -> subprocess.Popen[str]:
    """Another process inside a write transaction on `path` until its stdin closes."""
    code = (
        "import sqlite3, sys\n"
        f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "db.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


@pytest.mark.slow  # SQLite waits 5 s for the lock before it gives up
async def test_a_locked_outbox_is_refused_not_quarantined(tmp_path):
    path = tmp_path / "outbox.sqlite"
    async with Outbox.open(path) as ob:
        await ob.append(make(ob, 9742))
    holder = hold_write_lock(path)
    try:
        with pytest.raises(StoreLocked) as err:
            async with Outbox.open(path):
                pass
        assert err.value.path == str(path) and "locked" in err.value.cause
    finally:
        holder.communicate("")
    assert sorted(p.name for p in tmp_path.iterdir() if ".corrupt" in p.name) == []
    assert rows_in(path) == 9742


async def test_a_second_outbox_on_one_file_is_refused(tmp_path):
    path = tmp_path / "outbox.sqlite"
    async with Outbox.open(path) as ob:
        await ob.append(make(ob, 10))
        with pytest.raises(StoreLocked) as err:
            async with Outbox.open(path):
                pass
        assert f"pid {os.getpid()}" in err.value.cause
        await ob.append(make(ob, 10))  # the first one is untouched
    assert rows_in(path) == 20


@needs_root
async def test_a_read_only_store_directory_is_a_clear_error_and_nothing_moves(tmp_path):
    with tmpfs(tmp_path / "store") as store:
        path = store / "outbox.sqlite"
        async with Outbox.open(path) as ob:
            await ob.append(make(ob, 100))
        (store / "bad.sqlite").write_bytes(b"not a database" * 100)
        before = sorted(p.name for p in store.iterdir())
        remount(store, "ro")
        try:
            for name in ("outbox.sqlite", "bad.sqlite"):
                with pytest.raises(StoreUnusable) as err:
                    async with Outbox.open(store / name):
                        pass
                assert "Read-only file system" in err.value.cause
            assert sorted(p.name for p in store.iterdir()) == before
        finally:
            remount(store, "rw")
        assert rows_in(path) == 100


async def test_seq_keeps_rising_across_a_real_quarantine(tmp_path):
    path = tmp_path / "outbox.sqlite"
    async with Outbox.open(path) as ob:
        await ob.append(make(ob, 9742))
    path.write_bytes(b"garbage" * 1000)
    async with Outbox.open(path) as ob:
        assert ob.stats().quarantined is not None
        fresh = make(ob, 3)
        await ob.append(fresh)
    assert fresh[0].seq > 9742
    async with Outbox.open(path) as ob:  # and on after a plain restart
        assert make(ob, 1)[0].seq > fresh[-1].seq


async def test_seq_survives_a_quarantine_of_a_file_from_before_the_claim(tmp_path):
    """A file written before the seq ceiling existed: the damaged file's own mark counts."""
    path = tmp_path / "outbox.sqlite"
    async with Outbox.open(path) as ob:
        await ob.append(make(ob, 5000))
    (tmp_path / "outbox.sqlite.seq").unlink()
    with sqlite3.connect(path) as db:  # damage a data page; the meta table stays readable
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage_pages(path, start=5, count=3)
    async with Outbox.open(path) as ob:
        assert ob.stats().quarantined is not None
        assert make(ob, 1)[0].seq > 5000


def damage_pages(path, *, start: int, count: int, page: int = 4096) -> None:
    with open(path, "r+b") as f:
        f.seek(start * page)
        f.write(os.urandom(count * page))


@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_outbox_full_logs_the_transition_a_periodic_count_and_the_end(tmp_path):
    now = [1000.0]
    with structlog.testing.capture_logs() as events:
        async with Outbox.open(
            tmp_path / "o.db", max_rows=100, log=structlog.get_logger(), monotonic=lambda: now[0]
        ) as ob:
            for _ in range(200):  # 2,000 rows into 100: every append drops
                await ob.append(make(ob, 10))
            now[0] += 61
            await ob.append(make(ob, 10))
            for _ in range(50):
                await ob.append(make(ob, 10))
            await ob.ack(await ob.lease(Lane.TELEMETRY, 50))
            await ob.append(make(ob, 10))  # fits: the episode ends
    drops = [e for e in events if "dropping" in e["event"]]
    assert [e["event"] for e in drops] == [
        "outbox full; dropping rows",
        "outbox full; still dropping rows",
        "outbox full: dropping stopped",
    ]
    assert drops[0]["dropped"] == {"telemetry": 10}
    assert drops[1]["dropped"] == {"telemetry": 1900} and drops[1]["seconds"] == 61
    assert drops[2]["dropped_total"] == 1910 + 500


async def test_files_are_created_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        async with Outbox.open(tmp_path / "store" / "outbox.sqlite") as ob:
            await ob.append(make(ob, 10))
            modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "store").iterdir()}
    finally:
        os.umask(old)
    assert set(modes) >= {
        "outbox.sqlite",
        "outbox.sqlite-wal",
        "outbox.sqlite-shm",
        "outbox.sqlite.seq",
        "outbox.sqlite.reserve",
    }
    assert set(modes.values()) == {0o600}, modes


async def fill_until_full(ob: Outbox, *, buffered: int) -> None:
    """Append until the disk is full and `buffered` rows wait in the memory buffer."""
    for _ in range(10_000):
        await ob.append(make(ob, 200))
        if ob.stats().disk_full and ob.stats().memory_rows >= buffered:
            return
    raise AssertionError(f"the disk never filled: {ob.stats()}")


async def drain(ob: Outbox) -> None:
    """What a live link does: lease and acknowledge until nothing is left (bounded)."""
    for _ in range(1000):
        batch = await ob.lease(Lane.TELEMETRY, 500)
        if not batch:
            return
        await ob.ack(batch)
        ob.release_all()  # an ack that could not delete leaves its rows to lease again


@needs_root
@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_a_full_disk_drains_and_the_file_shrinks(tmp_path):
    with tmpfs(tmp_path / "store") as store:
        path = store / "outbox.sqlite"
        async with Outbox.open(path, reserve_bytes=256 * 1024, memory_rows=50_000) as ob:
            await fill_until_full(ob, buffered=2000)
            on_disk, full_size = ob.rows, path.stat().st_size
            assert on_disk > 5000 and ob.stats().memory_rows >= 2000
            await drain(ob)
            assert await ob.count() == 0
            assert path.stat().st_size < full_size / 4
            assert os.path.getsize(f"{path}-wal") == 0
            await ob.append(make(ob, 10))  # the disk takes rows again
            assert not ob.stats().disk_full and ob.rows == 10
        assert rows_in(path) == 10


@needs_root
@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_a_full_disk_takes_the_delete_of_a_lease_larger_than_its_reserve(tmp_path):
    """One ack of every row on a full disk: its delete needs more WAL than the 256 KiB
    reserve holds, so it goes in pieces; every row leaves at once (before, none did, and the
    rows stayed until the session ended)."""
    with tmpfs(tmp_path / "store") as store:
        path = store / "outbox.sqlite"
        async with Outbox.open(path, reserve_bytes=256 * 1024, memory_rows=50_000) as ob:
            await fill_until_full(ob, buffered=200)
            assert ob.rows > 5000  # on disk (and 200 more in memory)
            lease = await ob.lease(Lane.TELEMETRY, await ob.count())
            await ob.ack(lease)
            assert await ob.count() == 0 and rows_in(path) == 0
            await ob.append(make(ob, 10))  # and the disk takes rows again
            assert not ob.stats().disk_full and ob.rows == 10


@needs_root
@pytest.mark.slow  # over half a second: a process, a peer or a wait
async def test_a_full_disk_drains_after_a_restart_and_buffered_rows_lost_are_logged(tmp_path):
    with tmpfs(tmp_path / "store") as store, structlog.testing.capture_logs() as events:
        path = store / "outbox.sqlite"
        log = structlog.get_logger()
        async with Outbox.open(path, reserve_bytes=256 * 1024, memory_rows=1000, log=log) as ob:
            await fill_until_full(ob, buffered=1000)
            for _ in range(10):  # the buffer overflows too
                await ob.append(make(ob, 200))
            on_disk, buffered = ob.rows, ob.stats().memory_rows
            lost_in_buffer = ob.stats().dropped["telemetry"]
            full_size = path.stat().st_size
        assert buffered == 1000 and lost_in_buffer > 0
        overflow = [e for e in events if e["event"] == "outbox memory buffer full; dropping rows"]
        assert len(overflow) == 1
        (closing,) = [e for e in events if e["event"].startswith("outbox closing with rows")]
        assert closing["lost"] == {"telemetry": 1000}
        assert closing["dropped_total"]["telemetry"] == lost_in_buffer + 1000
        async with Outbox.open(path, reserve_bytes=256 * 1024, log=log) as ob:  # still full
            assert ob.rows == on_disk
            await drain(ob)
            assert await ob.count() == 0
            assert path.stat().st_size < full_size / 4


async def test_salvage_of_a_file_that_is_no_database_at_all_is_an_error(tmp_path):
    from gateway.outbox.salvage import requeue

    bad = tmp_path / "outbox.sqlite.corrupt-x"
    bad.write_bytes(b"garbage" * 1000)
    async with Outbox.open(tmp_path / "outbox.sqlite") as ob:
        with pytest.raises(sqlite3.DatabaseError):
            await requeue(ob.db, ob.allocate, bad)
        assert await ob.count() == 0
