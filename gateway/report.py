"""The running daemon's report: `status.json` in the runtime directory and systemd's STATUS=.

`gateway status` reads the file (it is replaced atomically, never half-written); systemd shows
the line. Written every 10 s and when the link, the disk-full flag, the back-pressure watch or
a device's availability changes, and a last time at stop with `stopped` set. How soon a change
shows: a device's availability at once (the pipeline tells the report; at most one look a
second); the rest is looked at every second while something is unsettled (the link down or
holding its backlog, the disk full, a back-pressure episode) and every 5 s while all is steady,
so an idle gateway is not woken every second to find nothing new. The file lives in
`[store] runtime_dir` (a tmpfs, /run/gateway), not beside the outbox, so a full data disk
cannot stop it. Only reads the runtime's counters: it must not change any state. It listens to
the pipeline's device transitions to remember, for each unavailable device, why (its last
error) and since when (wall time), which `gateway status` shows.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import structlog

from gateway.clock import Clock
from gateway.notify import Notifier
from gateway.outbox.pressure import Pressure
from gateway.runtime import Runtime

REFRESH = 10.0  # seconds between reports when nothing changes
TICK = 1.0  # seconds between looks while something is unsettled (and the least between looks)
STEADY_TICK = 5.0  # seconds between looks while the link is up and all is well


def status_path(runtime_dir: str) -> Path:
    """Where the daemon of a config with this `[store] runtime_dir` reports."""
    return Path(runtime_dir) / "status.json"


class Report:
    def __init__(self, runtime: Runtime, *, clock: Clock, notifier: Notifier) -> None:
        self.runtime = runtime
        self.clock = clock
        self.notifier = notifier
        self.path = status_path(runtime.cfg.store.runtime_dir)
        self._failing = False
        self._wake: asyncio.Future[None] | None = None  # the run loop's wait between looks
        # device -> (why it is unavailable, since when: wall time of its first failure)
        self.down: dict[str, tuple[str, float]] = {}
        runtime.pipeline.state_observers.append(self._device_state)
        # Intake against delivery, fed each second by `run` (gateway.outbox.pressure).
        self.pressure = Pressure(
            runtime.cfg.store.max_rows,
            structlog.get_logger().bind(gateway=runtime.cfg.site.id, component="pressure"),
        )

    def sample(self) -> None:
        """Feed the pressure watch the running totals (every second, from `run`)."""
        rt = self.runtime
        box = rt.outbox.stats()
        self.pressure.sample(
            time.monotonic(),
            ingested=rt.pipeline.emitted,
            delivered=rt.uplink.stats.acked_readings,
            backlog=box.rows + box.memory_rows,
            connected=rt.uplink.stats.connected,
        )

    def _device_state(self, device: str, available: bool, reason: str) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)  # look now: a device's availability shows at once
        if available:
            self.down.pop(device, None)
            return
        since = self.down[device][1] if device in self.down else time.time()
        self.down[device] = (reason, since)

    def _unavailable(self) -> dict[str, dict[str, object]]:
        """Each unavailable device: its last error and since when (None: before we listened)."""
        out: dict[str, dict[str, object]] = {}
        available = self.runtime.pipeline.available
        for gone in self.down.keys() - available.keys():
            del self.down[gone]  # removed by a reload
        for device, ok in sorted(available.items()):
            if not ok:
                reason, since = self.down.get(device, ("", None))
                out[device] = {"reason": reason, "since": since}
        return out

    def line(self) -> str:
        """The one-line summary systemd shows (`systemctl status`)."""
        stats = self.runtime.outbox.stats()
        up = self.runtime.uplink.stats
        link = "up" if up.connected else "down"
        if up.connected and up.holding_until is not None:
            link = "up, holding the backlog (broker lost our session)"  # gateway.uplink.resume
        extra = " DISK FULL" if stats.disk_full else ""
        if self.pressure.reported and self.pressure.summary():
            extra += f"; {self.pressure.summary()}"
        return f"uplink {link}, outbox {stats.rows + stats.memory_rows} rows{extra}"

    def snapshot(self, *, stopped: bool = False) -> dict[str, object]:
        """What status.json holds (the format `gateway status` reads)."""
        rt = self.runtime
        now = time.time()
        return {
            "time": now,
            "stopped": now if stopped else None,
            "store": rt.cfg.store.path,
            "gateway": rt.cfg.site.id,
            "pid": os.getpid(),
            "clock_synced": self.clock.synced(),
            "outbox": asdict(rt.outbox.stats()),
            "uplink": asdict(rt.uplink.stats),
            "devices_unavailable": sorted(d for d, ok in rt.pipeline.available.items() if not ok),
            "devices_down": self._unavailable(),
            "readings_emitted": rt.pipeline.emitted,
            "pressure": self.pressure.snapshot(),
            # flagged: forwarded with their flag; refused: NaN/infinite, not forwarded
            "values_implausible": {
                "flagged": rt.pipeline.implausible,
                "refused": rt.pipeline.refused,
            },
        }

    def write(self, *, stopped: bool = False) -> None:
        """Replace status.json; `stopped` records that the daemon has stopped (the last write).

        A failure is logged once (and once when it works again), never raised."""
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.snapshot(stopped=stopped), indent=1))
            tmp.replace(self.path)
        except OSError as exc:
            if not self._failing:
                self._failing = True
                structlog.get_logger().warning(
                    "cannot write the status file", path=str(self.path), error=str(exc)
                )
            return
        if self._failing:
            self._failing = False
            structlog.get_logger().info("status file written again", path=str(self.path))

    def _key(self) -> tuple[object, ...]:
        """What, when it changes, is reported at once."""
        rt = self.runtime
        return (
            rt.uplink.stats.connected,
            rt.uplink.stats.down_since,  # an outage starts (before the first connect, too)
            rt.uplink.stats.holding_until,  # a resume hold begins or ends
            rt.outbox.stats().disk_full,
            self.pressure.reported,  # a back-pressure episode begins or ends
            tuple(sorted(rt.pipeline.available.items())),
        )

    def steady(self) -> bool:
        """All is well (the link up, nothing held, the disk fine, no back-pressure): the
        report looks every STEADY_TICK seconds instead of every TICK."""
        rt = self.runtime
        up = rt.uplink.stats
        linked = up.connected or not rt.cfg.uplink.enabled
        return (
            linked
            and up.holding_until is None
            and not rt.outbox.stats().disk_full
            and not self.pressure.reported
        )

    async def run(self) -> None:
        """Look, report what changed (everything every REFRESH seconds), wait; until cancelled.

        Between looks it waits TICK seconds, STEADY_TICK while `steady()`, or until a device's
        availability changes (but never less than TICK after the last look)."""
        loop = asyncio.get_running_loop()
        last: tuple[object, ...] = ()
        written = looked = -REFRESH
        while True:
            if loop.time() - looked < TICK:  # woken early: keep to one look a second
                await asyncio.sleep(TICK - (loop.time() - looked))
            looked = loop.time()
            self.sample()
            key = self._key()
            if key != last or looked - written >= REFRESH:
                self.write()
                self.notifier.status(self.line())
                last, written = key, looked
            self._wake = loop.create_future()
            timer = loop.call_at(
                looked + (STEADY_TICK if self.steady() else TICK), _wake, self._wake
            )
            try:
                await self._wake
            finally:
                timer.cancel()
                self._wake = None


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
