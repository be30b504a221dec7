"""The Modbus channel's request deadline (drivers.modbus.channel), on a loop with a virtual clock.

Requests asked in a row share one loop timer, re-armed when it fires for a request that is not
yet due; these pin what that must not change: a silent unit's request ends exactly at its own
deadline, however long the run of answered requests before it, and a channel with nothing in
flight leaves no timer behind to wake an idle poller. The loop (`DeadlineLoop`) jumps its
clock to the next timer when nothing is ready and records every wait, so each assertion is
about the loop's clock and its wake-ups, never about how long the test took; the peer is a
fake transport that answers after a set delay of loop time.
"""

from __future__ import annotations

import asyncio
import selectors
import struct
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

from drivers.modbus.channel import Channel

READ_2 = bytes.fromhex("0300000002")  # holding 0+2
WITHIN = 0.5


class JumpingSelector(selectors.DefaultSelector):
    """Never sleeps: moves the clock to the next timer instead, and records each such wait."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.waits: list[float] = []  # the loop's wake-ups by timer, each as its wait

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise AssertionError("the loop would wait forever: nothing scheduled")
        self.now += timeout
        self.waits.append(timeout)
        return []


class DeadlineLoop(asyncio.SelectorEventLoop):
    """A virtual clock, and a count of the timers asked for (call_later goes through call_at)."""

    def __init__(self) -> None:
        self.selector = JumpingSelector()
        self.timers = 0
        super().__init__(self.selector)

    def time(self) -> float:
        return self.selector.now

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> Any:
        self.timers += 1
        return super().call_at(when, callback, *args, context=context)


class Peer(asyncio.Transport):
    """The other end: answers each request (an MBAP frame) `delay` seconds of loop time later,
    with registers [n, n] for the n-th request, or keeps quiet once `silent` is set."""

    def __init__(self, channel: Channel, delay: float) -> None:
        super().__init__()
        self.channel, self.delay = channel, delay
        self.asked = 0
        self.silent = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.asked += 1
        if self.silent:
            return
        tid, _, _, unit = struct.unpack(">HHHB", bytes(data[:7]))
        body = struct.pack(">BBHH", 3, 4, self.asked, self.asked)
        answer = struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body
        loop = asyncio.get_running_loop()
        # As a socket transport delivers: a loop callback, not a call from inside write().
        if self.delay:
            loop.call_later(self.delay, self.channel.data_received, answer)
        else:
            loop.call_soon(self.channel.data_received, answer)

    def close(self) -> None:
        pass


def run(scenario: Callable[[DeadlineLoop], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=DeadlineLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, DeadlineLoop)
        runner.run(scenario(loop))


def connected(delay: float) -> tuple[Channel, Peer]:
    channel = Channel(rtu=False)
    peer = Peer(channel, delay)
    channel.connection_made(peer)
    return channel, peer


async def ask(channel: Channel) -> ModbusPDU | None:
    return await channel.ask(1, READ_2, ReadHoldingRegistersResponse, WITHIN)


def registers(answer: ModbusPDU | None) -> list[int]:
    assert isinstance(answer, ReadHoldingRegistersResponse)
    return list(answer.registers)


async def only_own_wakeup(loop: DeadlineLoop) -> None:
    """A minute's rest wakes the loop once, at its end: no deadline timer was left armed."""
    loop.selector.waits.clear()
    await asyncio.sleep(60.0)
    assert loop.selector.waits == [pytest.approx(60.0)]


async def unanswered_until_its_deadline(loop: DeadlineLoop, channel: Channel, peer: Peer) -> None:
    """The peer goes silent: the next request ends unanswered exactly WITHIN after it."""
    peer.silent = True
    asked = loop.time()
    assert await ask(channel) is None
    assert loop.time() - asked == pytest.approx(WITHIN)


def test_requests_in_a_row_share_one_timer_and_leave_none_behind_for_an_idle_loop() -> None:
    async def scenario(loop: DeadlineLoop) -> None:
        channel, _ = connected(delay=0.0)
        before = loop.timers
        for n in range(1, 51):  # as the bus polls: the next request in the same step
            assert registers(await ask(channel)) == [n, n]
        assert loop.timers - before == 1  # one deadline timer for the whole run
        # Then the poller rests: the only wake-up is its own, none at the last deadline.
        await only_own_wakeup(loop)

    run(scenario)


def test_a_silent_request_after_a_long_run_ends_at_its_own_deadline_not_an_earlier_ones() -> None:
    async def scenario(loop: DeadlineLoop) -> None:
        # Each answer takes 0.1 s: the run outlasts the first request's deadline, so the
        # shared timer fires while later requests are in flight and must re-arm for them.
        channel, peer = connected(delay=0.1)
        for n in range(1, 13):
            assert registers(await ask(channel)) == [n, n]
        await unanswered_until_its_deadline(loop, channel, peer)
        # It still answers afterwards, and a second silence also takes exactly its time.
        peer.silent = False
        assert registers(await ask(channel)) == [14, 14]
        await unanswered_until_its_deadline(loop, channel, peer)

    run(scenario)


def test_a_request_given_up_by_its_asker_leaves_no_timer_to_wake_the_loop() -> None:
    async def scenario(loop: DeadlineLoop) -> None:
        channel, peer = connected(delay=0.0)
        assert registers(await ask(channel)) == [1, 1]
        peer.silent = True
        asking = asyncio.create_task(ask(channel))
        await asyncio.sleep(0)  # on the wire
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
        await only_own_wakeup(loop)

    run(scenario)


def test_a_timer_armed_for_a_later_deadline_gives_way_to_a_shorter_request() -> None:
    async def scenario(loop: DeadlineLoop) -> None:
        channel, peer = connected(delay=0.0)
        # A long request answered, then at once a short one that nobody answers: it ends at
        # its own, earlier deadline, not at the long one's.
        assert registers(await channel.ask(1, READ_2, ReadHoldingRegistersResponse, 30.0)) == [
            1,
            1,
        ]
        await unanswered_until_its_deadline(loop, channel, peer)

    run(scenario)
