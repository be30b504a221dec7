"""Serial line devices: NMEA 0183 buoy instruments and line-printing radio receivers.

Transport `serial` (one bus per port; see drivers.serial.options for the keys), protocols
`nmea` (drivers.serial.nmea) and `line` (declarative line profiles, drivers.serial.line).
Device keys: a device's readings go out under its configured id; readings of a sub-device
named by the profile's `source` field (a trap behind a receiver) go out under
`<device id>-<source>` (receiver `trap-rx`, trap 17 -> `trap-rx-17`), so alert rules key on
that. pyserial is imported only by drivers.serial.transport, and only when a bus is created.
"""

from __future__ import annotations

from typing import Any

from gateway.contract import Bus, BusConfig, BusContext, Decoder
from gateway.section import Section

TRANSPORTS = ("serial",)
PROTOCOLS = ("nmea", "line")
SIMULATORS = {"nmea": "drivers.serial.sim:nmea_main", "trap": "drivers.serial.sim:trap_main"}
SCANNERS = {"serial": "drivers.serial.scan:main"}
DEMO = "drivers.serial.demo:field"


def parse_bus(section: Section, transport: str) -> Any:
    from drivers.serial.options import parse_bus as parse

    return parse(section)


def parse_device(section: Section, transport: str) -> Any:
    from drivers.serial.options import parse_device as parse

    if not section.has("profile"):
        section.problem("profile", "a serial device needs a profile (nmea or line protocol)")
    return parse(section)


def compile_profile(section: Section, protocol: str) -> Decoder:
    if protocol == "nmea":
        from drivers.serial.nmea import compile_nmea

        return compile_nmea(section)
    from drivers.serial.line import compile_line

    return compile_line(section)


def create_bus(bus: BusConfig, ctx: BusContext) -> Bus:
    from drivers.serial.bus import SerialBus

    return SerialBus(bus, ctx)
