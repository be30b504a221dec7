"""Wiring: open the outbox, start one task per bus plus the uplink in one TaskGroup.

SIGTERM/SIGINT stop gracefully: buses stop, queued readings are appended, in-flight
publishes get up to `stop_deadline` seconds for their PUBACKs, the store is closed, exit 0.
SIGHUP (or the `reload` command) re-reads the config file. A refused file (a problem, or a
change to `[gateway]` or `[store]`, which needs a restart) is logged and changes nothing. An
accepted one restarts only what changed (`gateway.runtime.Changes`): a bus whose `[[buses]]`
table changed (added, removed or edited), the uplink only if `[uplink]` changed (only then is
`offline`/`online` published), the alert side only if `[alerts]` or a device's name or place
changed; the outbox, the pipeline and every unchanged bus keep running through it.
A task that fails with a bug ends the group and the process exits non-zero for systemd to
restart it. What runs is one frozen `gateway.runtime.Runtime` built from the config (the next
one after a reload); `gateway.report` writes `status.json` in `[store] runtime_dir` every few
seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
from gateway.runtime import (
    Changes,
    Runtime,
    StartupError,
    SwitchListener,
    add_buses,
    build_runtime,
    forget_devices,
    new_alerting,
    new_uplink,
    register_all,
    retarget,
    retire_uplink,
)

EX_CONFIG = 78  # sysexits.h: configuration error (systemd unit does not restart on it)
EX_TEMPFAIL = 75  # sysexits.h: try again later (systemd restarts it)


@dataclass
class Control:
    """What signals and commands ask of the running daemon."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)  # set: something to do
    reload: bool = False
    stopping: bool = False

    def request_stop(self) -> None:
        self.stopping = True
        self.stop.set()

    def request_reload(self) -> None:
        self.reload = True
        self.stop.set()


@dataclass
class _Tasks:
    """The running tasks of the parts a reload may restart."""

    buses: dict[str, asyncio.Task[None]]
    alerting: asyncio.Task[None] | None
    uplink: asyncio.Task[None] | None


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
        self._tasks: _Tasks | None = None
        self.reloads = 0  # reload requests handled (applied, refused or with nothing to do)

    async def running(self) -> Runtime:
        """The runtime, once built (for tests and tools that watch a daemon run)."""
        await self._built.wait()
        assert self._runtime is not None  # set before _built
        return self._runtime

    def bus_tasks(self) -> dict[str, asyncio.Task[None]]:
        """The running bus tasks by bus name (for tests that watch a reload)."""
        return dict(self._tasks.buses) if self._tasks else {}

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
            tasks = _Tasks(
                buses={b.name: tg.create_task(b.run(), name=f"bus-{b.name}") for b in rt.buses},
                alerting=alert_task,
                uplink=tg.create_task(rt.uplink.run(), name="uplink")
                if cfg.uplink.enabled
                else None,
            )
            self._tasks = tasks
            helpers = [
                tg.create_task(self.notifier.watchdog(), name="watchdog"),
                tg.create_task(report.run(), name="status"),
            ]
            self.log.info(
                "gateway running",
                buses=len(rt.buses),
                devices=len(cfg.devices()),
                outbox_rows=rt.outbox.rows,
                uplink=f"{cfg.uplink.host}:{cfg.uplink.port}" if cfg.uplink.enabled else "off",
            )
            self.notifier.ready(report.line())
            while True:
                await self.control.stop.wait()
                self.control.stop.clear()
                if self.control.stopping:
                    break
                if self.control.reload:
                    self.control.reload = False
                    rt = await self._reload_config(tg, rt, tasks)
                    report.runtime = rt
                    self.reloads += 1
            self.notifier.stopping()
            await self._stop(rt, tasks)
            for task in helpers:
                task.cancel()

    async def _stop(self, rt: Runtime, tasks: _Tasks) -> None:
        if tasks.alerting is not None:
            # Before the buses: a siren that is on gets its off-write through.
            tasks.alerting.cancel()
            await asyncio.wait([tasks.alerting])
        for task in tasks.buses.values():
            task.cancel()
        await rt.pipeline.flush()
        if tasks.uplink is not None:
            await rt.uplink.stop(self.stop_deadline)
            tasks.uplink.cancel()

    # -- reload ----------------------------------------------------------------------------
    def _read_config(self) -> Config | None:
        """The config file again, or None after logging why it is refused."""
        try:
            new = config_mod.load(self.cfg.path)
        except ConfigError as exc:
            for problem in exc.problems:
                self.log.error("reload refused: config problem", problem=str(problem))
            self.log.warning("keeping the running config", path=self.cfg.path)
            return None
        return new

    async def _reload_config(self, tg: asyncio.TaskGroup, rt: Runtime, tasks: _Tasks) -> Runtime:
        """Apply the config file's changes to the running parts; returns the next runtime."""
        new = self._read_config()
        if new is None:
            return rt
        changes = Changes.between(rt.cfg, new)
        if changes.needs_restart:
            self.log.warning(
                "reload refused: a change needs a restart",
                sections=[f"[{name}]" for name in changes.needs_restart],
                hint="systemctl restart gateway",
            )
            self.log.warning("keeping the running config", path=self.cfg.path)
            return rt
        if not changes:
            self.log.info("config reloaded", path=self.cfg.path, restarted=[])
            return rt
        self.notifier.reloading()
        rt = await self._apply(tg, rt, new, changes, tasks)
        self.cfg = new
        self._runtime = rt
        restarted = [f"bus {n}" for n in changes.start_buses]
        restarted += ["uplink"] * changes.uplink + ["alerts"] * changes.alerts
        self.log.info(
            "config reloaded",
            path=self.cfg.path,
            restarted=restarted,
            stopped=[n for n in changes.stop_buses if n not in changes.start_buses],
        )
        self.notifier.ready(f"reloaded; {len(rt.buses)} bus(es)")
        return rt

    async def _apply(
        self, tg: asyncio.TaskGroup, rt: Runtime, new: Config, changes: Changes, tasks: _Tasks
    ) -> Runtime:
        """Stop what changed (alerts first, as at stop), then build and start its successor."""
        old_cfg = rt.cfg
        if changes.alerts and tasks.alerting is not None:
            tasks.alerting.cancel()
            await asyncio.wait([tasks.alerting])
            tasks.alerting = None
        stopping = [tasks.buses.pop(name) for name in changes.stop_buses]
        for task in stopping:
            task.cancel()
        if stopping:
            await asyncio.wait(stopping)
        gone = {d.id for b in old_cfg.buses if b.name in changes.stop_buses for d in b.devices}
        forget_devices(rt, gone)
        if changes.uplink and tasks.uplink is not None:
            await rt.uplink.stop(self.stop_deadline)
            tasks.uplink.cancel()
            await asyncio.wait([tasks.uplink])
            tasks.uplink = None
        started = [b for b in new.buses if b.name in changes.start_buses]
        buses, contexts = add_buses(
            started, rt.pipeline, self.log, rt.hub, rt.actuators, rt.commands
        )
        register_all(rt.router, rt.commands)
        for bus in buses:
            tasks.buses[bus.name] = tg.create_task(bus.run(), name=f"bus-{bus.name}")
        uplink, alerting = rt.uplink, rt.alerting
        if changes.uplink:
            retire_uplink(rt)
            rt.router.allowed = frozenset(new.uplink.commands)
            uplink = new_uplink(new, rt.outbox, rt.router, log=self.log)
            if new.uplink.enabled:
                tasks.uplink = tg.create_task(uplink.run(), name="uplink")
        elif changes.devices:
            retarget(uplink, new)
        if changes.alerts:
            alerting = new_alerting(
                new, rt.pipeline, rt.outbox, rt.watched, rt.router, clock=self.clock, log=self.log
            )
            if alerting is not None:
                tasks.alerting = tg.create_task(alerting.run(), name="alerting")
        parts = {
            b.name: (b, c)
            for b, c in [
                *zip(rt.buses, rt.contexts, strict=True),
                *zip(buses, contexts, strict=True),
            ]
            if b.name not in changes.stop_buses or b in buses
        }
        return replace(
            rt,
            cfg=new,
            uplink=uplink,
            alerting=alerting,
            buses=tuple(parts[b.name][0] for b in new.buses),
            contexts=tuple(parts[b.name][1] for b in new.buses),
        )

    async def _ping(self, args: Any) -> str:
        return "OK"

    async def _reload(self, args: Any) -> str:
        # Answer first, then reload once the reply has had a moment to leave.
        asyncio.get_running_loop().call_later(0.5, self.control.request_reload)
        return "OK"


async def serve(path: str, *, control: Control | None = None) -> int:
    """Run until stopped (reloads happen inside the run). Returns the process exit code."""
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
    try:
        await Daemon(cfg, control).run()
    except StartupError as exc:
        # Store start-up errors (the directory, the file) map to exit codes here.
        log.error("cannot start", problem=str(exc))
        return EX_CONFIG
    except StoreUnusable as exc:
        # Locked, read-only, not ours: a person has to act; the rows stay where they are.
        log.error("outbox unusable; not starting", path=exc.path, cause=exc.cause)
        return EX_CONFIG
    except StoreFull as exc:
        log.error("outbox cannot be opened: disk full; retrying later", error=str(exc))
        return EX_TEMPFAIL
    return 0


def main(path: str, *, log_level: str = "info") -> int:
    logs.setup(log_level)
    # Every file the daemon creates (outbox, WAL, status, alert state, mail log) is 0600
    # whoever started it and whatever umask it inherited: they hold the site's data.
    os.umask(0o077)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(path))
    return 0
