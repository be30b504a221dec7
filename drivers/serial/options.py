"""Serial bus and device options, parsed once from the config into frozen objects.

Bus keys (transport "serial"): `port` (a path, e.g. /dev/gateway/buoy) or `match` (a udev
match: `vid`, `pid`, `serial`, `usb_path`; resolved to a device node at each connect, so USB
renumbering does not matter), `baudrate` (4800, the NMEA 0183 default), `bytesize`, `parity`,
`stopbits`, `max_line`, `encoding`, `exclusive`, `reconnect_min`, `reconnect_max`.
Device keys: `talkers` (NMEA talker ids to accept; default all), `silence` (seconds without a
decoded line before the device is reported unavailable; 0 = never, the default, right for
receivers that only speak on events), `dedup_window` (overrides the profile's).
No I/O here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.contract import Options
from gateway.hotplug import DeviceInfo
from gateway.section import Section

PARITIES = ("N", "E", "O", "M", "S")
ENCODINGS = ("ascii", "utf-8", "latin-1")
HEX4 = re.compile(r"[0-9a-f]{4}")
MATCH_KEYS = ("vid", "pid", "serial", "usb_path")


@dataclass(frozen=True)
class PortSettings:
    """Line settings; NMEA 0183 sec. 4.1 fixes 4800 baud, 8 data bits, no parity, 1 stop bit."""

    baudrate: int = 4800
    bytesize: int = 8
    parity: str = "N"  # N, E, O, M, S
    stopbits: float = 1
    exclusive: bool = True  # flock the port: two owners would each get half the bytes


@dataclass(frozen=True)
class PortMatch:
    """Which tty a bus means when it is not named by path; empty keys match anything."""

    vid: str = ""
    pid: str = ""
    serial: str = ""
    usb_path: str = ""

    def matches(self, device: DeviceInfo) -> bool:
        return all(
            not want or want == have
            for want, have in (
                (self.vid, device.vid),
                (self.pid, device.pid),
                (self.serial, device.serial),
                (self.usb_path, device.usb_path),
            )
        )

    def __str__(self) -> str:
        return " ".join(f"{k}={getattr(self, k)}" for k in MATCH_KEYS if getattr(self, k))


@dataclass(frozen=True)
class BusOptions(Options):
    port: str = ""
    match: PortMatch | None = None
    settings: PortSettings = PortSettings()
    max_line: int = 512
    encoding: str = "ascii"
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0

    def describe(self) -> str:
        return self.port or f"udev match {self.match}"


@dataclass(frozen=True)
class DeviceOptions(Options):
    talkers: frozenset[str] = frozenset()
    silence: float = 0.0
    dedup_window: float | None = None


def parse_bus(s: Section) -> BusOptions:
    port = s.text("port", "")
    match = None
    if s.has("match"):
        m = s.section("match")
        match = PortMatch(
            vid=_hex4(m, "vid"),
            pid=_hex4(m, "pid"),
            serial=m.text("serial", ""),
            usb_path=m.text("usb_path", ""),
        )
        m.finish(MATCH_KEYS)
        if not str(match):
            m.problem(None, f"needs at least one of {', '.join(MATCH_KEYS)}")
    if bool(port) == (match is not None):
        s.problem(None, "needs exactly one of `port` (a device path) or `match` (a udev match)")
    settings = PortSettings(
        baudrate=s.integer("baudrate", 4800, lo=50, hi=4_000_000),
        bytesize=s.integer("bytesize", 8, lo=5, hi=8),
        parity=s.text("parity", "N", choices=PARITIES),
        stopbits=_stopbits(s),
        exclusive=s.flag("exclusive", True),
    )
    # NMEA 0183 caps a sentence at 82 characters (sec. 5.3); receivers print longer
    # lines, so the default leaves room while still bounding a run of noise.
    max_line = s.integer("max_line", 512, lo=16, hi=65536)
    encoding = s.text("encoding", "ascii", choices=ENCODINGS)
    reconnect_min, reconnect_max = s.backoff(1.0, 60.0)
    return BusOptions(
        port=port,
        match=match,
        settings=settings,
        max_line=max_line,
        encoding=encoding,
        reconnect_min=reconnect_min,
        reconnect_max=reconnect_max,
    )


def _hex4(s: Section, key: str) -> str:
    value: str = s.text(key, "")
    if value and not HEX4.fullmatch(value.lower()):
        s.problem(key, f'expected 4 hex digits as udev shows them (e.g. "0403"), got "{value}"')
    return value.lower()


def _stopbits(s: Section) -> float:
    value: float = s.number("stopbits", 1.0)
    if value not in (1.0, 1.5, 2.0):
        s.problem("stopbits", f"expected 1, 1.5 or 2, got {value:g}")
        return 1.0
    return value


def parse_device(s: Section) -> DeviceOptions:
    if not s.has("profile"):
        s.problem("profile", "a serial device needs a profile (nmea or line protocol)")
    talkers = s.strings("talkers", ())
    for i, talker in enumerate(talkers):
        if len(talker) != 2 or not talker.isalnum():
            s.problem(
                f"talkers[{i}]", f'expected a 2-letter talker id such as "WI", got "{talker}"'
            )
    return DeviceOptions(
        talkers=frozenset(talkers),
        silence=s.number("silence", 0.0, lo=0.0, hi=86400.0),
        dedup_window=s.number("dedup_window", None, lo=0.0, hi=86400.0),
    )
