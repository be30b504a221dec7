"""The BLE bus task: one per adapter (or replay file); feeds adverts through the router.

An advert source (drivers.ble.transport for a live adapter, drivers.ble.replay for a recorded
file) calls `offer` (non-blocking, from a scanner callback) or awaits `put` (a replay, which
may wait for the outbox). Adverts from addresses nobody configured are dropped before they
are queued. The bus task consumes the queue through the Router and awaits the sink with what
comes out; a ticker drives presence timeouts, silence and throttled values; GATT sessions
(drivers.ble.gatt) hand in their decoded values here too. All of it lives in one TaskGroup
inside `run`, so cancelling the bus stops every piece. This module imports no BLE library.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from drivers.ble.advert import Advert, Decoded
from drivers.ble.decoder import BleDecoder, EssDecoder
from drivers.ble.options import BleBusOptions, BleDeviceOptions, ReplayOptions
from drivers.ble.router import Action, Emission, Router, StateChange
from gateway.contract import BusConfig, BusContext, decoder_as, options_as
from gateway.logs import debugging

Clock = Callable[[], float]


class AdvertSource(Protocol):
    async def run(self, bus: BleBus) -> None:
        """Deliver adverts to `bus` until cancelled; recover from its own I/O trouble."""
        ...


Session = Callable[["BleBus"], Coroutine[Any, Any, None]]


class BleBus:
    def __init__(
        self,
        bus: BusConfig,
        ctx: BusContext,
        source: AdvertSource,
        *,
        sessions: Sequence[Session] = (),
        queue_size: int = 2000,
        tick: float = 1.0,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.name = bus.name
        self.config = bus
        self.ctx = ctx
        self.log = ctx.log
        self._debug = debugging(ctx.log)  # every advertisement heard
        self.source = source
        self.sessions = tuple(sessions)
        self.clock = clock
        self.wall = wall
        self.tick = tick
        self.router = Router(bus.devices, clock())
        self.addresses = self.router.addresses
        self.queue: asyncio.Queue[Advert] = asyncio.Queue(queue_size)
        self.overflows = 0
        self.idle = asyncio.Event()  # set whenever the queue has been drained (tests, bench)

    # -- called by sources -------------------------------------------------------------------
    def offer(self, advert: Advert) -> None:
        """Queue an advert without waiting; a full queue drops it (counted, never blocks)."""
        if advert.address not in self.addresses:
            self.router.counters.ignored += 1
            return
        try:
            self.queue.put_nowait(advert)
            self.idle.clear()
        except asyncio.QueueFull:
            self.overflows += 1

    async def put(self, advert: Advert) -> None:
        """Queue an advert, waiting for room (replays follow the outbox's pace)."""
        if advert.address not in self.addresses:
            self.router.counters.ignored += 1
            return
        self.idle.clear()
        await self.queue.put(advert)

    # -- called by GATT sessions -------------------------------------------------------------
    async def deliver(self, device_id: str, decoded: Decoded) -> None:
        await self._apply(self.router.decoded(device_id, decoded, self.clock(), self.wall()))

    async def fail(self, device_id: str, reason: str) -> None:
        await self._apply(self.router.failed(device_id, reason))

    # -- the task ------------------------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.source.run(self), name=f"{self.name}-source")
            tg.create_task(self._ticker(), name=f"{self.name}-ticker")
            for session in self.sessions:
                tg.create_task(session(self))
            await self._consume()

    async def _consume(self) -> None:
        while True:
            if self.queue.empty():
                self.idle.set()
            advert = await self.queue.get()
            if self._debug:
                self.log.debug("advert", address=advert.address, rssi=advert.rssi)
            await self._apply(self.router.advert(advert, self.clock(), self.wall()))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            await self._apply(self.router.tick(self.clock(), self.wall()))

    async def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Emission):
                await self.ctx.sink.emit(action.device, action.observations, action.ts)
            elif isinstance(action, StateChange):
                self.ctx.sink.device_state(action.device, action.available, action.reason)


def create(bus: BusConfig, ctx: BusContext) -> BleBus:
    """The bus for a replay file or a live adapter (with a GATT session per `gatt` device).

    Config parsing guarantees a `gatt` device has an ESS profile and a replay bus has none.
    """
    if bus.transport == "ble-replay":
        from drivers.ble.replay import ReplaySource

        replay = options_as(bus.options, ReplayOptions)
        return BleBus(bus, ctx, ReplaySource(replay, ctx.log), queue_size=replay.queue_size)

    from drivers.ble.gatt import GattSession
    from drivers.ble.transport import AdapterSource

    adapter = options_as(bus.options, BleBusOptions)
    decoders = [d.decoder for d in bus.devices if isinstance(d.decoder, BleDecoder)]
    source = AdapterSource(adapter, ctx.log, decoders)
    lock = asyncio.Lock()  # GATT connects on one adapter take turns
    sessions = [
        GattSession(device, decoder_as(device, EssDecoder), adapter, ctx.log, source, lock)
        for device in bus.devices
        if options_as(device.options, BleDeviceOptions).gatt != "off"
    ]
    return BleBus(bus, ctx, source, sessions=sessions, queue_size=adapter.queue_size)
