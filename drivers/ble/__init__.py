"""BLE sensors: passive advertisements (BTHome v2, Ruuvi, ATC/pvvx, ESS, beacons) and GATT ESS.

Transports: `ble` (a BlueZ adapter through bleak, one bus per adapter) and `ble-replay` (a
recorded advert file, for rigs, the demo and benchmarks). Bus keys: see drivers.ble.settings.
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

bleak is imported only by drivers.ble.transport and drivers.ble.gatt, lazily from create_bus.
"""

from __future__ import annotations

from drivers.ble.decoder import PROTOCOLS
from drivers.ble.settings import parse_bus, parse_device
from gateway.contract import Bus, BusConfig, BusContext, Decoder
from gateway.section import Section

TRANSPORTS = ("ble", "ble-replay")
SIMULATORS = {"ble": "drivers.ble.sim:main"}
DEMO = "drivers.ble.demo:field"

__all__ = [
    "DEMO",
    "PROTOCOLS",
    "SIMULATORS",
    "TRANSPORTS",
    "compile_profile",
    "create_bus",
    "parse_bus",
    "parse_device",
]


def compile_profile(section: Section, protocol: str) -> Decoder:
    from drivers.ble.decoder import compile_profile as compile_ble

    return compile_ble(section, protocol)


def create_bus(bus: BusConfig, ctx: BusContext) -> Bus:
    from drivers.ble.bus import BleBus
    from drivers.ble.decoder import EssDecoder

    if bus.transport == "ble-replay":
        from drivers.ble.replay import ReplaySource

        return BleBus(
            bus, ctx, ReplaySource(bus.options, ctx.log), queue_size=bus.options.queue_size
        )

    import asyncio

    from drivers.ble.gatt import GattSession
    from drivers.ble.transport import AdapterSource

    decoders = [d.decoder for d in bus.devices if d.decoder is not None]
    source = AdapterSource(bus.options, ctx.log, decoders)  # type: ignore[arg-type]
    lock = asyncio.Lock()  # GATT connects on one adapter take turns
    sessions = []
    for device in bus.devices:
        if device.options.gatt == "off":
            continue
        if not isinstance(device.decoder, EssDecoder):
            # config parsing refuses this when it can see the profile; never crash on it here
            ctx.log.error("GATT mode needs an ESS profile; not connecting", device=device.id)
            continue
        sessions.append(GattSession(device, bus.options, ctx.log, source, lock))
    return BleBus(bus, ctx, source, sessions=sessions, queue_size=bus.options.queue_size)
