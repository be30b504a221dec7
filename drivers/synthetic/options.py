"""Synthetic bus and device options, parsed once from the config into frozen objects.

Bus keys: `seed` (the random patterns' seed, for repeatable runs). Device keys: `points` (an
array of tables: quantity, unit, pattern and its parameters), `replicas`, `count` (see the
package docstring). Every problem is recorded on the Section with its path; no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.synthetic.pattern import PATTERNS, Point
from gateway.contract import Options
from gateway.section import Section


@dataclass(frozen=True)
class BusOptions(Options):
    seed: int = 1


@dataclass(frozen=True)
class DeviceOptions(Options):
    points: tuple[Point, ...] = ()
    replicas: int = 1  # >= 1
    count: int = 0  # polls per device before it stops (0 = never)


def parse_bus(section: Section) -> BusOptions:
    return BusOptions(seed=section.integer("seed", 1))


def _values(p: Section) -> tuple[float | int | str, ...]:
    """A cycle pattern's values: numbers, booleans or strings (anything else is a problem)."""
    raw = p.value("values", ())
    if isinstance(raw, list | tuple) and all(isinstance(v, int | float | str) for v in raw):
        return tuple(raw)
    p.problem("values", f"expected an array of numbers, booleans or strings, got {raw!r}")
    return ()


def _point(p: Section) -> Point:
    pattern = p.text("pattern", "sine", choices=tuple(PATTERNS))
    point = Point(
        quantity=p.text("quantity"),
        unit=p.text("unit", ""),
        pattern=pattern,
        low=p.number("low", 0.0),
        high=p.number("high", 1.0),
        period=p.number("period", 3600.0, lo=0.001),
        values=_values(p),
        every=p.integer("every", 1, lo=1),
        decimals=p.integer("decimals", 2, lo=0, hi=9),
    )
    if pattern == "cycle" and not p.raw.get("values"):
        p.problem("values", "a cycle pattern needs a non-empty array of values")
    p.finish()
    return point


def parse_device(section: Section) -> DeviceOptions:
    return DeviceOptions(
        points=tuple(_point(p) for p in section.sections("points", required=True)),
        replicas=section.integer("replicas", 1, lo=1, hi=100_000),
        count=section.integer("count", 0, lo=0),
    )
