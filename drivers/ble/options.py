"""The BLE driver's own bus and device keys, read once from the config into frozen values.

Bus (`transport = "ble"`): adapter, scan_mode, silence_timeout, reconnect_min/max,
connect_timeout, health_interval, queue_size. Bus (`transport = "ble-replay"`): file, speed,
loop, queue_size. Device: address (MAC, normalised upper case), bindkey (32 hex digits, for
encrypted BTHome), presence_timeout (beacons), stale_after, gatt ("off" | "read" | "notify").
Every problem is recorded on the Section with its path; the profile's protocol comes from its
compiled decoder (never from reading the profile file again); nothing here touches a radio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drivers.ble.advert import normalise_mac
from gateway.contract import Decoder, Options
from gateway.section import Section

SCAN_MODES = ("passive", "active")
GATT_MODES = ("off", "read", "notify")
_ADAPTER = re.compile(r"^hci[0-9]{1,2}$")
_BINDKEY = re.compile(r"^[0-9A-Fa-f]{32}$")


@dataclass(frozen=True)
class BleBusOptions(Options):
    adapter: str = "hci0"
    scan_mode: str = "passive"  # falls back to active when BlueZ lacks advertisement monitors
    # no advert at all for this long: restart the scan (a wedged controller hears nothing);
    # 0 turns it off where silence is normal (only tags that come and go)
    silence_timeout: float = 600.0
    reconnect_min: float = 2.0
    reconnect_max: float = 120.0
    connect_timeout: float = 15.0  # the longest one GATT connect may keep the radio busy
    health_interval: float = 5.0
    queue_size: int = 2000


@dataclass(frozen=True)
class ReplayOptions(Options):
    file: str = ""
    speed: float = 1.0  # 1 = recorded pace, 10 = ten times faster, 0 = as fast as possible
    loop: bool = False
    queue_size: int = 2000


@dataclass(frozen=True)
class BleDeviceOptions(Options):
    address: str = ""
    bindkey: str = ""
    presence_timeout: float = 300.0
    stale_after: float = 900.0  # no advert for this long: device unavailable (0 = never)
    gatt: str = "off"


def parse_bus(s: Section, transport: str) -> BleBusOptions | ReplayOptions:
    if transport == "ble-replay":
        return ReplayOptions(
            file=s.text("file"),
            speed=s.number("speed", 1.0, lo=0.0, hi=1e6),
            loop=s.flag("loop", False),
            queue_size=s.integer("queue_size", 2000, lo=10, hi=1_000_000),
        )
    adapter = s.text("adapter", "hci0")
    if adapter and not _ADAPTER.match(adapter):
        s.problem("adapter", f'expected an adapter name such as "hci0", got "{adapter}"')
    backoff = s.backoff(2.0, 120.0)
    opts = BleBusOptions(
        adapter=adapter,
        scan_mode=s.text("scan_mode", "passive", choices=SCAN_MODES),
        silence_timeout=s.number("silence_timeout", 600.0, lo=0.0, hi=86400.0),
        reconnect_min=backoff[0],
        reconnect_max=backoff[1],
        connect_timeout=s.number("connect_timeout", 15.0, lo=0.5, hi=120.0),
        health_interval=s.number("health_interval", 5.0, lo=0.05, hi=3600.0),
        queue_size=s.integer("queue_size", 2000, lo=10, hi=1_000_000),
    )
    return opts


def parse_device(s: Section, transport: str, decoder: Decoder | None) -> BleDeviceOptions:
    """`decoder` is the device's compiled profile (GATT mode needs an ESS one)."""
    raw_address = s.text("address")
    address = normalise_mac(raw_address) if raw_address else None
    if raw_address and address is None:
        s.problem(
            "address",
            f'expected a Bluetooth address such as "A4:C1:38:0B:5E:6D", got "{raw_address}"',
        )
    bindkey = s.text("bindkey", "")
    if bindkey and not _BINDKEY.match(bindkey):
        s.problem(
            "bindkey", f"expected 32 hex digits (a 16-byte key), got {len(bindkey)} characters"
        )
    gatt = s.text("gatt", "off", choices=GATT_MODES)
    if gatt != "off" and transport == "ble-replay":
        s.problem("gatt", 'a replay bus has no radio to connect with; use gatt = "off"')
    elif gatt != "off" and decoder is not None and decoder.protocol != "ess":
        s.problem(
            "gatt",
            f'GATT mode reads ESS characteristics; profile "{s.raw.get("profile")}" is '
            f'protocol "{decoder.protocol}", not "ess"',
        )
    elif gatt != "off" and decoder is None and not s.has("profile"):
        s.problem("gatt", "GATT mode reads ESS characteristics; the device needs an ESS profile")
    return BleDeviceOptions(
        address=address or "",
        bindkey=bindkey.lower(),
        presence_timeout=s.number("presence_timeout", 300.0, lo=1.0, hi=7 * 86400.0),
        stale_after=s.number("stale_after", 900.0, lo=0.0, hi=7 * 86400.0),
        gatt=gatt,
    )
