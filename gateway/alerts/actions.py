"""Local actions: siren and flash relay channels driven straight from alert rules.

Each configured action owns one relay channel (an Actuator from a bus: Modbus coils today,
GPIO later through the same `switch(channel, on)`), and one task reconciles the channel's
wanted state with the last confirmed write: on for `seconds` (or a commanded duration), with
an optional on/off `pattern`, then off. The task starts by wanting the rest state (off) and
retries until the actuator confirms it (`gateway.supervise.retry`: capped, jittered backoff,
cut short when the wanted state changes; logged once per outage), so a relay left on by a
crash or a restart in the middle of a siren is switched off as soon as the bus answers.
During quiet hours (site local time) an action with `at_night = "skip"` does not run; the
flash still does.
`trigger` never waits: it is called from the pipeline's observer (the alert engine) and only
sets a deadline and wakes the channel task. Nothing here touches the outbox or the uplink.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alerts.config import ActionConfig
from gateway.contract import Actuator
from gateway.errors import GatewayError, Permanent
from gateway.supervise import Backoff, Health, retry

QuietHours = tuple[tuple[int, int], tuple[int, int]]


def in_quiet_hours(quiet: QuietHours | None, ts: float, tz: ZoneInfo) -> bool:
    """True when `ts` falls inside [start, end) local time; the span may cross midnight."""
    if quiet is None:
        return False
    local = datetime.fromtimestamp(ts, tz)
    minute = local.hour * 60 + local.minute
    start = quiet[0][0] * 60 + quiet[0][1]
    end = quiet[1][0] * 60 + quiet[1][1]
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end


class Channel:
    """One action's relay channel: wanted state over time and the last confirmed write."""

    def __init__(self, cfg: ActionConfig, backoff: Backoff, health: Health) -> None:
        self.cfg = cfg
        self.until = -math.inf  # loop time the action ends
        self.started = 0.0
        self.confirmed: bool | None = None  # unknown at start: the rest state gets written
        self.wake = asyncio.Event()
        self.backoff = backoff  # between unconfirmed writes
        self.health = health  # the relay module as this channel sees it

    def wanted(self, now: float) -> bool:
        if now >= self.until:
            return False
        pattern = self.cfg.pattern
        if not pattern:
            return True
        phase = (now - self.started) % sum(pattern)
        for i, span in enumerate(pattern):
            if phase < span:
                return i % 2 == 0  # even entries are "on" spans
            phase -= span
        return False

    def next_change(self, now: float) -> float:
        """Loop time of the next possible change of `wanted` (inf when idle)."""
        if now >= self.until:
            return math.inf
        pattern = self.cfg.pattern
        if not pattern:
            return self.until
        phase = (now - self.started) % sum(pattern)
        edge = 0.0
        for span in pattern:
            edge += span
            if phase < edge:
                return min(self.until, now + (edge - phase))
        return self.until


class Actions:
    """The siren/flash channels; `async with`-free: run `run()` in the daemon's TaskGroup."""

    def __init__(
        self,
        actions: Mapping[str, ActionConfig],
        actuators: Mapping[str, Actuator],
        *,
        quiet: QuietHours | None = None,
        timezone: str = "Asia/Tokyo",
        wall: Callable[[], float],
        log: Any,
        retry: float = 1.0,
        retry_max: float = 5.0,
    ) -> None:
        """`retry` is the first delay after an unconfirmed write, growing to `retry_max`: a
        relay bus is local and cheap to ask, and a siren stuck on must not wait long."""
        self.channels = {
            name: Channel(
                cfg,
                Backoff(retry, max(retry, retry_max)),
                Health(log.bind(action=name), "relay"),
            )
            for name, cfg in actions.items()
        }
        self.actuators = actuators
        self.quiet = quiet
        self.tz = ZoneInfo(timezone)
        self.wall = wall
        self.log = log
        self.switched = 0

    def trigger(self, name: str, seconds: float | None = None, *, force: bool = False) -> bool:
        """Start (or extend) an action now; False when quiet hours skip it. Never waits."""
        channel = self.channels[name]
        if not force and channel.cfg.at_night == "skip" and self.quiet_now():
            self.log.info("action skipped in quiet hours", action=name)
            return False
        now = asyncio.get_running_loop().time()
        if now >= channel.until:
            channel.started = now  # a running pattern keeps its phase when extended
        channel.until = max(channel.until, now + (seconds or channel.cfg.seconds))
        channel.wake.set()
        self.log.info("action started", action=name, until_s=round(channel.until - now, 1))
        return True

    def stop(self, name: str) -> None:
        channel = self.channels[name]
        channel.until = -math.inf
        channel.wake.set()

    def quiet_now(self) -> bool:
        return in_quiet_hours(self.quiet, self.wall(), self.tz)

    def active(self, name: str) -> bool:
        return asyncio.get_running_loop().time() < self.channels[name].until

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for name, channel in self.channels.items():
                tg.create_task(self._drive(name, channel), name=f"action-{name}")

    async def _drive(self, name: str, channel: Channel) -> None:
        loop = asyncio.get_running_loop()
        cfg = channel.cfg
        try:
            while True:
                await retry(
                    lambda: self._reconcile(name, channel),
                    channel.backoff,
                    health=channel.health,
                    wake=channel.wake,  # a trigger or stop during the wait: try the new state
                )
                now = loop.time()
                wait = channel.next_change(now) - now
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that
                # arrives as the event is set, and the daemon's stop would wait forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(None if wait == math.inf else wait):
                        await channel.wake.wait()
        finally:
            if channel.confirmed:
                # Best effort on the way out; the next start writes the rest state anyway.
                actuator = self.actuators.get(cfg.device)
                if actuator is not None:
                    with contextlib.suppress(GatewayError, ValueError, TimeoutError):
                        await asyncio.wait_for(actuator.switch(cfg.channel, False), 1.0)

    async def _reconcile(self, name: str, channel: Channel) -> None:
        """Write until the confirmed state is the wanted one (time passes during a write).
        Raises Transient when the relay did not confirm, Permanent when it cannot."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # An actuator's 3.11 wait_for may have swallowed our cancel while its
                # write completed: honour it here instead of waiting forever.
                raise asyncio.CancelledError
            want = channel.wanted(loop.time())
            if want == channel.confirmed:
                return
            await self._switch(name, channel, want)

    async def _switch(self, name: str, channel: Channel, on: bool) -> None:
        cfg = channel.cfg
        actuator = self.actuators.get(cfg.device)
        if actuator is None:
            raise Permanent(f'no relay module "{cfg.device}" on any bus')
        try:
            await actuator.switch(cfg.channel, on)
        except ValueError as exc:  # the module has no such channel
            raise Permanent(str(exc)) from None
        channel.health.up(device=cfg.device)
        channel.confirmed = on
        self.switched += 1
        self.log.debug("relay switched", action=name, device=cfg.device, channel=cfg.channel, on=on)
