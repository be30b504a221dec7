"""Local actions: siren and flash relays switched at once, off after their duration, to the
rest state at start (also after a crash mid-siren), patterns, quiet hours — with a recording
fake relay here; with the Modbus simulator through the whole daemon in test_alert_daemon."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import structlog

from gateway.alerts.actions import Actions, in_quiet_hours
from gateway.alerts.config import ActionConfig
from tests.alert_setup import FakeRelay

JST = ZoneInfo("Asia/Tokyo")
NOON = datetime(2026, 6, 1, 12, 0, tzinfo=JST).timestamp()
NIGHT = datetime(2026, 6, 1, 23, 30, tzinfo=JST).timestamp()
QUIET = ((21, 0), (5, 30))


def actions(relay: FakeRelay, *, wall: float = NOON, **siren: object) -> Actions:
    cfg = {
        "siren": ActionConfig(
            "siren", "relay-1", 1, **{"seconds": 0.3, "at_night": "skip", **siren}
        ),  # type: ignore[arg-type]
        "flash": ActionConfig("flash", "relay-1", 2, seconds=0.4, pattern=(0.05, 0.05)),
    }
    return Actions(
        cfg,
        {"relay-1": relay},
        quiet=QUIET,
        timezone="Asia/Tokyo",
        wall=lambda: wall,
        log=structlog.get_logger(),
        retry=0.02,
    )


async def until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async def _poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(_poll(), timeout)


@contextlib.asynccontextmanager
async def running(a: Actions):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(a.run())
    try:
        yield a
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_rest_state_first_then_on_then_off_after_the_duration():
    relay = FakeRelay()
    async with running(actions(relay)) as a:
        await until(lambda: relay.state(1) is False and relay.state(2) is False)
        assert a.trigger("siren")
        await until(lambda: relay.state(1) is True)
        await until(lambda: relay.writes[-1] == (1, False))
    assert [w for w in relay.writes if w[0] == 1] == [(1, False), (1, True), (1, False)]


async def test_a_relay_that_does_not_answer_is_retried_until_it_is_off():
    relay = FakeRelay(fail=True)
    async with running(actions(relay)) as a:
        a.trigger("siren")
        await asyncio.sleep(0.05)
        assert relay.writes == []
        relay.fail = False  # the bus is back
        await until(lambda: (1, True) in relay.writes)
        await until(lambda: relay.state(1) is False)
    assert relay.state(1) is False


async def test_restart_during_a_siren_leaves_the_relay_off():
    relay = FakeRelay()
    async with running(actions(relay, seconds=60)) as a:
        a.trigger("siren")
        await until(lambda: relay.state(1) is True)
        relay.fail = True  # the process dies: nothing it tries on the way out gets through
    assert relay.state(1) is True
    relay.fail = False
    async with running(actions(relay, seconds=60)):
        await until(lambda: relay.state(1) is False)  # the rest state, at once after start


async def test_flash_pattern_toggles_and_ends_off():
    relay = FakeRelay()
    async with running(actions(relay)) as a:
        await until(lambda: relay.state(2) is False)
        a.trigger("flash")
        await until(lambda: relay.writes.count((2, True)) >= 2)
        await until(lambda: not a.active("flash") and relay.state(2) is False)
    flash = [on for ch, on in relay.writes if ch == 2]
    assert all(x != y for x, y in itertools.pairwise(flash))  # only changes written


async def test_quiet_hours_skip_the_siren_but_not_the_flash():
    relay = FakeRelay()
    async with running(actions(relay, wall=NIGHT)) as a:
        assert a.trigger("siren") is False
        assert a.trigger("flash") is True
        await until(lambda: (2, True) in relay.writes)
        assert (1, True) not in relay.writes
        assert a.trigger("siren", 0.1, force=True)  # a platform command overrides
        await until(lambda: (1, True) in relay.writes)


@pytest.mark.parametrize(
    ("hhmm", "quiet", "expected"),
    [
        ((20, 59), QUIET, False),
        ((21, 0), QUIET, True),
        ((0, 0), QUIET, True),
        ((5, 29), QUIET, True),
        ((5, 30), QUIET, False),
        ((12, 0), ((12, 0), (13, 0)), True),  # a span within one day
        ((13, 0), ((12, 0), (13, 0)), False),
        ((3, 0), None, False),
    ],
)
def test_quiet_hours_span_midnight(hhmm, quiet, expected):
    ts = datetime(2026, 6, 1, *hhmm, tzinfo=JST).timestamp()
    assert in_quiet_hours(quiet, ts, JST) is expected


class CountingRelay(FakeRelay):
    """A FakeRelay that also counts the writes it did not confirm."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__(fail=fail)
        self.failed = 0

    async def switch(self, channel: int, on: bool) -> None:
        if self.fail:
            self.failed += 1
        await super().switch(channel, on)


async def test_unconfirmed_writes_back_off_and_are_logged_once_per_outage():
    relay = CountingRelay(fail=True)
    a = actions(relay)
    a.channels.pop("flash")  # one channel: its failures alone are counted
    with structlog.testing.capture_logs() as logs:
        async with running(a):
            await asyncio.sleep(0.5)
            # Backoff 0.02 s doubling to the 5 s cap: about 5 tries in 0.5 s, not 25.
            assert 3 <= relay.failed <= 8
            relay.fail = False
            a.trigger("siren")  # a new wanted state cuts the backoff short
            await until(lambda: relay.state(1) is True, timeout=1.0)
    events = [(e["event"], e.get("action")) for e in logs if e["event"].startswith("relay ")]
    assert events[:2] == [("relay down", "siren"), ("relay recovered", "siren")]
    assert events.count(("relay down", "siren")) == 1


async def test_a_missing_relay_module_is_a_permanent_problem_retried_at_the_cap():
    relay = FakeRelay()
    live: dict[str, FakeRelay] = {}
    a = Actions(
        {"siren": ActionConfig("siren", "relay-1", 1, seconds=0.3)},
        live,
        wall=lambda: NOON,
        log=structlog.get_logger(),
        retry=0.01,
        retry_max=0.2,
    )
    with structlog.testing.capture_logs() as logs:
        async with running(a):
            await asyncio.sleep(0.05)
            live["relay-1"] = relay  # the module turns up (a demo swaps actuators like this)
            await until(lambda: relay.state(1) is False, timeout=2.0)
    down = [e for e in logs if e["event"] == "relay down"]
    assert len(down) == 1 and "(permanent)" in down[0]["reason"]
    assert 'no relay module "relay-1"' in down[0]["reason"]
