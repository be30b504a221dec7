"""Modbus RTU (RS-485 serial) and Modbus TCP buses with declarative register-map profiles.

Bus keys (`[[buses]]`, transport `modbus-tcp`):
    host (required), port = 502, timeout = 1.0 (s per attempt), retries = 1 (extra attempts),
    gap = 0.0 (s of silence between transactions), settle = 0.0 (s of silence after an
    unanswered request, for late answers), jitter = 0.1 (fraction of each device's
    interval), max_gap = 0 (unrequested registers a merged read may span),
    reconnect_min = 1.0, reconnect_max = 60.0 (s, backoff when the peer is gone)
Bus keys (transport `modbus-rtu`): port (required, /dev/ttyUSB0), baud = 9600,
    parity = "N" | "E" | "O", stopbits = 1, bytesize = 8, and the same timing keys; `gap`
    defaults to the spec's 3.5 character times (1.75 ms above 19200 baud), `settle` to half
    the timeout. A dead unit costs timeout x (1 + retries) + settle per poll cycle.
Device keys (`[[buses.devices]]`): unit (1..247 on RTU, 0..255 on TCP), max_gap (overrides the
    bus's), plus the core's id, profile, interval, params.

Modules: options (bus/device keys), profile (profile file -> decoder), decode, points, plan
(pure), bus (the bus task), relay (actuators and the `relay` command), transport and channel
(the only pymodbus imports), sim / slave / scan / demo (hooks). This module holds the declarations
(gateway.contract.Driver) and the entry functions only; pymodbus is loaded by create_bus.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from drivers.modbus import options
from gateway.contract import Bus, BusConfig, BusContext, Decoder, Options, options_as
from gateway.hotplug import Hotplug, node_problems
from gateway.section import Section

TRANSPORTS: tuple[str, ...] = ("modbus-rtu", "modbus-tcp")
PROTOCOLS: tuple[str, ...] = ("modbus",)
# An RS-485 dongle comes and goes: the bus reconnects when its tty is plugged back in.
HOTPLUG: Mapping[str, tuple[str, ...]] = {"modbus-rtu": ("tty",)}
# Relay modules (profiles whose coils have a `channel`) become actuators on either transport.
ACTUATORS: tuple[str, ...] = ("modbus-rtu", "modbus-tcp")
SIMULATORS: Mapping[str, str] = {"modbus": "drivers.modbus.sim:main"}
SCANNERS: Mapping[str, str] = {"modbus": "drivers.modbus.scan:main"}
DEMO: str | None = "drivers.modbus.demo:field"


def parse_bus(section: Section, transport: str) -> Options:
    return options.parse_bus(section, transport)


def parse_device(section: Section, transport: str, decoder: Decoder | None) -> Options:
    return options.parse_device(section, transport)


def compile_profile(section: Section, protocol: str) -> Decoder:
    from drivers.modbus.profile import compile_profile as compile_modbus

    return compile_modbus(section, protocol)


def create_bus(bus: BusConfig, ctx: BusContext) -> Bus:
    from drivers.modbus.bus import ModbusBus

    return ModbusBus(bus, ctx)


def reach(bus: BusConfig, hotplug: Hotplug | None) -> list[tuple[str, str]]:
    """An RTU bus's serial `port` that is not there (a TCP peer is not looked at)."""
    opts = options_as(bus.options, options.BusOptions)
    if bus.transport != "modbus-rtu":
        return []
    return [("port", problem) for problem in node_problems(opts.port)]


if TYPE_CHECKING:  # mypy checks this package against the driver contract
    import drivers.modbus
    from gateway.contract import Driver

    _contract: Driver = drivers.modbus
