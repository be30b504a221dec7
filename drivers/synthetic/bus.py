"""The synthetic bus task: polls every synthetic device on its interval and emits values.

No I/O besides the sink; never raises on its own.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections.abc import Iterator

from drivers.synthetic.options import BusOptions, DeviceOptions
from drivers.synthetic.pattern import PATTERNS
from gateway.contract import BusConfig, BusContext, DeviceConfig, options_as
from gateway.model import Observation

_new_tuple = tuple.__new__


def expand(bus: BusConfig) -> Iterator[tuple[str, DeviceConfig, DeviceOptions]]:
    """(key, device, its options) for every device, replicas named <id>-000 ..."""
    for device in bus.devices:
        opts = options_as(device.options, DeviceOptions)
        if opts.replicas == 1:
            yield device.id, device, opts
        else:
            width = max(3, len(str(opts.replicas - 1)))
            for i in range(opts.replicas):
                yield f"{device.id}-{i:0{width}d}", device, opts


class SyntheticBus:
    """One task for all synthetic devices of a bus; never raises on its own."""

    def __init__(self, bus: BusConfig, ctx: BusContext) -> None:
        self.name = bus.name
        self.bus = bus
        self.ctx = ctx
        self.rng = random.Random(options_as(bus.options, BusOptions).seed)

    def _observe(self, opts: DeviceOptions, n: int, t: float) -> list[Observation]:
        # Every field in Observation's order, each tuple built in one call: the bench's
        # source must cost little beside the gateway it feeds (gateway.model says why).
        rng = self.rng
        return [
            _new_tuple(
                Observation, (p.quantity, PATTERNS[p.pattern](p, n, t, rng), p.unit, None, True)
            )
            for p in opts.points
        ]

    async def run(self) -> None:
        devices = list(expand(self.bus))
        if not devices:
            await asyncio.Event().wait()
        # Each device keeps its own schedule; spread first polls so 100 devices at one
        # reading a minute do not wake together. The schedule is a heap of (due, index): a
        # wake-up costs the devices that are due, not a look at every device (at 100 devices
        # and one reading a minute each, that look was ~0.03 % of a core under cProfile).
        loop = asyncio.get_running_loop()
        start = loop.time()
        schedule = [
            (start + (d.interval * i / len(devices) if d.interval > 0 else 0.0), i)
            for i, (_, d, _) in enumerate(devices)
        ]
        heapq.heapify(schedule)
        polls = [0] * len(devices)
        while schedule:
            now = loop.time()
            if schedule[0][0] > now:
                await asyncio.sleep(schedule[0][0] - now)
                now = loop.time()
            wall = time.time()
            due = []
            while schedule and schedule[0][0] <= now:
                due.append(heapq.heappop(schedule)[1])
            for i in sorted(due):  # in the order the devices are configured
                key, device, opts = devices[i]
                if opts.count and polls[i] >= opts.count:
                    continue  # done: off the schedule
                await self.ctx.sink.emit(key, self._observe(opts, polls[i], wall), wall)
                polls[i] += 1
                heapq.heappush(schedule, (now + max(device.interval, 0.0), i))
        self.ctx.log.info("synthetic devices finished their counts", bus=self.name)
        await asyncio.Event().wait()
