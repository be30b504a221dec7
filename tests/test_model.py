"""The value types: Observation and Reading are NamedTuples that hot paths build field by field."""

from __future__ import annotations

import itertools

import pytest

from gateway.model import Lane, Observation, Reading
from gateway.outbox.rows import from_row, to_row

# gateway.pipeline (stamping) and gateway.outbox.database (reading rows back) build a Reading
# as `tuple.__new__(Reading, every_field_in_order)`: a field added, removed or moved must
# change them too, and fails here first.
READING_FIELDS = (
    "seq",
    "device",
    "quantity",
    "value",
    "unit",
    "ts",
    "synced",
    "lane",
    "parent",
    "plausible",
    "origin",
)


def test_the_fields_the_hot_constructors_build_in_order() -> None:
    assert Reading._fields == READING_FIELDS
    assert Reading._field_defaults == {
        "synced": True,
        "lane": Lane.TELEMETRY,
        "parent": None,
        "plausible": True,
        "origin": None,
    }
    assert Observation._fields == ("quantity", "value", "unit", "source", "plausible")
    assert Observation._field_defaults == {"source": None, "plausible": True}


@pytest.mark.parametrize(
    "obj", [Observation("q", 1.0, "u"), Reading(1, "d", "q", 1.0, "u", 2.0)], ids=type
)
def test_values_are_immutable_hashable_and_equal_by_value(obj: Observation | Reading) -> None:
    with pytest.raises(AttributeError):
        setattr(obj, "value", 2.0)  # noqa: B010  # the point: no field can be set
    twin = type(obj)(*obj)
    assert twin == obj and hash(twin) == hash(obj) and twin is not obj
    assert obj._replace(value=2.0).value == 2.0 and obj.value == 1.0


def test_a_required_field_missing_is_refused() -> None:
    with pytest.raises(TypeError):
        Reading(1, "d", "q", 1.0, "u")  # type: ignore[call-arg]  # the point: ts is missing


@pytest.mark.parametrize(
    ("value", "synced", "lane", "parent", "plausible"),
    list(
        itertools.product(
            [1.5, 0, -7, True, False, "set", ""],
            [True, False],
            list(Lane),
            [None, "traps"],
            [True, False],
        )
    ),
)
def test_a_row_reads_back_as_the_reading_it_stored(
    value: float | int | str | bool, synced: bool, lane: Lane, parent: str | None, plausible: bool
) -> None:
    device = "dev" if parent is None else f"{parent}-12"
    r = Reading(7, device, "q", value, "u", 1_700_000_000.25, synced, lane, parent, plausible)
    row = to_row(r)
    # The file returns the columns SELECT names: seq, lane, device, quantity, value, unit,
    # ts, flags, parent (SQLite stores a bool as 0/1).
    stored = (*row[:4], int(value) if isinstance(value, bool) else value, *row[5:8], parent)
    back = from_row(stored)
    assert back == r
    assert type(back) is Reading and type(back.value) is type(value) and back.lane is lane
    assert back.sub == (None if parent is None else "12")
