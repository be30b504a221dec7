"""Modbus bus and device options, parsed once from the config into frozen objects.

Bus keys (transport `modbus-tcp`): host (required), port = 502, and the timing keys;
(transport `modbus-rtu`): port (required, a serial device path), baud (one of BAUDS),
parity, stopbits, bytesize, and the timing keys: timeout, retries, gap, settle, jitter,
max_gap, reconnect_min, reconnect_max (see the package docstring). Device keys: unit, max_gap.
Every invariant the bus relies on is checked here and recorded on the Section with its path;
the bus takes these objects as they are. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.contract import Options
from gateway.section import Section

BAUDS = (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200)


@dataclass(frozen=True)
class BusOptions(Options):
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
class DeviceOptions(Options):
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
