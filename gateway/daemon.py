"""Wiring: open the outbox, start one task per bus plus the uplink in one TaskGroup.

SIGTERM/SIGINT stop gracefully: buses stop, queued readings are appended, in-flight
publishes get up to `stop_deadline` seconds for their PUBACKs, the store is closed, exit 0.
SIGHUP (or the `reload` command) re-reads the config: a valid one replaces the running set
of tasks, an invalid one is logged and the old one keeps running. A task that fails with a
bug ends the group and the process exits non-zero for systemd to restart it.
The daemon writes `status.json` beside the outbox every few seconds for `gateway status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from gateway import config as config_mod
from gateway import hotplug, logs
from gateway.alerts.wiring import Alerting
from gateway.clock import Clock, SystemClock
from gateway.config.loader import Config
from gateway.contract import Actuator, Bus, BusContext, CommandHandler
from gateway.errors import ConfigError
from gateway.notify import Notifier
from gateway.outbox.store import Outbox
from gateway.pipeline import Pipeline
from gateway.registry import driver_for_transport, hotplug_subsystems
from gateway.uplink.commands import CommandRouter
from gateway.uplink.session import Uplink

EX_CONFIG = 78  # sysexits.h: configuration error (systemd unit does not restart on it)


def attribute_map(cfg: Config) -> dict[tuple[str, str], str]:
    """(device, quantity) -> payload attribute: device overrides, then profile names."""
    names: dict[tuple[str, str], str] = {}
    for device in cfg.devices():
        if device.decoder is not None:
            for quantity, attr in device.decoder.attributes.items():
                names[(device.id, quantity)] = attr
        for quantity, attr in device.attributes.items():
            names[(device.id, quantity)] = attr
    return names


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
    def __init__(
        self,
        cfg: Config,
        control: Control,
        *,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        stop_deadline: float = 10.0,
        extra_setup: Callable[[Daemon], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.control = control
        self.clock = clock or SystemClock(trust=cfg.site.trust_clock)
        self.notifier = notifier or Notifier()
        self.stop_deadline = stop_deadline
        self.log = structlog.get_logger().bind(gateway=cfg.site.id)
        self.outbox: Outbox | None = None
        self.pipeline: Pipeline | None = None
        self.uplink: Uplink | None = None
        self.router: CommandRouter | None = None
        self.contexts: list[BusContext] = []
        self.actuators: dict[str, Actuator] = {}
        self.commands: dict[str, CommandHandler] = {}
        self.extra_setup = extra_setup
        self.alerting: Alerting | None = None
        self._hub: Any = None

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
            self._hub = await self._hotplug(stack)
            await self._run()

    async def _run(self) -> None:
        cfg = self.cfg
        store = cfg.store
        async with (
            Outbox.open(
                store.path,
                sync=store.sync,
                max_rows=store.max_rows,
                max_bytes=store.max_bytes,
                drop_policy=store.drop_policy,
                memory_rows=store.memory_rows,
                log=self.log.bind(component="outbox"),
            ) as outbox,
            Pipeline(outbox, clock=self.clock, log=self.log.bind(component="pipeline")) as pipe,
        ):
            self.outbox, self.pipeline = outbox, pipe
            router = CommandRouter(cfg.uplink.commands, log=self.log.bind(component="commands"))
            router.register("ping", self._ping)
            router.register("reload", self._reload)
            self.router = router
            buses = self._create_buses(pipe, router)
            if cfg.alerts.configured:
                self.alerting = Alerting(
                    cfg,
                    pipe,
                    outbox,
                    self.actuators,
                    clock=self.clock,
                    log=self.log,
                )
                self.alerting.register(router)
            uplink = Uplink(
                cfg.uplink,
                cfg.site.id,
                outbox,
                router,
                attributes=attribute_map(cfg),
                log=self.log.bind(component="uplink"),
            )
            self.uplink = uplink
            if self.extra_setup is not None:
                self.extra_setup(self)
            async with asyncio.TaskGroup() as tg:
                # Alerts first: relays go to their rest state as soon as their bus answers.
                alert_task = (
                    tg.create_task(self.alerting.run(), name="alerting") if self.alerting else None
                )
                bus_tasks = [tg.create_task(b.run(), name=f"bus-{b.name}") for b in buses]
                helpers = [
                    tg.create_task(self.notifier.watchdog(), name="watchdog"),
                    tg.create_task(self._report(), name="status"),
                ]
                uplink_task = (
                    tg.create_task(uplink.run(), name="uplink") if cfg.uplink.enabled else None
                )
                self.log.info(
                    "gateway running",
                    buses=len(buses),
                    devices=len(cfg.devices()),
                    outbox_rows=outbox.rows,
                    uplink=f"{cfg.uplink.host}:{cfg.uplink.port}" if cfg.uplink.enabled else "off",
                )
                self.notifier.ready(self._status_line())
                await self.control.stop.wait()
                self.notifier.reloading() if self.control.reload else self.notifier.stopping()
                if alert_task is not None:
                    # Before the buses: a siren that is on gets its off-write through.
                    alert_task.cancel()
                    await asyncio.wait([alert_task])
                for task in bus_tasks:
                    task.cancel()
                await pipe.flush()
                if uplink_task is not None:
                    await uplink.stop(self.stop_deadline)
                    uplink_task.cancel()
                for task in helpers:
                    task.cancel()
            self._write_status()
            self.log.info("gateway stopped", outbox_rows=outbox.rows)

    def _create_buses(self, pipe: Pipeline, router: CommandRouter) -> list[Bus]:
        """One bus per config entry. Every context shares one actuator table and one command
        table, so relays on two buses are all reachable (a driver chains its handler to the
        one already registered under the same name)."""
        buses: list[Bus] = []
        for bus_cfg in self.cfg.buses:
            driver = driver_for_transport(bus_cfg.transport)
            assert driver is not None  # config validation guarantees it
            ctx = BusContext(
                sink=pipe,
                log=self.log.bind(bus=bus_cfg.name),
                actuators=self.actuators,
                commands=self.commands,
                hotplug=self._hub,
            )
            self.contexts.append(ctx)
            buses.append(driver.create_bus(bus_cfg, ctx))
        for name, handler in self.commands.items():
            router.register(name, handler)
        return buses

    async def _ping(self, args: Any) -> str:
        return "OK"

    async def _reload(self, args: Any) -> str:
        # Answer first, then reload once the reply has had a moment to leave.
        asyncio.get_running_loop().call_later(0.5, self.control.request_reload)
        return "OK"

    # -- status ----------------------------------------------------------------------------
    def _status_line(self) -> str:
        outbox, uplink = self.outbox, self.uplink
        if outbox is None:
            return "starting"
        stats = outbox.stats()
        link = "up" if uplink is not None and uplink.stats.connected else "down"
        extra = " DISK FULL" if stats.disk_full else ""
        return f"uplink {link}, outbox {stats.rows + stats.memory_rows} rows{extra}"

    def status(self) -> dict[str, Any]:
        assert self.outbox is not None
        stats = asdict(self.outbox.stats())
        return {
            "time": time.time(),
            "gateway": self.cfg.site.id,
            "pid": os.getpid(),
            "clock_synced": self.clock.synced(),
            "outbox": stats,
            "uplink": asdict(self.uplink.stats) if self.uplink else None,
            "devices_unavailable": sorted(
                d for d, ok in (self.pipeline.available if self.pipeline else {}).items() if not ok
            ),
            "readings_emitted": self.pipeline.emitted if self.pipeline else 0,
        }

    def _write_status(self) -> None:
        path = Path(self.cfg.store.path).with_name("status.json")
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.status(), indent=1))
            tmp.replace(path)
        except OSError:
            pass  # a full disk must not stop the daemon; the outbox reports it

    async def _report(self) -> None:
        """Refresh status.json and systemd's STATUS= every 10 s, and at once on a change."""
        last: tuple[object, ...] = ()
        since = 0.0
        while True:
            stats = self.outbox.stats() if self.outbox else None
            key = (
                self.uplink.stats.connected if self.uplink else None,
                stats.disk_full if stats else None,
                tuple(sorted(self.pipeline.available.items())) if self.pipeline else (),
            )
            if key != last or since >= 10.0:
                self._write_status()
                self.notifier.status(self._status_line())
                last, since = key, 0.0
            await asyncio.sleep(1.0)
            since += 1.0


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
        await Daemon(cfg, control).run()
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
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(path))
    return 0
