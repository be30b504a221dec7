"""Serial line devices: NMEA 0183 buoy instruments and line-printing radio receivers.

Transport `serial` (one bus per port; see drivers.serial.options for the keys), protocols
`nmea` (drivers.serial.nmea; its XDR transducer quads in drivers.serial.xdr) and `line`
(declarative line profiles, drivers.serial.line).
Device keys: a device's readings go out under its configured id; readings of a sub-device
named by the profile's `source` field (a trap behind a receiver) go out under
`<device id>-<source>` (receiver `trap-rx`, trap 17 -> `trap-rx-17`), so alert rules key on
that. pyserial is imported only by drivers.serial.transport, and only when a bus is created.
This module holds the declarations (gateway.contract.Driver) and the entry functions only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from drivers.serial import options
from gateway.contract import Bus, BusConfig, BusContext, Decoder, Options, options_as
from gateway.hotplug import Hotplug, node_problems
from gateway.section import Section

TRANSPORTS: tuple[str, ...] = ("serial",)
PROTOCOLS: tuple[str, ...] = ("nmea", "line")
# USB serial adapters come and go: a bus reconnects when its tty is plugged back in.
HOTPLUG: Mapping[str, tuple[str, ...]] = {"serial": ("tty",)}
ACTUATORS: tuple[str, ...] = ()
SIMULATORS: Mapping[str, str] = {
    "nmea": "drivers.serial.sim:nmea_main",
    "trap": "drivers.serial.sim:trap_main",
}
SCANNERS: Mapping[str, str] = {"serial": "drivers.serial.scan:main"}
DEMO: str | None = "drivers.serial.demo:field"


def parse_bus(section: Section, transport: str) -> Options:
    return options.parse_bus(section)


def parse_device(section: Section, transport: str, decoder: Decoder | None) -> Options:
    return options.parse_device(section)


def compile_profile(section: Section, protocol: str) -> Decoder:
    if protocol == "nmea":
        from drivers.serial.nmea import compile_nmea

        return compile_nmea(section)
    from drivers.serial.line import compile_line

    return compile_line(section)


def create_bus(bus: BusConfig, ctx: BusContext) -> Bus:
    from drivers.serial.bus import SerialBus

    return SerialBus(bus, ctx)


def reach(bus: BusConfig, hotplug: Hotplug | None) -> list[tuple[str, str]]:
    """A `port` that is not there, or a udev `match` that no tty (or more than one) answers."""
    opts = options_as(bus.options, options.BusOptions)
    if opts.match is None:
        return [("port", problem) for problem in node_problems(opts.port)]
    if hotplug is not None:
        listed = hotplug.devices("tty")
    else:
        from gateway.hotplug import enumerate_devices

        listed = enumerate_devices("tty")
    found = sorted(d.devnode for d in listed if opts.match.matches(d))
    if not found:
        return [("match", f"no serial port matches {opts.match} (unplugged?)")]
    if len(found) > 1:
        nodes = ", ".join(found)
        return [
            (
                "match",
                f"{len(found)} serial ports match {opts.match} ({nodes}); "
                "add serial or usb_path to the match to tell them apart",
            )
        ]
    return []


if TYPE_CHECKING:  # mypy checks this package against the driver contract
    import drivers.serial
    from gateway.contract import Driver

    _contract: Driver = drivers.serial
