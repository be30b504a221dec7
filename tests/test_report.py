"""The status report's cadence (gateway.report): how soon a change shows in status.json and on
systemd's STATUS= line, and that a steady gateway is not looked at every second.

The report runs on an event loop with a virtual clock (`VirtualLoop`: when nothing is ready it
jumps to the next timer), so a minute passes in no time and every assertion is about the
loop's clock, never about how long the test took. The runtime is a small fake (the counters
the report reads); the config is the real startup fixture's."""

from __future__ import annotations

import asyncio
import json
import selectors
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import FixedClock
from gateway.config.loader import parse
from gateway.notify import Notifier
from gateway.outbox.store import OutboxStats
from gateway.report import REFRESH, STEADY_TICK, TICK, Report
from gateway.uplink.stats import UplinkStats
from tests.configs import load_config


class JumpingSelector(selectors.DefaultSelector):
    """Never waits for a timer: moves the clock to it instead (real I/O still wakes it)."""

    now = 1000.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            return super().select(None)
        self.now += timeout
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.selector = JumpingSelector()
        super().__init__(self.selector)

    def time(self) -> float:
        return self.selector.now


@dataclass
class FakeOutbox:
    disk_full: bool = False

    def stats(self) -> OutboxStats:
        return OutboxStats(3, 300, {}, {}, 0, self.disk_full, 4, None)


@dataclass
class FakePipeline:
    available: dict[str, bool] = field(default_factory=dict)
    state_observers: list[Callable[[str, bool, str], None]] = field(default_factory=list)
    emitted: int = 0
    implausible: int = 0
    refused: int = 0


@dataclass
class FakeUplink:
    stats: UplinkStats


@dataclass
class FakeRuntime:
    cfg: Any
    outbox: FakeOutbox
    pipeline: FakePipeline
    uplink: FakeUplink


class StatusLines(Notifier):
    """Every STATUS= line the report sends, with the loop's time."""

    def __init__(self) -> None:
        super().__init__("")
        self.lines: list[tuple[float, str]] = []

    def status(self, text: str) -> None:
        self.lines.append((asyncio.get_running_loop().time(), text))


class CountedReport(Report):
    """The report, counting its looks (each starts with feeding the pressure watch)."""

    looks = 0

    def sample(self) -> None:
        self.looks += 1
        super().sample()


def runtime(tmp_path: Path, *, connected: bool) -> FakeRuntime:
    text = load_config("startup", port=1883, work=tmp_path, replicas=2, interval=60.0)
    cfg = parse(text, "<test>")
    return FakeRuntime(
        cfg,
        FakeOutbox(),
        FakePipeline({"dev-1": True, "dev-2": True}),
        FakeUplink(UplinkStats(connected=connected)),
    )


def run_virtual(scenario: Callable[[VirtualLoop], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=VirtualLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, VirtualLoop)
        runner.run(scenario(loop))


async def running_for(
    report: Report, seconds: float, change: Callable[[], None] | None = None, at: float = 0.0
) -> float:
    """Run the report for `seconds` of loop time, calling `change` at `at`; the loop's time at
    the start."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    task = asyncio.create_task(report.run())
    if change is not None:
        await asyncio.sleep(at)
        change()
        await asyncio.sleep(seconds - at)
    else:
        await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return start


def first_line_after(lines: list[tuple[float, str]], t: float, words: str) -> float:
    return next(when for when, text in lines if when >= t and words in text)


def test_a_steady_gateway_is_looked_at_every_few_seconds_and_reported_every_refresh(
    tmp_path,
) -> None:
    rt = runtime(tmp_path, connected=True)
    lines = StatusLines()
    report = CountedReport(rt, clock=FixedClock(1.8e9), notifier=lines)  # type: ignore[arg-type]

    async def scenario(loop: VirtualLoop) -> None:
        start = await running_for(report, 59.5)
        assert report.steady()
        times = [when - start for when, _ in lines.lines]
        # Written at start, then every REFRESH seconds (nothing changed): the file stays fresh
        # for `gateway status` (it calls a report older than 30 s stale).
        assert times == pytest.approx([REFRESH * i for i in range(6)], abs=0.01)
        assert json.loads(report.path.read_text())["uplink"]["connected"] is True

    run_virtual(scenario)
    assert report.looks == 60 / STEADY_TICK

    # The same minute with the link down: looked at every second.
    down = runtime(tmp_path, connected=False)
    unsettled = CountedReport(down, clock=FixedClock(1.8e9), notifier=StatusLines())  # type: ignore[arg-type]
    run_virtual(lambda loop: running_for(unsettled, 59.5))
    assert not unsettled.steady()
    assert unsettled.looks == 60 / TICK


@pytest.mark.parametrize(
    ("what", "change", "shows"),
    [
        ("the link goes", lambda rt: setattr(rt.uplink.stats, "connected", False), "uplink down"),
        ("the disk fills", lambda rt: setattr(rt.outbox, "disk_full", True), "DISK FULL"),
        ("a hold begins", lambda rt: setattr(rt.uplink.stats, "holding_until", 2e9), "holding"),
    ],
)
def test_a_change_in_a_steady_state_shows_at_the_next_look(tmp_path, what, change, shows) -> None:
    rt = runtime(tmp_path, connected=True)
    lines = StatusLines()
    report = Report(rt, clock=FixedClock(1.8e9), notifier=lines)  # type: ignore[arg-type]

    async def scenario(loop: VirtualLoop) -> None:
        start = await running_for(report, 30.0, lambda: change(rt), at=12.5)
        seen = first_line_after(lines.lines, start + 12.5, shows) - start
        # Looks at 0, 5, 10, 15 ...: the change at 12.5 shows at 15, not at the refresh (20).
        assert seen == pytest.approx(15.0, abs=0.01), what
        # Unsettled now: looked at every second until it settles.
        assert not report.steady()

    run_virtual(scenario)


def test_while_the_link_is_down_a_change_shows_within_a_second(tmp_path) -> None:
    rt = runtime(tmp_path, connected=False)
    lines = StatusLines()
    report = Report(rt, clock=FixedClock(1.8e9), notifier=lines)  # type: ignore[arg-type]

    def reconnect() -> None:
        rt.uplink.stats.connected = True

    async def scenario(loop: VirtualLoop) -> None:
        start = await running_for(report, 30.0, reconnect, at=12.5)
        seen = first_line_after(lines.lines, start + 12.5, "uplink up") - start
        assert 12.5 < seen <= 13.5

    run_virtual(scenario)


def test_a_device_change_shows_at_once_but_never_more_than_one_look_a_second(tmp_path) -> None:
    rt = runtime(tmp_path, connected=True)
    lines = StatusLines()
    report = Report(rt, clock=FixedClock(1.8e9), notifier=lines)  # type: ignore[arg-type]

    def device(name: str, available: bool) -> Callable[[], None]:
        def change() -> None:
            rt.pipeline.available[name] = available
            for observer in rt.pipeline.state_observers:  # what the pipeline does
                observer(name, available, "" if available else "no answer")

        return change

    async def scenario(loop: VirtualLoop) -> None:
        task = asyncio.create_task(report.run())
        start = loop.time()
        await asyncio.sleep(12.5)
        device("dev-1", False)()  # steady: the next look would be at 15
        await asyncio.sleep(0.1)
        written = [when - start for when, _ in lines.lines]
        assert written[-1] == pytest.approx(12.5, abs=0.01)  # at once
        status = json.loads(report.path.read_text())
        assert status["devices_down"]["dev-1"]["reason"] == "no answer"
        device("dev-2", False)()  # a burst of changes: one look a second at most
        device("dev-2", True)()
        device("dev-2", False)()
        await asyncio.sleep(1.5)
        written = [when - start for when, _ in lines.lines]
        assert written[-1] == pytest.approx(13.5, abs=0.01)
        assert json.loads(report.path.read_text())["devices_unavailable"] == ["dev-1", "dev-2"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(scenario)


def test_without_an_uplink_a_gateway_can_be_steady(tmp_path) -> None:
    rt = runtime(tmp_path, connected=False)
    rt.cfg = replace(rt.cfg, uplink=replace(rt.cfg.uplink, enabled=False))
    report = Report(rt, clock=FixedClock(1.8e9), notifier=StatusLines())  # type: ignore[arg-type]
    assert report.steady()
