"""Synthetic devices: configurable quantities, rates and value patterns, no hardware.

The spine (outbox, uplink, alerts) runs, is demonstrated and is benchmarked with these before
any real bus is attached. Bus transport name: `synthetic`. Device keys:

    points = [ { quantity = "water_level", unit = "cm", pattern = "sine",
                 low = 3.0, high = 6.0, period = 3600.0 },
               { quantity = "trap_state", pattern = "cycle",
                 values = ["set", "triggered"], every = 10 } ]
    replicas = 1     # N copies named <id>-000 .. <id>-(N-1) (idle and load benchmarks)
    count = 0        # stop after this many polls per device (0 = never)

`interval = 0` polls as fast as the outbox accepts (back-pressure), for throughput runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drivers.synthetic.pattern import PATTERNS, Point
from gateway.contract import Bus, BusConfig, BusContext, Decoder
from gateway.section import Section

TRANSPORTS = ("synthetic",)
PROTOCOLS: tuple[str, ...] = ()


def parse_bus(section: Section, transport: str) -> Any:
    return {"seed": section.integer("seed", 1)}


def parse_device(section: Section, transport: str) -> Any:
    points: list[Point] = []
    for p in section.sections("points", required=True):
        pattern = p.text("pattern", "sine", choices=tuple(PATTERNS))
        points.append(
            Point(
                quantity=p.text("quantity"),
                unit=p.text("unit", ""),
                pattern=pattern,
                low=p.number("low", 0.0),
                high=p.number("high", 1.0),
                period=p.number("period", 3600.0, lo=0.001),
                values=tuple(p.value("values", ()) or ()),
                every=p.integer("every", 1, lo=1),
                decimals=p.integer("decimals", 2, lo=0, hi=9),
            )
        )
        if pattern == "cycle" and not p.raw.get("values"):
            p.problem("values", "a cycle pattern needs a non-empty array of values")
        p.finish()
    return {
        "points": tuple(points),
        "replicas": section.integer("replicas", 1, lo=1, hi=100_000),
        "count": section.integer("count", 0, lo=0),
    }


def compile_profile(section: Section, protocol: str) -> Decoder:  # pragma: no cover - no protocols
    raise NotImplementedError("synthetic devices have no wire protocol")


def create_bus(bus: BusConfig, ctx: BusContext) -> Bus:
    from drivers.synthetic.source import SyntheticBus

    return SyntheticBus(bus, ctx)


def device_ids(bus: BusConfig) -> Sequence[str]:
    """Every device key this bus will emit (replicas expanded)."""
    from drivers.synthetic.source import expand

    return [d for d, _ in expand(bus)]
