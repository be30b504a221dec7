"""The one retry loop: capped exponential backoff with jitter, logged on transitions only.

A component (a bus, the uplink, the mailer) hands `supervise` an `attempt` coroutine function
that connects, serves and returns or raises when the connection ends. `Transient` errors are
retried after a backoff delay that grows 2x per failure up to a cap, is jittered so a field of
boxes does not reconnect in lock-step, and resets after the attempt stayed up for a healthy
period. A `wake` event (udev hotplug, an alert that needs the link) cuts the wait short.
Anything that is not a GatewayError is a bug and escapes (the process exits, systemd restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.errors import Permanent, Transient


@dataclass
class Backoff:
    """Delay schedule: initial * 2**n, capped at maximum, each delay jittered by +-jitter."""

    initial: float = 5.0
    maximum: float = 300.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    _failures: int = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * (2 ** min(self._failures, 30)))
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

    def __init__(self, log: object, what: str) -> None:
        self.log = log
        self.what = what
        self.up_since: float | None = None
        self.down_reason: str | None = None
        self.transitions = 0

    def up(self, **context: object) -> None:
        if self.up_since is None:
            self.up_since = asyncio.get_running_loop().time()
            if self.down_reason is not None:
                self.log.info(f"{self.what} recovered", **context)  # type: ignore[attr-defined]
                self.transitions += 1
            self.down_reason = None

    def down(self, reason: str, **context: object) -> None:
        if self.down_reason is None:
            self.log.warning(f"{self.what} down", reason=reason, **context)  # type: ignore[attr-defined]
            self.transitions += 1
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
        if health.up_since is not None and loop.time() - started >= healthy_after:
            backoff.reset()
        health.down(reason)
        delay = backoff.next_delay()
        if wake is None:
            await asyncio.sleep(delay)
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):  # not wait_for: 3.11 may lose a cancel
                await wake.wait()
