"""Lease bookkeeping and the tail cache (gateway.outbox.leases), without the store around them."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.model import Lane, Reading
from gateway.outbox import rows as outbox_rows
from gateway.outbox.database import connect, fetch
from gateway.outbox.leases import Leases
from gateway.outbox.rows import INSERT, SELECT, to_row
from gateway.outbox.store import Outbox
from gateway.outbox.transaction import atomic

T, A = Lane.TELEMETRY, Lane.ALERT


def rows(*seqs: int, lane: Lane = T) -> list[Reading]:
    return [Reading(s, "d1", "level", float(s), "cm", float(s), True, lane) for s in seqs]


def seqs(readings: list[Reading] | None) -> list[int] | None:
    return None if readings is None else [r.seq for r in readings]


def test_the_tail_serves_the_oldest_unleased_rows_after_the_cursor():
    leases = Leases()
    assert leases.from_tail(T, 10) is None  # nothing cached: the caller must SELECT
    leases.remember(rows(1, 2, 3, 4, 5))
    first = leases.from_tail(T, 2)
    assert seqs(first) == [1, 2]
    leases.grant(T, first or [])
    assert leases.cursor(T) == 2 and leases.count(T) == 2 and leases.count() == 2
    assert seqs(leases.from_tail(T, 10)) == [3, 4, 5]
    assert leases.from_tail(A, 10) is None  # lanes are apart


def test_a_trimmed_tail_does_not_answer_while_older_rows_are_unleased():
    leases = Leases(tail_limit=3)
    leases.remember(rows(1, 2, 3, 4, 5))  # the tail keeps 3, 4, 5
    assert leases.from_tail(T, 10) is None  # 1 and 2 are only in the file
    leases.grant(T, rows(1, 2))
    assert seqs(leases.from_tail(T, 10)) == [3, 4, 5]


def test_released_rows_come_back_first_and_release_all_forgets_every_lease():
    leases = Leases()
    leases.remember(rows(1, 2, 3, 4, 5, 6))
    leases.grant(T, rows(1, 2, 3, 4))
    leases.release([2, 3])
    assert leases.cursor(T) == 1  # the next lease starts before the released rows
    assert seqs(leases.from_tail(T, 10)) == [2, 3, 5, 6]  # 4 is still leased
    leases.release([])  # no-op
    assert leases.cursor(T) == 1
    leases.release_all()
    assert leases.count() == 0 and leases.cursor(T) == 0
    assert seqs(leases.from_tail(T, 10)) == [1, 2, 3, 4, 5, 6]


def test_delivered_rows_end_their_lease_without_moving_the_cursor():
    leases = Leases()
    leases.remember(rows(1, 2, 3) + rows(4, lane=A))
    leases.grant(T, rows(1, 2))
    leases.grant(A, rows(4, lane=A))
    leases.end({2, 4})
    assert leases.count(T) == 1 and leases.count(A) == 0
    assert leases.cursor(T) == 2  # delivered rows are not leased again
    leases.forget(T, {2})
    assert seqs(leases.from_tail(T, 10)) == [3]


def test_forget_removes_acked_rows_from_anywhere_in_the_tail():
    leases = Leases()
    leases.remember(rows(1, 2, 3, 4, 5))
    leases.grant(T, rows(1, 2, 3, 4, 5))
    leases.forget(T, {1, 2})  # in order: from the front
    leases.forget(T, {4})  # out of order: from the middle
    leases.release([3, 5])
    assert seqs(leases.from_tail(T, 10)) == [3, 5]


@given(
    st.lists(st.integers(min_value=1, max_value=80), min_size=1, max_size=60, unique=True),
    st.lists(st.sets(st.integers(min_value=0, max_value=90), max_size=20), max_size=5),
)
def test_forget_leaves_exactly_the_rows_not_acknowledged_in_order(
    stored: list[int], acks: list[set[int]]
) -> None:
    # Acks come in any order (a drain's order holds some rows back), may name rows the tail
    # never had (from the file or the spill) or names twice: the tail must keep every other
    # row, in seq order, or a lease would send a row twice or skip one.
    _acknowledge_and_check(stored, acks)


@given(
    st.lists(st.integers(min_value=1, max_value=80), min_size=1, max_size=60, unique=True),
    st.lists(st.tuples(st.integers(0, 90), st.integers(1, 40)), max_size=5),
)
def test_forget_of_runs_leaves_exactly_the_rows_not_acknowledged(
    stored: list[int], runs: list[tuple[int, int]]
) -> None:
    # Nearly every ack is one run of seqs (a lease's, in order): the tail drops its prefix
    # without a look at each row, which is right only when that prefix lies inside the run
    # (a run may start below the tail, inside it, or past rows it still holds).
    _acknowledge_and_check(stored, [set(range(low, low + n)) for low, n in runs])


def _acknowledge_and_check(stored: list[int], acks: list[set[int]]) -> None:
    """The tail holds `stored`, all leased; `acks` end and forget in turn: the tail keeps
    exactly the rows no ack named, in seq order."""
    leases = Leases()
    leases.remember(rows(*sorted(stored)))
    leases.grant(T, rows(*sorted(stored)))
    for acked in acks:
        leases.end(acked)
        leases.forget(T, acked)
    left = [s for s in sorted(stored) if not any(s in a for a in acks)]
    leases.release(left)
    assert seqs(leases.from_tail(T, 1000) or []) == left


def test_dropped_rows_lose_their_lease_and_their_tail_copy():
    leases = Leases()
    leases.remember(rows(1, 2, 3, 4))
    leases.grant(T, rows(1, 2))
    leases.drop(T, {2, 3})
    assert leases.count(T) == 1  # 1 is still in flight
    assert seqs(leases.from_tail(T, 10)) == [4]  # never the dropped 3
    leases.discard(T, 99)  # a spill row never leased: no-op
    leases.discard(T, 1)  # a leased row dropped from the spill
    assert leases.count() == 0


def test_rows_out_of_order_empty_the_tail_so_leases_use_sql():
    leases = Leases()
    leases.remember(rows(5, 6))
    leases.remember(rows(3))  # written back from the spill after newer rows
    assert leases.from_tail(T, 10) is None  # the tail holds only 3; 1..2 may be unleased
    leases.grant(T, rows(1, 2))
    assert seqs(leases.from_tail(T, 10)) == [3]  # 5 and 6 are no longer cached
    leases.clear_tail()
    assert leases.from_tail(T, 10) is None


def test_top_up_adds_only_unleased_rows_of_the_lane_not_already_taken():
    leases = Leases()
    leases.grant(T, rows(2))
    out = rows(1)
    spill = rows(1, 2, 3) + rows(4, lane=A) + rows(5, 6)
    leases.top_up(T, out, spill, limit=3)
    assert seqs(out) == [1, 3, 5]


async def test_pick_rows_skips_leased_file_rows_and_stops_at_the_limit(tmp_path):
    db = await connect(tmp_path / "o.db", "full")
    try:
        await db.executemany(INSERT, [to_row(r) for r in rows(1, 2, 3, 4, 5)])
        leases = Leases()
        leases.grant(T, rows(2, 3))
        picked = leases.pick_rows(T, await fetch(db, f"{SELECT} ORDER BY seq"), 2)
        assert seqs(picked) == [1, 4]
        assert picked[0].value == 1.0 and picked[0].unit == "cm"
    finally:
        await db.close()


def test_only_leases_a_release_left_past_the_cursor_count_as_beyond_it():
    leases = Leases()
    leases.grant(T, rows(1, 2, 3))
    leases.grant(T, rows(4, 5, 6))  # a drain: one lease in flight while the next is read
    assert leases.beyond(T) == 0  # nothing leased past the cursor: no extra rows to fetch
    leases.release([1, 2, 3])  # the first batch failed: the cursor goes back before it
    assert leases.cursor(T) == 0 and leases.beyond(T) == 3  # 4, 5, 6 must be skipped
    leases.grant(T, rows(1, 2))
    assert leases.beyond(T) == 3  # still past the cursor (2)
    leases.end({5})
    assert leases.beyond(T) == 2
    leases.grant(T, rows(3))
    assert leases.cursor(T) == 3 and leases.beyond(T) == 2  # 4 and 6
    leases.release([4])
    assert leases.cursor(T) == 3 and leases.beyond(T) == 1  # 6
    leases.release_all()
    assert leases.beyond(T) == 0


async def test_a_lease_after_a_release_skips_rows_still_leased_past_the_cursor(tmp_path):
    # The file path (no tail): released rows come back first and rows still in flight past
    # them are never leased twice, nor do they make a lease come back short.
    async with Outbox.open(tmp_path / "o.db", tail_limit=0) as ob:
        await ob.append([Reading(s, "d", "q", float(s), "cm", 1.8e9 + s) for s in ob.allocate(30)])
        first = await ob.lease(T, 10)
        second = await ob.lease(T, 10)
        assert seqs(first) == list(range(1, 11)) and seqs(second) == list(range(11, 21))
        ob.release(s.seq for s in first)
        again = await ob.lease(T, 15)
        assert seqs(again) == list(range(1, 11)) + list(range(21, 26))
        assert seqs(await ob.lease(T, 15)) == [26, 27, 28, 29, 30]


@given(st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=40))
def test_runs_cover_exactly_the_seqs_given(values: list[int]) -> None:
    # An ack deletes by these runs: a run that covered a seq not acknowledged would delete a
    # row nobody delivered (the one-run shortcut must not take duplicates for a span).
    found = outbox_rows.runs(sorted(values))
    covered = {s for first, last in found for s in range(first, last + 1)}
    assert covered == set(values) and all(first <= last for first, last in found)
    if len(set(values)) == len(values):  # distinct seqs (an ack): separate runs, in order
        assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(found))


@pytest.mark.parametrize("n", [1, 99, 100, 101, 250])
async def test_insert_in_groups_stores_every_row_once_as_given(tmp_path, n: int) -> None:
    # outbox_rows.insert writes whole groups of rows as one multi-row INSERT and the rest one by
    # one; sub-device rows (a parent column) go by their own statement.
    given = [
        Reading(s, "d1", "level", float(s), "cm", float(s), s % 2 == 0, T)
        if s % 7
        else Reading(s, f"traps-{s}", "trap_state", "set", "", float(s), True, T, "traps")
        for s in range(1, n + 1)
    ]
    db = await connect(tmp_path / "o.db", "full")
    try:
        await atomic(db, outbox_rows.insert, [to_row(r) for r in given])
        back = [outbox_rows.from_row(tuple(r)) for r in await fetch(db, f"{SELECT} ORDER BY seq")]
        assert back == given
    finally:
        await db.close()
