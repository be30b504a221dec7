"""BLE sensors: passive advertisements (BTHome v2, Ruuvi, ATC/pvvx, ESS, beacons) and GATT ESS.

Transports: `ble` (a BlueZ adapter through bleak, one bus per adapter) and `ble-replay` (a
recorded advert file, for rigs, the demo and benchmarks). Bus keys: see drivers.ble.options.
Device keys: `address` (required MAC), `bindkey` (encrypted BTHome), `presence_timeout`
(beacons), `stale_after`, `gatt` ("off" | "read" | "notify", ESS profiles on a live adapter).
`interval` caps how often a chatty advertiser's values are emitted (0 = every new measurement).

Example:

    [[buses]]
    name = "ble0"
    transport = "ble"
    adapter = "hci0"
      [[buses.devices]]
      id = "greenhouse-1"
      profile = "bthome"
      address = "A4:C1:38:0B:5E:6D"
      bindkey = "231d39c1d7cc1ab1aee224cd096db932"
      interval = 300

bleak is imported only by drivers.ble.transport and its exceptions by drivers.ble.errors (both
loaded lazily, when a `ble` bus is created).
This module holds the declarations (gateway.contract.Driver) and the entry functions only; it
imports no decoder at import time (drivers.ble.decoder imports the format modules of this
package, so an import here would be a cycle).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from drivers.ble import options
from gateway.contract import Bus, BusConfig, BusContext, Decoder, Options
from gateway.hotplug import Hotplug
from gateway.section import Section

TRANSPORTS: tuple[str, ...] = ("ble", "ble-replay")
PROTOCOLS: tuple[str, ...] = ("bthome", "ruuvi", "atc", "ess", "beacon")
# Adapters are BlueZ's business: the bus watches them over D-Bus, not through udev.
HOTPLUG: Mapping[str, tuple[str, ...]] = {}
ACTUATORS: tuple[str, ...] = ()
SIMULATORS: Mapping[str, str] = {"ble": "drivers.ble.sim:main"}
SCANNERS: Mapping[str, str] = {}
DEMO: str | None = "drivers.ble.demo:field"


def parse_bus(section: Section, transport: str) -> Options:
    return options.parse_bus(section, transport)


def parse_device(section: Section, transport: str, decoder: Decoder | None) -> Options:
    return options.parse_device(section, transport, decoder)


def compile_profile(section: Section, protocol: str) -> Decoder:
    from drivers.ble.decoder import compile_profile as compile_ble

    return compile_ble(section, protocol)


def create_bus(bus: BusConfig, ctx: BusContext) -> Bus:
    from drivers.ble.bus import create

    return create(bus, ctx)


def reach(bus: BusConfig, hotplug: Hotplug | None) -> list[tuple[str, str]]:
    return []  # nothing to look at before the bus starts


if TYPE_CHECKING:  # mypy checks this package against the driver contract
    import drivers.ble
    from gateway.contract import Driver

    _contract: Driver = drivers.ble
