"""The one module that calls bleak: an adapter's advertisement scanner and a GATT link.

`AdapterSource` scans one BlueZ adapter for the life of its bus: passive (an advertisement
monitor, so the radio never sends scan requests) where BlueZ allows it, else active, with a
log line saying which. Each advert from a configured MAC becomes an `Advert` for the bus;
anything else is dropped in the callback before any copying. A health check polls the adapter
over its own D-Bus connection and turns trouble into BusUnavailable: D-Bus gone, bluetoothd
not running or restarted (its bus name changed owner), adapter missing or powered off,
discovery stopped, or no advert at all for `silence_timeout`. gateway.supervise then logs the
transition once and restarts the scan with backoff. `GattLink` wraps BleakClient for
drivers.ble.gatt. bleak and dbus-fast exceptions become gateway.errors types here, through
drivers.ble.errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bleak import BleakClient, BleakScanner
from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import (
    BleakError,
)
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import AuthError, DBusError

from drivers.ble.advert import Advert
from drivers.ble.decoder import BleDecoder
from drivers.ble.errors import NO_BLUEZ, device_error, mapped
from drivers.ble.options import BleBusOptions
from gateway.contract import Log
from gateway.errors import BusUnavailable
from gateway.supervise import Backoff, Health, supervise

if TYPE_CHECKING:
    from drivers.ble.bus import BleBus

_SD16 = AdvertisementDataType.SERVICE_DATA_UUID16
_MSD = AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA
_UUIDS16 = AdvertisementDataType.COMPLETE_LIST_SERVICE_UUID16
# Advertisement-monitor patterns per protocol: AD type + leading content (little-endian ids).
PATTERNS: dict[str, tuple[OrPattern, ...]] = {
    "bthome": (OrPattern(0, _SD16, b"\xd2\xfc"),),
    "atc": (OrPattern(0, _SD16, b"\x1a\x18"),),
    "ruuvi": (OrPattern(0, _MSD, b"\x99\x04"),),
    "beacon": (OrPattern(0, _MSD, b"\x4c\x00\x02\x15"), OrPattern(0, _SD16, b"\xaa\xfe")),
    "ess": (OrPattern(0, _UUIDS16, b"\x1a\x18"), OrPattern(0, _SD16, b"\x6e\x2a")),
}
# bleak's BlueZ args take OrPattern or its plain tuple form
Pattern = OrPattern | tuple[int, AdvertisementDataType, bytes]


def patterns_for(decoders: Iterable[BleDecoder]) -> list[Pattern]:
    found: dict[Pattern, None] = {}
    for decoder in decoders:
        found.update(dict.fromkeys(PATTERNS.get(decoder.protocol, ())))
    return list(found)


class AdapterSource:
    """Scans one adapter and feeds a BleBus (see module docstring)."""

    def __init__(self, options: BleBusOptions, log: Log, decoders: Iterable[BleDecoder]) -> None:
        self.options = options
        self.log = log
        self.adapter = options.adapter
        self.patterns = patterns_for(decoders)
        self.mode = options.scan_mode
        self.health = Health(log, f"adapter {options.adapter}")
        self.devices: dict[str, BLEDevice] = {}  # latest BLEDevice per address, for GATT
        self.seen = asyncio.Event()  # set on every accepted advert (GATT sessions wait on it)
        self.last_advert = 0.0
        self.starts = 0

    async def run(self, bus: BleBus) -> None:
        backoff = Backoff(self.options.reconnect_min, self.options.reconnect_max)
        await supervise(lambda health: self._scan(bus, health), self.health, backoff)

    def device(self, address: str) -> BLEDevice | None:
        return self.devices.get(address)

    async def _scan(self, bus: BleBus, health: Health) -> None:
        loop = asyncio.get_running_loop()
        addresses = bus.addresses

        def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
            self.last_advert = loop.time()
            address = device.address.upper()
            if address not in addresses:
                bus.router.counters.ignored += 1
                return
            self.devices[address] = device
            self.seen.set()
            self.seen.clear()
            bus.offer(
                Advert(address, adv.rssi, adv.manufacturer_data, adv.service_data, adv.local_name)
            )

        # BlueZ may have forgotten every device since the last scan (restart, power cycle):
        # GATT sessions wait for a fresh sighting instead of connecting to a stale path
        self.devices.clear()
        watch = await _connect_system_bus(self.adapter)
        try:
            owner = await _bluez_owner(watch, self.adapter)
            scanner = await self._start_scanner(on_advert)
            try:
                self.starts += 1
                if self.starts == 1:
                    self.log.info("scanning", adapter=self.adapter, mode=self.mode)
                self.last_advert = loop.time()
                health.up(mode=self.mode)
                await self._watch(watch, owner)
            finally:
                with contextlib.suppress(BleakError, DBusError, OSError, EOFError, TimeoutError):
                    async with asyncio.timeout(5):
                        await scanner.stop()
        finally:
            await _close(watch)

    async def _start_scanner(
        self, callback: Callable[[BLEDevice, AdvertisementData], None]
    ) -> BleakScanner:
        what = f"adapter {self.adapter}"
        if self.mode == "passive" and self.patterns:
            scanner = BleakScanner(
                callback, scanning_mode="passive",
                bluez={"adapter": self.adapter, "or_patterns": self.patterns},
            )  # fmt: skip
            try:
                await scanner.start()
                return scanner
            except BleakError as exc:
                if "passive scanning" not in str(exc):
                    raise mapped(exc, what) from None
                self.log.warning(
                    "passive scanning unavailable, scanning actively",
                    adapter=self.adapter, reason=str(exc),
                )  # fmt: skip
                self.mode = "active"
            except (OSError, EOFError) as exc:
                raise mapped(exc, what) from None
        self.mode = "active"
        scanner = BleakScanner(callback, scanning_mode="active", bluez={"adapter": self.adapter})
        try:
            await scanner.start()
        except (BleakError, OSError, EOFError) as exc:
            raise mapped(exc, what) from None
        return scanner

    async def _watch(self, watch: MessageBus, owner: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.options.health_interval)
            if not watch.connected:
                raise BusUnavailable("D-Bus connection lost")
            if await _bluez_owner(watch, self.adapter) != owner:
                raise BusUnavailable("bluetoothd restarted")
            props = await _adapter_props(watch, self.adapter)
            if not props.get("Powered", False):
                raise BusUnavailable(f"adapter {self.adapter} is powered off")
            if self.mode == "active" and not props.get("Discovering", False):
                raise BusUnavailable(f"adapter {self.adapter} stopped discovering")
            silent = loop.time() - self.last_advert
            if self.options.silence_timeout and silent > self.options.silence_timeout:
                raise BusUnavailable(f"no advertisements for {int(silent)} s")


async def _connect_system_bus(adapter: str) -> MessageBus:
    try:
        async with asyncio.timeout(10):
            return await MessageBus(bus_type=BusType.SYSTEM).connect()
    except (OSError, EOFError, AuthError, TimeoutError, DBusError) as exc:
        raise mapped(exc, f"adapter {adapter}") from None


async def _close(bus: MessageBus) -> None:
    if bus.connected:
        bus.disconnect()
    # collect the reason it ended, so a dead socket leaves no unretrieved future behind
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]  # dbus-fast leaves it unannotated


async def _dbus_call(bus: MessageBus, msg: Message, adapter: str) -> Message:
    try:
        async with asyncio.timeout(10):
            reply = await bus.call(msg)
    except (OSError, EOFError, TimeoutError, DBusError) as exc:
        raise mapped(exc, f"adapter {adapter}") from None
    if reply is None:
        raise BusUnavailable("D-Bus connection lost")
    return reply


async def _bluez_owner(bus: MessageBus, adapter: str) -> str:
    reply = await _dbus_call(
        bus,
        Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="GetNameOwner", signature="s",
            body=["org.bluez"],
        ),
        adapter,
    )  # fmt: skip
    if reply.message_type == MessageType.ERROR:
        raise BusUnavailable("BlueZ (bluetoothd) is not running or not answering")
    return str(reply.body[0])


async def _adapter_props(bus: MessageBus, adapter: str) -> dict[str, Any]:
    reply = await _dbus_call(
        bus,
        Message(
            destination="org.bluez", path=f"/org/bluez/{adapter}",
            interface="org.freedesktop.DBus.Properties", member="GetAll", signature="s",
            body=["org.bluez.Adapter1"],
        ),
        adapter,
    )  # fmt: skip
    if reply.message_type == MessageType.ERROR:
        if reply.error_name in NO_BLUEZ:
            raise BusUnavailable("BlueZ (bluetoothd) is not running or not answering")
        raise BusUnavailable(f"adapter {adapter} not present ({reply.error_name})")
    return {k: v.value for k, v in reply.body[0].items()}


class GattLink:
    """One GATT connection: `async with GattLink(...) as link:` connects; exit disconnects."""

    def __init__(self, device: BLEDevice, adapter: str, timeout: float) -> None:
        self.disconnected = asyncio.Event()
        self.timeout = timeout
        self.what = f"GATT {device.address}"
        self.client = BleakClient(
            device,
            disconnected_callback=lambda _client: self.disconnected.set(),
            timeout=timeout,
            bluez={"adapter": adapter},
        )

    async def __aenter__(self) -> GattLink:
        await self.connect()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self.client.connect()
        except (BleakError, OSError, EOFError, TimeoutError) as exc:
            with contextlib.suppress(BleakError, OSError, EOFError, TimeoutError):
                async with asyncio.timeout(5):
                    await self.client.disconnect()
            raise device_error(exc, self.what) from None

    async def close(self) -> None:
        with contextlib.suppress(BleakError, OSError, EOFError, TimeoutError, DBusError):
            async with asyncio.timeout(10):
                await self.client.disconnect()

    def characteristics(self, uuids: Iterable[str]) -> list[str]:
        """Those of `uuids` the device offers."""
        services = self.client.services
        return [u for u in uuids if services.get_characteristic(u) is not None]

    async def read(self, uuid: str) -> bytes:
        try:
            async with asyncio.timeout(self.timeout):
                return bytes(await self.client.read_gatt_char(uuid))
        except (BleakError, OSError, EOFError, TimeoutError) as exc:
            raise device_error(exc, self.what) from None

    async def subscribe(self, uuid: str, callback: Callable[[str, bytes], None]) -> None:
        def on_value(_char: Any, data: bytearray) -> None:
            callback(uuid, bytes(data))

        try:
            async with asyncio.timeout(self.timeout):
                await self.client.start_notify(uuid, on_value)
        except (BleakError, OSError, EOFError, TimeoutError) as exc:
            raise device_error(exc, self.what) from None
