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

Hooks: `gateway sim modbus`, `gateway scan modbus`, and the demo field. This module imports
no transport library: pymodbus is loaded by create_bus / the hooks through drivers.modbus.transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drivers.modbus.points import parse_derived, parse_point, parse_trigger
from gateway.contract import Bus, BusConfig, BusContext
from gateway.errors import DeviceUnavailable
from gateway.section import Section

TRANSPORTS = ("modbus-rtu", "modbus-tcp")
PROTOCOLS = ("modbus",)
SIMULATORS = {"modbus": "drivers.modbus.sim:main"}
SCANNERS = {"modbus": "drivers.modbus.scan:main"}
DEMO = "drivers.modbus.demo:field"

# Modbus Application Protocol V1.1b3 section 7: exception codes.
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class NoResponse(DeviceUnavailable):
    """The unit did not answer usefully (silence, CRC error, garbled frame)."""


class UnitException(DeviceUnavailable):
    """The unit answered with a Modbus exception code: it is there, but refused."""

    def __init__(self, unit: int, code: int) -> None:
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown")
        super().__init__(f"unit {unit}: exception {code} ({name})")


BAUDS = (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200)


@dataclass(frozen=True)
class BusOptions:
    transport: str
    host: str = ""
    port: str = ""  # a TCP port number as text, or a serial device path
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    timeout: float = 1.0
    retries: int = 1
    gap: float = 0.0
    settle: float = 0.0
    jitter: float = 0.1
    max_gap: int = 0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}" if self.transport == "modbus-tcp" else self.port


@dataclass(frozen=True)
class DeviceOptions:
    unit: int
    max_gap: int | None = None


def rtu_gap(baud: int) -> float:
    """Modbus over Serial Line V1.02 section 2.5.1.1: 3.5 characters of 11 bits, 1.75 ms fixed
    above 19200 baud."""
    return 1.75e-3 if baud > 19200 else 3.5 * 11 / baud


def parse_bus(section: Section, transport: str) -> BusOptions:
    tcp = transport == "modbus-tcp"
    if tcp:
        host = section.text("host")
        port = str(section.integer("port", 502, lo=1, hi=65535))
        baud, parity, stopbits, bytesize = 9600, "N", 1, 8
    else:
        host = ""
        port = section.text("port")
        baud = section.integer("baud", 9600)
        if baud not in BAUDS:
            section.problem("baud", f"expected one of {', '.join(map(str, BAUDS))}; got {baud}")
        parity = section.text("parity", "N", choices=("N", "E", "O"))
        stopbits = section.integer("stopbits", 1, lo=1, hi=2)
        bytesize = section.integer("bytesize", 8, lo=7, hi=8)
    timeout = section.number("timeout", 1.0, lo=0.01, hi=60.0)
    # After an unanswered request a slow slave may still answer; on a shared RS-485 line that
    # late frame would land on the next unit's answer, so the line is left quiet a while.
    settle = section.number("settle", 0.0 if tcp else timeout / 2, lo=0.0, hi=60.0)
    backoff = section.backoff(1.0, 60.0)
    options = BusOptions(
        transport=transport,
        host=host,
        port=port,
        baud=baud,
        parity=parity,
        stopbits=stopbits,
        bytesize=bytesize,
        timeout=timeout,
        retries=section.integer("retries", 1, lo=0, hi=10),
        gap=section.number("gap", 0.0 if tcp else rtu_gap(baud), lo=0.0, hi=5.0),
        settle=settle,
        jitter=section.number("jitter", 0.1, lo=0.0, hi=0.5),
        max_gap=section.integer("max_gap", 0, lo=0, hi=124),
        reconnect_min=backoff[0],
        reconnect_max=backoff[1],
    )
    return options


def parse_device(section: Section, transport: str) -> DeviceOptions:
    # RTU addresses 1..247 (Modbus over Serial Line section 2.2; 0 is broadcast); a TCP unit
    # id may be 0..255 (Modbus Messaging on TCP/IP section 4.4.2: 0xFF addresses the device).
    hi, lo = (255, 0) if transport == "modbus-tcp" else (247, 1)
    if not section.raw.get("profile"):
        section.problem("profile", "a Modbus device needs a profile (its register map)")
    return DeviceOptions(
        unit=section.integer("unit", lo=lo, hi=hi),
        max_gap=section.integer("max_gap", None, lo=0, hi=124),
    )


def compile_profile(section: Section, protocol: str) -> Any:
    from drivers.modbus.decode import ModbusDecoder

    head = section.section("profile")
    head.ignore("name", "protocol", "description")
    head.text("kind", "", choices=("coil", "discrete", "holding", "input"))
    head.text("byte_order", "big", choices=("big", "little"))
    head.text("word_order", "big", choices=("big", "little"))
    head.finish()
    points = []
    for s in section.sections("point", required=True):
        points.append(parse_point(s, head))
        s.finish()
    derived = []
    for s in section.sections("derived"):
        derived.append(parse_derived(s))
        s.finish()
    triggers = []
    for s in section.sections("trigger"):
        triggers.append(parse_trigger(s))
        s.finish()
    _cross_check(section, points, derived)
    attributes = {p.quantity: p.attr for p in points if p.emit and p.attr}
    attributes.update({d.quantity: d.attr for d in derived if d.attr})
    if not points:
        # An empty decoder is still returned so the caller can report every problem at once.
        return ModbusDecoder(points=(), attributes=attributes)
    return ModbusDecoder(tuple(points), tuple(derived), tuple(triggers), "modbus", attributes)


def _cross_check(section: Section, points: list[Any], derived: list[Any]) -> None:
    names: dict[str, int] = {}
    quantities: set[str] = set()
    for i, p in enumerate(points):
        where = f"{section.at('point')}[{i}]"
        if p.name in names:
            section.problems.append(_problem(where, f'duplicate point name "{p.name}"'))
        names[p.name] = i
        if p.emit and p.quantity in quantities:
            section.problems.append(
                _problem(where, f'quantity "{p.quantity}" is reported twice; add a suffix')
            )
        quantities.add(p.quantity)
    for i, p in enumerate(points):
        if p.decimals_from and p.decimals_from not in names:
            section.problems.append(
                _problem(
                    f"{section.at('point')}[{i}].decimals_from",
                    f'no point named "{p.decimals_from}"; known: {", ".join(names)}',
                )
            )
    for i, d in enumerate(derived):
        if d.point and d.point not in names:
            section.problems.append(
                _problem(
                    f"{section.at('derived')}[{i}].point",
                    f'no point named "{d.point}"; known: {", ".join(names)}',
                )
            )
        elif d.point and points[names[d.point]].type in ("bool", "bit"):
            section.problems.append(
                _problem(f"{section.at('derived')}[{i}].point", "cannot compute with a bit")
            )
        if d.quantity in quantities:
            section.problems.append(
                _problem(
                    f"{section.at('derived')}[{i}].quantity", f'"{d.quantity}" is reported twice'
                )
            )
        quantities.add(d.quantity)


def _problem(path: str, message: str) -> Any:
    from gateway.errors import Problem

    return Problem(path, message)


def create_bus(bus: BusConfig, ctx: BusContext) -> Bus:
    from drivers.modbus.poller import ModbusBus

    return ModbusBus(bus, ctx)
