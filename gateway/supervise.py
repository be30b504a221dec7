"""The one retry loop: capped exponential backoff with jitter, logged on transitions only.

Two shapes of the same loop. A long-lived component (a bus, the uplink) hands `supervise` an
`attempt` coroutine function that connects, serves and returns or raises when the connection
ends; it runs until cancelled. A piece of work that is done once it succeeds (a batch of mail,
a relay write) hands `retry` an attempt that it runs until one returns, and gets its result.
`Transient` errors are retried after a backoff delay that grows 2x per failure up to a cap, is
jittered so a field of boxes does not reconnect in lock-step, and resets after a healthy
period (`supervise`) or a success (`retry`). A `Permanent` error is retried at the cap only. A
`wake` event (udev hotplug, an alert that needs the link, a new relay state) cuts the wait short.
Anything that is not a GatewayError is a bug and escapes (the process exits, systemd restarts).
This module logs only through the `Health` it is given and knows nothing of what it retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.errors import Permanent, Transient

T = TypeVar("T")


@dataclass
class Backoff:
    """Delay schedule: initial * 2**n, capped at maximum, each delay jittered by +-jitter."""

    initial: float = 5.0
    maximum: float = 300.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    _failures: int = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * (2.0 ** min(self._failures, 30)))
        self._failures += 1
        return max(0.0, base * (1 + self.rng.uniform(-self.jitter, self.jitter)))

    def reset(self) -> None:
        self._failures = 0

    def exhaust(self) -> None:
        """Jump to the capped delay: retrying sooner will not help (a Permanent error)."""
        self._failures = 64

    @property
    def failures(self) -> int:
        return self._failures


class Health:
    """Up/down state of one supervised thing; logs only when the state changes."""

    def __init__(self, log: Any, what: str) -> None:
        # Any: a structlog logger (untyped) or a driver's quiet stand-in with info/warning.
        self.log = log
        self.what = what
        self.up_since: float | None = None
        self.down_reason: str | None = None
        self.down_since: float | None = None
        self.transitions = 0

    def up(self, **context: object) -> None:
        """Mark up; on recovery log once, with how long the outage lasted (`down_s`)."""
        if self.up_since is None:
            self.up_since = asyncio.get_running_loop().time()
            if self.down_reason is not None:
                down_s = round(self.up_since - (self.down_since or self.up_since), 1)
                self.log.info(f"{self.what} recovered", down_s=down_s, **context)
                self.transitions += 1
            self.down_reason = None
            self.down_since = None

    def down(self, reason: str, **context: object) -> None:
        """Mark down; the first failure of an outage is logged (with `context`, e.g. when
        the next try is), the ones after it only update the reason."""
        if self.down_reason is None:
            self.log.warning(f"{self.what} down", reason=reason, **context)
            self.transitions += 1
            self.down_since = asyncio.get_running_loop().time()
        self.down_reason = reason
        self.up_since = None


async def supervise(
    attempt: Callable[[Health], Awaitable[None]],
    health: Health,
    backoff: Backoff,
    *,
    wake: asyncio.Event | None = None,
    healthy_after: float = 60.0,
) -> None:
    """Run `attempt(health)` until cancelled, retrying Transient failures with backoff.

    `attempt` calls `health.up()` once it is connected. A Permanent error is logged once and
    retried at the maximum delay only (someone may fix the cause without restarting us).
    """
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        if wake is not None:
            wake.clear()  # a wake that comes during the attempt still cuts the next wait
        try:
            await attempt(health)
            reason = "ended"
        except Transient as exc:
            reason = str(exc) or type(exc).__name__
        except Permanent as exc:
            reason = f"{exc} (permanent)"
            backoff.exhaust()
        _honour_cancel()
        if health.up_since is not None and loop.time() - started >= healthy_after:
            backoff.reset()
        delay = backoff.next_delay()
        health.down(reason, retry_in_s=round(delay, 2))
        await _pause(delay, wake)


async def retry(
    attempt: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    health: Health | None = None,
    wake: asyncio.Event | None = None,
) -> T:
    """Run `attempt()` until one call returns, and return what it returned.

    A Transient failure marks `health` down (logged once per outage) and is retried after
    `backoff.next_delay()`; a Permanent one likewise, at the maximum delay. `wake` cuts a
    wait short; it is cleared before each attempt, so a wake during an attempt is not lost.
    A success resets `backoff`; `attempt` marks `health` up itself once it reached its peer
    (a success that needed no peer says nothing about it). Anything else escapes at once.
    """
    while True:
        if wake is not None:
            wake.clear()
        try:
            result = await attempt()
        except Transient as exc:
            reason = str(exc) or type(exc).__name__
        except Permanent as exc:
            reason = f"{exc or type(exc).__name__} (permanent)"
            backoff.exhaust()
        else:
            backoff.reset()
            return result
        _honour_cancel()
        delay = backoff.next_delay()
        if health is not None:
            health.down(reason, retry_in_s=round(delay, 2))
        await _pause(delay, wake)


def _honour_cancel() -> None:
    """Raise CancelledError when our task was cancelled but the attempt did not end by it.

    Python 3.11's asyncio.wait_for (which pymodbus uses to connect and for every request)
    drops a cancellation that races the inner call finishing (gh-86296): the attempt then
    fails or returns as if nothing happened. Retrying would sleep through the only cancel
    the task will get, and shutting down would hang; `cancelling()` still counts it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _pause(delay: float, wake: asyncio.Event | None) -> None:
    """Sleep `delay` seconds, or less when `wake` is set."""
    if wake is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):  # not wait_for: 3.11 may lose a cancel
            await wake.wait()
