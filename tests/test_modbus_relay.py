"""Relay timers and the `relay` command against an injected coil writer (no bus, no I/O)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator, Callable, Sequence

from drivers.modbus.relay import OffTimers, RelayActuator
from gateway.errors import DeviceUnavailable


class FlakyWriter:
    """A CoilWriter whose first `failures` writes are not confirmed; records every attempt."""

    def __init__(self, failures: int = 0) -> None:
        self.name = "fake"
        self.failures = failures
        self.attempts: list[tuple[str, int, tuple[bool, ...], float]] = []
        self.coils: dict[tuple[str, int], bool] = {}

    async def write_coils(self, device: str, address: int, values: Sequence[bool]) -> None:
        now = asyncio.get_running_loop().time()
        self.attempts.append((device, address, tuple(values), now))
        if self.failures:
            self.failures -= 1
            raise DeviceUnavailable(f"{device}: no answer")
        self.coils[(device, address)] = values[0]


@contextlib.asynccontextmanager
async def running(timers: OffTimers) -> AsyncIterator[None]:
    task = asyncio.create_task(timers.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_a_timed_relay_switches_back_off() -> None:
    writer = FlakyWriter()
    timers = OffTimers(writer, random.Random(1))
    relay = RelayActuator(writer, timers, "siren", {1: 0, 2: 1})
    async with running(timers):
        await relay.switch(2, True, seconds=0.1)
        assert writer.coils[("siren", 1)] is True and timers.pending() == [("siren", 2)]
        await until(lambda: writer.coils[("siren", 1)] is False)
    assert [a[2] for a in writer.attempts] == [(True,), (False,)]
    assert timers.pending() == [] and timers.retries == 0


async def test_an_unconfirmed_switch_off_is_retried_with_backoff_until_confirmed() -> None:
    writer = FlakyWriter(failures=3)
    timers = OffTimers(writer, random.Random(1), retry_initial=0.05, retry_max=0.2)
    relay = RelayActuator(writer, timers, "siren", {1: 0})
    writer.failures = 0
    await relay.switch(1, True, seconds=0.01)
    writer.failures = 3  # the module stops answering before the switch-off is due
    async with running(timers):
        await until(lambda: writer.coils[("siren", 0)] is False)
    offs = [a[3] for a in writer.attempts if a[2] == (False,)]
    assert len(offs) == 4 and timers.retries == 3 and timers.pending() == []
    gaps = [b - a for a, b in itertools.pairwise(offs)]
    # gateway.supervise.Backoff: 0.05, 0.1, 0.2 (capped), each jittered by +-20 %
    assert 0.04 <= gaps[0] < 0.09 and 0.08 <= gaps[1] < 0.15 and gaps[2] >= 0.16, gaps


async def test_an_explicit_command_replaces_a_pending_switch_off() -> None:
    writer = FlakyWriter()
    timers = OffTimers(writer, random.Random(1))
    relay = RelayActuator(writer, timers, "siren", {1: 0})
    async with running(timers):
        await relay.switch(1, True, seconds=0.1)
        await relay.switch(1, True)  # on until told otherwise
        await asyncio.sleep(0.3)
    assert writer.coils[("siren", 0)] is True and timers.pending() == []


async def test_a_switch_off_failing_while_the_bus_is_down_is_retried_when_it_is_back() -> None:
    writer = FlakyWriter(failures=1)
    timers = OffTimers(writer, random.Random(1), retry_initial=30.0, retry_max=60.0)
    relay = RelayActuator(writer, timers, "siren", {1: 0})
    writer.failures = 0
    await relay.switch(1, True, seconds=0.01)
    writer.failures = 1
    async with running(timers):
        await until(lambda: timers.retries == 1)
        timers.retry_now()  # what the bus does on reconnect: no 30 s wait
        await until(lambda: writer.coils[("siren", 0)] is False, within=2.0)
