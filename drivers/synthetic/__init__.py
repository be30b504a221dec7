"""Synthetic devices: configurable quantities, rates and value patterns, no hardware.

The spine (outbox, uplink, alerts) runs, is demonstrated and is benchmarked with these before
any real bus is attached. Bus transport name: `synthetic`. Device keys
(drivers.synthetic.options):

    points = [ { quantity = "water_level", unit = "cm", pattern = "sine",
                 low = 3.0, high = 6.0, period = 3600.0 },
               { quantity = "trap_state", pattern = "cycle",
                 values = ["set", "triggered"], every = 10 } ]
    replicas = 1     # N copies named <id>-000 .. <id>-(N-1) (idle and load benchmarks)
    count = 0        # stop after this many polls per device (0 = never)

`interval = 0` polls as fast as the outbox accepts (back-pressure), for throughput runs.
This module holds the declarations (gateway.contract.Driver) and the entry functions only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from drivers.synthetic import options
from gateway.contract import Bus, BusConfig, BusContext, Decoder, Options
from gateway.hotplug import Hotplug
from gateway.section import Section

TRANSPORTS: tuple[str, ...] = ("synthetic",)
PROTOCOLS: tuple[str, ...] = ()
HOTPLUG: Mapping[str, tuple[str, ...]] = {}
ACTUATORS: tuple[str, ...] = ()
SIMULATORS: Mapping[str, str] = {}
SCANNERS: Mapping[str, str] = {}
DEMO: str | None = None


def parse_bus(section: Section, transport: str) -> Options:
    return options.parse_bus(section)


def parse_device(section: Section, transport: str, decoder: Decoder | None) -> Options:
    return options.parse_device(section)


def compile_profile(section: Section, protocol: str) -> Decoder:  # pragma: no cover - no protocols
    raise NotImplementedError("synthetic devices have no wire protocol")


def create_bus(bus: BusConfig, ctx: BusContext) -> Bus:
    from drivers.synthetic.bus import SyntheticBus

    return SyntheticBus(bus, ctx)


def device_ids(bus: BusConfig) -> Sequence[str]:
    """Every device key this bus will emit (replicas expanded)."""
    from drivers.synthetic.bus import expand

    return [d for d, _, _ in expand(bus)]


def reach(bus: BusConfig, hotplug: Hotplug | None) -> list[tuple[str, str]]:
    return []  # nothing to look at before the bus starts


if TYPE_CHECKING:  # mypy checks this package against the driver contract
    import drivers.synthetic
    from gateway.contract import Driver

    _contract: Driver = drivers.synthetic
