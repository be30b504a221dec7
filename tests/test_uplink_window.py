"""The telemetry batch window across an outage, against a real mosquitto: the window counts
from the oldest waiting row, so rows that waited a window while the broker was away go right
after the reconnect (and its resume hold), not a whole window later.

The event loop's clock is the test's (`SkewedLoop`): moving it forward by a window makes rows
"wait" 10 minutes in no time, and nothing here asserts how long anything took."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
import structlog

from gateway.demo.broker import LocalBroker
from gateway.outbox.store import Outbox
from tests.relay import Relay
from tests.test_uplink import BASE, make_uplink, readings, running, wait_until

WINDOW = 600.0  # the default is 60 s; longer than any test could wait for by accident


class SkewedLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock the test moves forward (timers due by then fire at once)."""

    skew = 0.0

    def time(self) -> float:
        return super().time() + self.skew


async def outage_of_a_window(tmp_path: Path, loop: SkewedLoop) -> None:
    log = structlog.get_logger().bind(test=True)
    with LocalBroker(tmp_path / "b") as broker:
        cfg = replace(BASE, port=broker.port, batch_window=WINDOW, resume_delay=0.3)
        async with Outbox.open(tmp_path / "o.db") as ob, running(make_uplink(cfg, ob, log)) as up:
            await wait_until(lambda: up.stats.connected)
            await ob.append(readings(ob, 3))  # waits for the window, connected
            broker.stop()
            await wait_until(lambda: not up.stats.connected)
            await ob.append(readings(ob, 2))  # waits for the window, the link down
            loop.skew += WINDOW  # ten minutes of outage
            broker.start()  # without persistence: our session is gone, the resume hold applies
            await wait_until(lambda: up.stats.acked_readings == 5)
            assert ob.rows == 0 and up.stats.connects == 2
            assert up.stats.resume_holds == 1  # the hold after a lost session is kept
            # A row appended now opens a new window: it waits for it, then goes.
            await ob.append(readings(ob, 1))
            await asyncio.sleep(0.5)
            assert ob.rows == 1 and up.stats.acked_readings == 5
            loop.skew += WINDOW
            await wait_until(lambda: up.stats.acked_readings == 6)
            assert ob.rows == 0


@pytest.mark.slow  # a broker restart
def test_rows_that_waited_a_window_in_an_outage_go_right_after_the_reconnect(tmp_path):
    with asyncio.Runner(loop_factory=SkewedLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, SkewedLoop)
        runner.run(outage_of_a_window(tmp_path, loop))


async def lost_in_flight(tmp_path: Path, loop: SkewedLoop) -> None:
    log = structlog.get_logger().bind(test=True)
    with LocalBroker(tmp_path / "b") as broker:
        relay = await Relay(broker.port).__aenter__()
        cfg = replace(BASE, port=relay.port, batch_window=WINDOW, resume_delay=0.3)
        try:
            async with (
                Outbox.open(tmp_path / "o.db") as ob,
                running(make_uplink(cfg, ob, log)) as up,
            ):
                await wait_until(lambda: up.stats.connected)
                relay.hold.clear()  # the broker's PUBACKs stop on the way
                await ob.append(readings(ob, 3))
                loop.skew += WINDOW  # their window closes: leased and published...
                await wait_until(lambda: up.stats.published_readings == 3)
                await relay.close()  # ...and the link goes before their PUBACK comes
                await wait_until(lambda: not up.stats.connected)
                assert ob.rows == 3 and up.stats.acked_readings == 0
                async with Relay(broker.port, port=relay.port):
                    # Due before the link went, due after it: no new window for them.
                    await wait_until(lambda: up.stats.acked_readings == 3)
                    assert ob.rows == 0 and up.stats.connects == 2
        finally:
            await relay.close()


@pytest.mark.slow  # a lost connection and a reconnect
def test_rows_in_flight_when_the_link_goes_are_due_at_once_in_the_next_session(tmp_path):
    with asyncio.Runner(loop_factory=SkewedLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, SkewedLoop)
        runner.run(lost_in_flight(tmp_path, loop))
