"""The synthetic bus's schedule (drivers.synthetic.bus): each device on its own interval, first
polls spread across it, `count` polls per device and then off the schedule, devices that are
due together in their configured order. Real loop time, short intervals; a recording sink."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

from drivers.synthetic.bus import SyntheticBus
from drivers.synthetic.options import BusOptions, DeviceOptions
from drivers.synthetic.pattern import Point
from gateway.contract import BusConfig, BusContext, DeviceConfig

LEVEL = Point("level", "cm", "counter")


class Recorder:
    """A sink that records (device, loop time, the counter value) of every emit."""

    def __init__(self) -> None:
        self.emits: list[tuple[str, float, object]] = []
        self.changed = asyncio.Event()

    async def emit(self, device: str, observations: Sequence[object], ts: float | None = None):
        value = observations[0][1]  # type: ignore[index]
        self.emits.append((device, asyncio.get_running_loop().time(), value))
        self.changed.set()

    def device_state(self, device: str, available: bool, reason: str = "") -> None:
        pass


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, event: str, **kw: object) -> None:
        self.lines.append(event)

    warning = error = debug = info


def device(id: str, interval: float, replicas: int = 1, count: int = 0) -> DeviceConfig:
    opts = DeviceOptions(points=(LEVEL,), replicas=replicas, count=count)
    return DeviceConfig(id=id, profile="synthetic", interval=interval, options=opts)


async def run_until_finished(*devices: DeviceConfig) -> tuple[Recorder, Log, float]:
    sink, log = Recorder(), Log()
    bus = SyntheticBus(BusConfig("syn", "synthetic", devices, BusOptions()), BusContext(sink, log))  # type: ignore[arg-type]
    start = asyncio.get_running_loop().time()
    task = asyncio.create_task(bus.run())
    try:
        async with asyncio.timeout(10):
            while "synthetic devices finished their counts" not in log.lines:
                sink.changed.clear()
                await asyncio.wait([task, asyncio.ensure_future(sink.changed.wait())], timeout=0.05)
                assert not task.done(), task  # the bus never ends on its own
    finally:
        task.cancel()
    return sink, log, start


def by_device(sink: Recorder) -> dict[str, list[tuple[float, object]]]:
    out: dict[str, list[tuple[float, object]]] = {}
    for name, t, value in sink.emits:
        out.setdefault(name, []).append((t, value))
    return out


async def test_each_replica_polls_count_times_on_its_own_spread_schedule() -> None:
    sink, _, start = await run_until_finished(device("dev", 0.2, replicas=4, count=3))
    polls = by_device(sink)
    assert sorted(polls) == ["dev-000", "dev-001", "dev-002", "dev-003"]
    # First polls spread across the interval, in the configured order.
    assert [name for name, _, _ in sink.emits[:4]] == sorted(polls)
    for i, name in enumerate(sorted(polls)):
        times = [t for t, _ in polls[name]]
        assert len(times) == 3 and [v for _, v in polls[name]] == [0, 1, 2]  # the counter
        assert times[0] >= start + 0.2 * i / 4 - 1e-6
        # Never early: each poll at least an interval after the one before.
        assert all(b - a >= 0.2 - 1e-6 for a, b in itertools.pairwise(times))


async def test_devices_due_together_go_in_their_configured_order() -> None:
    # Interval 0: every device is due at every turn, so polls go round in configured order.
    sink, _, _ = await run_until_finished(device("b", 0.0, count=2), device("a", 0.0, count=2))
    assert [name for name, _, _ in sink.emits] == ["b", "a", "b", "a"]


async def test_a_slow_device_does_not_hold_back_a_fast_one_and_a_finished_one_stops() -> None:
    sink, _, start = await run_until_finished(
        device("slow", 0.5, count=1), device("fast", 0.05, count=6)
    )
    polls = by_device(sink)
    assert len(polls["slow"]) == 1 and len(polls["fast"]) == 6
    # The fast device's six polls (at least 0.25 s in all) are not spaced out to the slow one's.
    fast = [t for t, _ in polls["fast"]]
    assert fast[-1] - fast[0] >= 0.25 - 1e-6
    assert fast[-1] - start < 2.0  # six polls of 0.05 s, not six of 0.5 s (3 s)
