"""The disk-full memory buffer (gateway.outbox.spill): its bound, what it drops, its condition."""

from __future__ import annotations

from typing import Any

from gateway.model import Lane, Reading
from gateway.outbox.spill import Spill

T, M, A = Lane.TELEMETRY, Lane.MAIL, Lane.ALERT


class RecordingLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def error(self, event: str, **kw: Any) -> None:
        self.events.append(("error", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.events.append(("warning", event, kw))


def rows(lane: Lane, *seqs: int, synced: bool = True) -> list[Reading]:
    return [Reading(s, "d1", "level", float(s), "cm", 100.0 + s, synced, lane) for s in seqs]


def seqs(readings) -> list[int]:
    return [r.seq for r in readings]


def test_within_the_bound_nothing_is_dropped():
    spill = Spill(5, RecordingLog())
    assert spill.add(rows(T, 1, 2, 3)) == [] and spill.add(rows(A, 4, 5)) == []
    assert len(spill) == 5 and seqs(spill) == [1, 2, 3, 4, 5]
    assert spill.count(T) == 3 and spill.count(A) == 2 and spill.count(M) == 0


def test_over_the_bound_the_oldest_telemetry_goes_first_then_the_oldest_of_the_rest():
    spill = Spill(4, RecordingLog())
    spill.add(rows(A, 1) + rows(T, 2) + rows(M, 3) + rows(T, 4))
    dropped = spill.add(rows(A, 5, 6))
    assert seqs(dropped) == [2, 4]  # both telemetry rows, oldest first; alert 1 stays
    assert seqs(spill) == [1, 3, 5, 6]
    dropped = spill.add(rows(A, 7))  # no telemetry left: the oldest row, an alert
    assert seqs(dropped) == [1]
    assert len(spill) == 4 and seqs(spill) == [3, 5, 6, 7]


def test_acknowledged_rows_leave_and_clear_empties():
    spill = Spill(10, RecordingLog())
    spill.add(rows(T, 1, 2, 3))
    spill.discard({2, 99})
    assert seqs(spill) == [1, 3]
    spill.clear()
    assert len(spill) == 0 and not spill


def test_shift_times_corrects_only_unsynchronised_rows_from_the_given_seq():
    spill = Spill(10, RecordingLog())
    spill.add(rows(T, 1, 2, synced=False) + rows(T, 3) + rows(T, 4, synced=False))
    spill.shift_times(1000.0, since_seq=2)
    assert [(r.seq, r.ts, r.synced) for r in spill] == [
        (1, 101.0, False),  # before the step: an earlier boot, nothing can correct it
        (2, 1102.0, True),
        (3, 103.0, True),  # already synchronised: untouched
        (4, 1104.0, True),
    ]


def test_the_condition_is_logged_once_each_way():
    log = RecordingLog()
    spill = Spill(10, log)
    spill.leave()  # not full: nothing to say
    spill.enter("database or disk is full")
    spill.enter("database or disk is full")
    assert spill.full
    spill.add(rows(T, 1, 2))
    spill.leave()
    spill.leave()
    assert not spill.full
    assert [(level, kw) for level, _, kw in log.events] == [
        ("error", {"reason": "database or disk is full", "memory_limit": 10}),
        ("warning", {"buffered_rows": 2}),
    ]
