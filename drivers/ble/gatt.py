"""GATT client mode for connectable ESS sensors: read on an interval, or subscribe.

A `GattSession` runs inside its adapter's bus task. It waits until the scanner has seen the
sensor advertising (BlueZ must know the device), connects, finds which of the profile's ESS
characteristics the sensor offers, reads them once and then either (`gatt = "read"`)
disconnects and reconnects every `interval`, or (`gatt = "notify"`) stays connected and
forwards notifications. Values go through the ESS decoder and the bus's router like adverts.

Connecting pauses scanning on most controllers, so connects and reads on one adapter take
turns under one lock, each bounded by `connect_timeout`; a sensor that does not answer holds
the radio no longer than that. A dropped or failed connection is reported to the sink once
(through the router) and retried with gateway.supervise backoff. No bleak import here: the
link comes from drivers.ble.transport.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from drivers.ble.advert import Advert, uuid16
from drivers.ble.decoder import EssDecoder
from drivers.ble.options import BleBusOptions, BleDeviceOptions
from drivers.ble.router import device_params
from gateway.contract import DeviceConfig, Log, options_as
from gateway.errors import DecodeError, DeviceUnavailable, GatewayError
from gateway.supervise import Backoff, Health, supervise

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice

    from drivers.ble.bus import BleBus
    from drivers.ble.transport import AdapterSource, GattLink


class _Quiet:
    """Health's logger for sessions: the sink already logs device transitions once."""

    def info(self, *args: Any, **kw: Any) -> None:
        pass

    def warning(self, *args: Any, **kw: Any) -> None:
        pass


class GattSession:
    def __init__(
        self,
        device: DeviceConfig,
        decoder: EssDecoder,
        options: BleBusOptions,
        log: Log,
        source: AdapterSource,
        lock: asyncio.Lock,
    ) -> None:
        device_options = options_as(device.options, BleDeviceOptions)
        self.device = device
        self.decoder = decoder
        self.params = device_params(device)
        self.address = device_options.address
        self.mode = device_options.gatt
        self.options = options
        self.log = log
        self.source = source
        self.lock = lock
        self.connects = 0
        self.uuids = [uuid16(u) for u in self.decoder.points]

    async def __call__(self, bus: BleBus) -> None:
        backoff = Backoff(self.options.reconnect_min, self.options.reconnect_max)
        await supervise(lambda h: self._attempt(bus, h), Health(_Quiet(), self.device.id), backoff)

    async def _attempt(self, bus: BleBus, health: Health) -> None:
        try:
            await self._session(bus, health)
        except GatewayError as exc:
            await bus.fail(self.device.id, str(exc))
            raise

    async def _wait_advertising(self) -> BLEDevice:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(self.options.connect_timeout, 30.0)
        while (found := self.source.device(self.address)) is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DeviceUnavailable(f"{self.address} not seen advertising")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.source.seen.wait()
        return found

    async def _session(self, bus: BleBus, health: Health) -> None:
        from drivers.ble.transport import GattLink

        while True:
            ble_device = await self._wait_advertising()
            link = GattLink(ble_device, self.options.adapter, self.options.connect_timeout)
            notes: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(100)
            async with self.lock:  # one adapter, one connect at a time (see module docstring)
                await link.connect()
            try:
                self.connects += 1
                async with self.lock:
                    values = await self._prepare(link, notes)
                health.up()
                await self._deliver(bus, values)
                if self.mode == "notify":
                    await self._follow(bus, link, notes, values)
            finally:
                await link.close()
            await asyncio.sleep(max(self.device.interval, 1.0))

    async def _prepare(
        self, link: GattLink, notes: asyncio.Queue[tuple[str, bytes]]
    ) -> dict[str, bytes]:
        """Read every profile characteristic the sensor offers; subscribe in notify mode."""
        present = link.characteristics(self.uuids)
        if not present:
            raise DeviceUnavailable("offers none of the profile's ESS characteristics")
        values = {u: await link.read(u) for u in present}
        if self.mode == "notify":
            for u in present:
                await link.subscribe(u, lambda uuid, data: _put(notes, (uuid, data)))
        return values

    async def _follow(
        self,
        bus: BleBus,
        link: GattLink,
        notes: asyncio.Queue[tuple[str, bytes]],
        values: dict[str, bytes],
    ) -> None:
        """Deliver every notification with the latest values of the other characteristics,
        so a throttled emission carries the whole sensor, not just the last one to change."""
        gone = asyncio.create_task(link.disconnected.wait())
        try:
            while True:
                get = asyncio.create_task(notes.get())
                done, _ = await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    raise DeviceUnavailable("connection dropped")
                uuid, data = get.result()
                values[uuid] = data
                await self._deliver(bus, values)
        finally:
            gone.cancel()

    async def _deliver(self, bus: BleBus, values: dict[str, bytes]) -> None:
        try:
            decoded = self.decoder.decode_advert(Advert(self.address, service=values), self.params)
        except DecodeError as exc:
            await bus.fail(self.device.id, f"cannot decode: {exc}")
            return
        await bus.deliver(self.device.id, decoded)


def _put(queue: asyncio.Queue[tuple[str, bytes]], item: tuple[str, bytes]) -> None:
    if not queue.full():  # a flood of notifications is sampled, never queued without bound
        queue.put_nowait(item)
