"""The one retry loop: the backoff schedule, health transitions logged once, `supervise` for
long-lived attempts and `retry` for work that is done once it succeeds."""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, field

import pytest

from gateway.errors import Permanent, Transient
from gateway.supervise import Backoff, Health, retry, supervise


@dataclass
class Recorder:
    """A logger that keeps (level, event, context) for each line."""

    lines: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)

    def info(self, event: str, **context: object) -> None:
        self.lines.append(("info", event, context))

    def warning(self, event: str, **context: object) -> None:
        self.lines.append(("warning", event, context))


def test_backoff_doubles_up_to_the_cap_and_resets():
    b = Backoff(initial=1.0, maximum=10.0, jitter=0.0)
    assert [b.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.failures == 6
    b.reset()
    assert b.failures == 0 and b.next_delay() == 1.0
    b.exhaust()
    assert b.next_delay() == 10.0


def test_backoff_jitter_stays_within_its_band_and_varies():
    b = Backoff(initial=4.0, maximum=4.0, jitter=0.25, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(200)]
    assert all(3.0 <= d <= 5.0 for d in delays)
    assert len(set(delays)) > 100  # not lock-step


async def test_health_logs_transitions_only():
    log = Recorder()
    h = Health(log, "thing")
    h.up()  # first up after start: nothing was down, nothing to say
    h.down("gone")
    h.down("still gone")
    h.up()
    h.up()
    assert [(lvl, ev) for lvl, ev, _ in log.lines] == [
        ("warning", "thing down"),
        ("info", "thing recovered"),
    ]
    assert log.lines[0][2] == {"reason": "gone"}
    assert h.transitions == 2 and h.down_reason is None


async def test_retry_returns_the_result_after_transient_failures_with_backoff():
    log = Recorder()
    health = Health(log, "peer")
    backoff = Backoff(initial=0.01, maximum=0.04, jitter=0.0)
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def attempt() -> str:
        calls.append(loop.time())
        if len(calls) < 4:
            raise Transient(f"refused #{len(calls)}")
        health.up()
        return "done"

    assert await retry(attempt, backoff, health=health) == "done"
    assert len(calls) == 4
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 0.009 and gaps[1] >= 0.019 and gaps[2] >= 0.039  # 0.01, 0.02, 0.04
    assert backoff.failures == 0  # a success resets the schedule
    # One warning for the outage (with the first reason and when the next try is), one line
    # for the recovery (with how long it was down).
    assert log.lines[0] == (
        "warning",
        "peer down",
        {"reason": "refused #1", "retry_in_s": 0.01},
    )
    assert [(lvl, ev, set(ctx)) for lvl, ev, ctx in log.lines][1:] == [
        ("info", "peer recovered", {"down_s"}),
    ]


async def test_retry_first_success_needs_no_wait_and_no_health():
    backoff = Backoff(initial=60.0, maximum=60.0)

    async def attempt() -> int:
        return 7

    assert await asyncio.wait_for(retry(attempt, backoff), 1.0) == 7
    assert backoff.failures == 0


async def test_retry_waits_the_maximum_after_a_permanent_error():
    backoff = Backoff(initial=0.001, maximum=0.2, jitter=0.0)
    health = Health(Recorder(), "peer")
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def attempt() -> None:
        calls.append(loop.time())
        if len(calls) == 1:
            raise Permanent("bad credentials")

    await retry(attempt, backoff, health=health)
    assert calls[1] - calls[0] >= 0.19  # not the initial 1 ms
    assert health.transitions == 1 and health.down_reason == "bad credentials (permanent)"


async def test_retry_wake_cuts_the_wait_short_and_is_not_lost_during_an_attempt():
    wake = asyncio.Event()
    backoff = Backoff(initial=30.0, maximum=30.0, jitter=0.0)
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            wake.set()  # e.g. a new relay state wanted while the write was failing
            raise Transient("no answer")
        return "ok"

    assert await asyncio.wait_for(retry(attempt, backoff, wake=wake), 2.0) == "ok"
    assert calls == 2


async def test_retry_lets_bugs_escape_at_once():
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        await retry(attempt, Backoff(initial=0.001))
    assert calls == 1


async def test_retry_is_cancelled_promptly_while_waiting():
    async def attempt() -> None:
        raise Transient("down")

    task = asyncio.create_task(retry(attempt, Backoff(initial=60.0, maximum=60.0)))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1.0)


async def test_supervise_reconnects_after_each_end_until_cancelled():
    log = Recorder()
    health = Health(log, "link")
    backoff = Backoff(initial=0.005, maximum=0.01, jitter=0.0)
    reasons = [Transient("reset by peer"), None, Permanent("bad config")]
    runs = 0
    done = asyncio.Event()

    async def attempt(h: Health) -> None:
        nonlocal runs
        runs += 1
        h.up()
        if runs > len(reasons):
            done.set()
            await asyncio.Event().wait()  # stays connected
        reason = reasons[runs - 1]
        if reason is not None:
            raise reason

    task = asyncio.create_task(supervise(attempt, health, backoff))
    await asyncio.wait_for(done.wait(), 2.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs == 4
    downs = [ctx["reason"] for lvl, _, ctx in log.lines if lvl == "warning"]
    assert downs == ["reset by peer", "ended", "bad config (permanent)"]


async def test_supervise_wake_cuts_the_backoff_short():
    wake = asyncio.Event()
    runs = 0
    second = asyncio.Event()

    async def attempt(h: Health) -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            second.set()
            await asyncio.Event().wait()
        raise Transient("unplugged")

    task = asyncio.create_task(
        supervise(attempt, Health(Recorder(), "bus"), Backoff(initial=30.0, jitter=0.0), wake=wake)
    )
    await asyncio.sleep(0.02)
    assert runs == 1
    wake.set()  # hotplug: the device is back
    await asyncio.wait_for(second.wait(), 2.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("loop", ["supervise", "retry"])
async def test_a_cancel_the_attempt_swallowed_still_stops_the_loop(loop: str):
    # Python 3.11's wait_for (pymodbus connects and asks through it) can turn our task's
    # cancel into an ordinary failure or a result when its inner call ends in the same loop
    # pass; the loop must not then sleep its backoff and retry for ever (a hung shutdown).
    started = asyncio.Event()
    runs = 0
    swallow = True

    async def swallowing() -> None:
        nonlocal runs
        runs += 1
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if not swallow:
                raise
            raise Transient("cannot open /dev/ttyUSB0") from None

    backoff = Backoff(initial=0.001, maximum=0.001, jitter=0.0)
    if loop == "supervise":

        async def attempt(h: Health) -> None:
            await swallowing()

        task = asyncio.create_task(supervise(attempt, Health(Recorder(), "bus"), backoff))
    else:
        task = asyncio.create_task(retry(swallowing, backoff))
    await asyncio.wait_for(started.wait(), 2.0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    if not done:  # stop the runaway loop so the failure is reported, not hung
        swallow = False
        task.cancel()
        await asyncio.wait({task}, timeout=2.0)
    assert done, f"the loop went on retrying after its cancel was swallowed ({runs} runs)"
    assert task.cancelled() and runs == 1
