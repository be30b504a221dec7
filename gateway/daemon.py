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
seconds, and `gateway.monitor` serves live status and events on a socket beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway import collector, hotplug, logs
from gateway.clock import Clock, SystemClock
from gateway.config import loader as config_mod
from gateway.config.loader import Config
from gateway.errors import ConfigError, StoreFull, StoreUnusable
from gateway.monitor import Monitor
from gateway.notify import Notifier
from gateway.registry import hotplug_subsystems
from gateway.reload import Parts, apply
from gateway.report import Report
from gateway.runtime import Changes, Runtime, StartupError, SwitchListener, build_runtime

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


class Daemon:
    """One run of one config: build the runtime, run its parts, stop them in order.

    Configured entirely through the constructor: `switch_listeners` see every relay write
    the alert actions got confirmed (the demo prints them); `settle` is called once the
    running parts are built, after start-up and after each reload that rebuilt some (the
    process entry `serve` passes gateway.collector.settle). Nothing is patched in later."""

    def __init__(
        self,
        cfg: Config,
        control: Control,
        *,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        stop_deadline: float = 10.0,
        switch_listeners: Sequence[SwitchListener] = (),
        settle: Callable[[], None] = lambda: None,
    ) -> None:
        self.cfg = cfg
        self.settle = settle
        self.control = control
        self.clock = clock or SystemClock(trust=cfg.site.trust_clock)
        self.notifier = notifier or Notifier()
        self.stop_deadline = stop_deadline
        self.switch_listeners = tuple(switch_listeners)
        self.log = structlog.get_logger().bind(gateway=cfg.site.id)
        self._runtime: Runtime | None = None
        self._built = asyncio.Event()
        self._tasks: Parts | None = None
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
            monitor = self._monitor(report)
            await monitor.start()
            try:
                await self._serve(rt, report, monitor)
            finally:
                await monitor.stop()
            report.write(stopped=True)
            self.log.info("gateway stopped", outbox_rows=rt.outbox.rows)

    def _monitor(self, report: Report) -> Monitor:
        """The local socket `gateway status` and `gateway tail` talk to, fed by the pipeline
        (readings, alerts, device changes) and the current runtime's uplink."""

        def link() -> tuple[bool, str]:
            stats = report.runtime.uplink.stats  # the uplink after the latest reload
            return stats.connected, stats.down_reason or ""

        rt = report.runtime
        monitor = Monitor(
            self.cfg.store.runtime_dir, report.snapshot, link, self.log.bind(component="monitor")
        )
        rt.pipeline.observers.append(monitor.observe)
        rt.pipeline.state_observers.append(monitor.device_state)
        return monitor

    async def _serve(self, rt: Runtime, report: Report, monitor: Monitor) -> None:
        """Run every part in one TaskGroup until asked to stop, then stop them in order."""
        cfg = self.cfg
        async with asyncio.TaskGroup() as tg:
            # Alerts first: relays go to their rest state as soon as their bus answers.
            alert_task = tg.create_task(rt.alerting.run(), name="alerting") if rt.alerting else None
            tasks = Parts(
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
                tg.create_task(monitor.run(), name="monitor"),
            ]
            self.settle()  # start-up work: before the daemon says it runs
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
            await tasks.stop(rt, self.stop_deadline)
            for task in helpers:
                task.cancel()

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

    async def _reload_config(self, tg: asyncio.TaskGroup, rt: Runtime, tasks: Parts) -> Runtime:
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
        rt = await apply(
            tg, rt, new, changes, tasks, log=self.log, clock=self.clock, deadline=self.stop_deadline
        )
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
        self.settle()
        return rt

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
        await Daemon(cfg, control, settle=collector.settle).run()
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
