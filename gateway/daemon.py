"""Wiring: open the outbox, start one task per bus plus the uplink in one TaskGroup.

SIGTERM/SIGINT stop gracefully: buses stop, queued readings are appended, in-flight
publishes get up to `stop_deadline` seconds for their PUBACKs, the store is closed, exit 0.
SIGHUP (or the `reload` command) re-reads the config: a valid one replaces the running set
of tasks, an invalid one is logged and the old one keeps running. A task that fails with a
bug ends the group and the process exits non-zero for systemd to restart it.
What runs is one frozen `gateway.runtime.Runtime` built from the config; `gateway.report`
writes `status.json` in `[store] runtime_dir` every few seconds for `gateway status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway import hotplug, logs
from gateway.clock import Clock, SystemClock
from gateway.config import loader as config_mod
from gateway.config.loader import Config
from gateway.errors import ConfigError, StoreFull, StoreUnusable
from gateway.notify import Notifier
from gateway.registry import hotplug_subsystems
from gateway.report import Report
from gateway.runtime import Runtime, SwitchListener, build_runtime

EX_CONFIG = 78  # sysexits.h: configuration error (systemd unit does not restart on it)
EX_TEMPFAIL = 75  # sysexits.h: try again later (systemd restarts it)


@dataclass
class Control:
    """What signals and commands ask of the running daemon."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    reload: bool = False

    def request_stop(self) -> None:
        self.stop.set()

    def request_reload(self) -> None:
        self.reload = True
        self.stop.set()


class Daemon:
    """One run of one config: build the runtime, run its parts, stop them in order.

    Configured entirely through the constructor: `switch_listeners` see every relay write
    the alert actions got confirmed (the demo prints them). Nothing is patched in later."""

    def __init__(
        self,
        cfg: Config,
        control: Control,
        *,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        stop_deadline: float = 10.0,
        switch_listeners: Sequence[SwitchListener] = (),
    ) -> None:
        self.cfg = cfg
        self.control = control
        self.clock = clock or SystemClock(trust=cfg.site.trust_clock)
        self.notifier = notifier or Notifier()
        self.stop_deadline = stop_deadline
        self.switch_listeners = tuple(switch_listeners)
        self.log = structlog.get_logger().bind(gateway=cfg.site.id)
        self._runtime: Runtime | None = None
        self._built = asyncio.Event()

    async def running(self) -> Runtime:
        """The runtime, once built (for tests and tools that watch a daemon run)."""
        await self._built.wait()
        assert self._runtime is not None  # set before _built
        return self._runtime

    async def _hotplug(self, stack: contextlib.AsyncExitStack) -> hotplug.Hotplug | None:
        """One device-event source for the process when a driver declares a configured
        transport's buses follow hotplug (its HOTPLUG: USB serial, RS-485 dongles)."""
        subsystems = hotplug_subsystems(b.transport for b in self.cfg.buses)
        if not subsystems:
            return None
        try:
            return await stack.enter_async_context(hotplug.open_udev(subsystems))
        except (ImportError, OSError) as exc:
            # No libudev or no netlink here: buses still reconnect on their backoff.
            self.log.warning("hotplug unavailable; relying on reconnect backoff", error=str(exc))
            return hotplug.Hotplug()

    async def run(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            hub = await self._hotplug(stack)
            rt = await build_runtime(
                stack,
                self.cfg,
                clock=self.clock,
                log=self.log,
                hub=hub,
                commands={"ping": self._ping, "reload": self._reload},
                switch_listeners=self.switch_listeners,
            )
            self._runtime = rt
            self._built.set()
            report = Report(rt, clock=self.clock, notifier=self.notifier)
            await self._serve(rt, report)
            report.write(stopped=True)
            self.log.info("gateway stopped", outbox_rows=rt.outbox.rows)

    async def _serve(self, rt: Runtime, report: Report) -> None:
        """Run every part in one TaskGroup until asked to stop, then stop them in order."""
        cfg = self.cfg
        async with asyncio.TaskGroup() as tg:
            # Alerts first: relays go to their rest state as soon as their bus answers.
            alert_task = tg.create_task(rt.alerting.run(), name="alerting") if rt.alerting else None
            bus_tasks = [tg.create_task(b.run(), name=f"bus-{b.name}") for b in rt.buses]
            helpers = [
                tg.create_task(self.notifier.watchdog(), name="watchdog"),
                tg.create_task(report.run(), name="status"),
            ]
            uplink_task = (
                tg.create_task(rt.uplink.run(), name="uplink") if cfg.uplink.enabled else None
            )
            self.log.info(
                "gateway running",
                buses=len(rt.buses),
                devices=len(cfg.devices()),
                outbox_rows=rt.outbox.rows,
                uplink=f"{cfg.uplink.host}:{cfg.uplink.port}" if cfg.uplink.enabled else "off",
            )
            self.notifier.ready(report.line())
            await self.control.stop.wait()
            self.notifier.reloading() if self.control.reload else self.notifier.stopping()
            if alert_task is not None:
                # Before the buses: a siren that is on gets its off-write through.
                alert_task.cancel()
                await asyncio.wait([alert_task])
            for task in bus_tasks:
                task.cancel()
            await rt.pipeline.flush()
            if uplink_task is not None:
                await rt.uplink.stop(self.stop_deadline)
                uplink_task.cancel()
            for task in helpers:
                task.cancel()

    async def _ping(self, args: Any) -> str:
        return "OK"

    async def _reload(self, args: Any) -> str:
        # Answer first, then reload once the reply has had a moment to leave.
        asyncio.get_running_loop().call_later(0.5, self.control.request_reload)
        return "OK"


async def serve(path: str, *, control: Control | None = None) -> int:
    """Run until stopped; reload on request. Returns the process exit code."""
    log = structlog.get_logger()
    control = control or Control()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, control.request_stop)
    loop.add_signal_handler(signal.SIGHUP, control.request_reload)
    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config problem", problem=str(problem))
        return EX_CONFIG
    while True:
        control.reload = False
        control.stop.clear()
        try:
            await Daemon(cfg, control).run()
        except StoreUnusable as exc:
            # Locked, read-only, not ours: a person has to act; the rows stay where they are.
            log.error("outbox unusable; not starting", path=exc.path, cause=exc.cause)
            return EX_CONFIG
        except StoreFull as exc:
            log.error("outbox cannot be opened: disk full; retrying later", error=str(exc))
            return EX_TEMPFAIL
        if not control.reload:
            return 0
        try:
            cfg = config_mod.load(path)
            log.info("config reloaded", path=path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: config problem", problem=str(problem))
            log.warning("keeping the running config", path=path)


def main(path: str, *, log_level: str = "info") -> int:
    logs.setup(log_level)
    # Every file the daemon creates (outbox, WAL, status, alert state, mail log) is 0600
    # whoever started it and whatever umask it inherited: they hold the site's data.
    os.umask(0o077)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(path))
    return 0
