"""The running daemon's report: `status.json` beside the outbox and systemd's STATUS= line.

`gateway status` reads the file (it is replaced atomically, never half-written); systemd shows
the line. Refreshed every 10 s and at once when the link, the disk-full flag or a device's
availability changes. Only reads the runtime's counters: it must not change any state, and a
full disk never stops it (the outbox reports that).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from gateway.clock import Clock
from gateway.notify import Notifier
from gateway.runtime import Runtime

REFRESH = 10.0  # seconds between reports when nothing changes


class Report:
    def __init__(self, runtime: Runtime, *, clock: Clock, notifier: Notifier) -> None:
        self.runtime = runtime
        self.clock = clock
        self.notifier = notifier
        self.path = Path(runtime.cfg.store.path).with_name("status.json")

    def line(self) -> str:
        """The one-line summary systemd shows (`systemctl status`)."""
        stats = self.runtime.outbox.stats()
        link = "up" if self.runtime.uplink.stats.connected else "down"
        extra = " DISK FULL" if stats.disk_full else ""
        return f"uplink {link}, outbox {stats.rows + stats.memory_rows} rows{extra}"

    def snapshot(self) -> dict[str, object]:
        """What status.json holds (the format `gateway status` reads)."""
        rt = self.runtime
        return {
            "time": time.time(),
            "gateway": rt.cfg.site.id,
            "pid": os.getpid(),
            "clock_synced": self.clock.synced(),
            "outbox": asdict(rt.outbox.stats()),
            "uplink": asdict(rt.uplink.stats),
            "devices_unavailable": sorted(d for d, ok in rt.pipeline.available.items() if not ok),
            "readings_emitted": rt.pipeline.emitted,
            # flagged: forwarded with their flag; refused: NaN/infinite, not forwarded
            "values_implausible": {
                "flagged": rt.pipeline.implausible,
                "refused": rt.pipeline.refused,
            },
        }

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot(), indent=1))
            tmp.replace(self.path)
        except OSError:
            pass  # a full disk must not stop the daemon; the outbox reports it

    def _key(self) -> tuple[object, ...]:
        """What, when it changes, is reported at once."""
        rt = self.runtime
        return (
            rt.uplink.stats.connected,
            rt.outbox.stats().disk_full,
            tuple(sorted(rt.pipeline.available.items())),
        )

    async def run(self) -> None:
        """Report every REFRESH seconds, and within a second of a change, until cancelled."""
        last: tuple[object, ...] = ()
        since = 0.0
        while True:
            key = self._key()
            if key != last or since >= REFRESH:
                self.write()
                self.notifier.status(self.line())
                last, since = key, 0.0
            await asyncio.sleep(1.0)
            since += 1.0
