"""When telemetry goes and how much of it a lease takes: the batch window, full batches, the
drain's larger leases, and whether the uplink is behind.

The window opens when telemetry starts to wait (an append, also while the link is down, so an
outage counts as waiting) and closes `batch_window` later; a full batch goes before that. Rows
a lost session had leased were due then, so they are due at once in the next session. While a
backlog drains (more waits than one batch) a lease takes up to `inflight` batches, so each
device's rows go in as few messages as `max_payload_bytes` allows. Behind means more waits
than a full window carries: the uplink then has the right of way over intake
(gateway.outbox.priority). Pure bookkeeping over a count of waiting rows; the session acts.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from gateway.config.loader import UplinkConfig


class Cadence:
    def __init__(self, cfg: UplinkConfig, waiting: Callable[[], int]) -> None:
        self.cfg = cfg
        self.waiting = waiting  # telemetry rows not leased (the outbox's count)
        self.started: float | None = None  # loop time the window opened; None: nothing waits

    def opens(self, now: float) -> bool:
        """Telemetry waits from `now` on, unless older rows already wait. True when the window
        opened now (the pump must learn when it closes)."""
        if self.started is None:
            self.started = now
            return True
        return False

    def full(self) -> bool:
        """A whole batch waits: it goes before its window closes."""
        return self.waiting() >= self.cfg.batch_max_readings

    def after_session(self, waiting_before: int) -> None:
        """A session ended and released its leases: if telemetry came back to the queue (more
        waits than `waiting_before`), it was due then and is due at once; rows that waited
        all along keep the time their window opened."""
        if self.waiting() > waiting_before:
            self.started = -math.inf

    def due(self, now: float) -> bool:
        """Telemetry should be leased now: a full batch waits, or the window has closed."""
        waiting = self.waiting()
        if not waiting:
            self.started = None
            return False
        if self.started is None:  # rows found at start (a restart): from the first look
            self.started = now
        return waiting >= self.cfg.batch_max_readings or now - self.started >= self.cfg.batch_window

    def drained(self) -> None:
        """Nothing waits after a lease: the next append opens a new window."""
        if not self.waiting():
            self.started = None

    def closes(self) -> float | None:
        """Loop time the open window closes, None when none is open."""
        return None if self.started is None else self.started + self.cfg.batch_window

    def lease_size(self) -> int:
        """Rows per telemetry lease: `batch_max_readings`, or up to `inflight` batches while
        a backlog drains."""
        batch = self.cfg.batch_max_readings
        waiting = self.waiting()
        return batch if waiting <= batch else min(waiting, batch * self.cfg.inflight)

    def behind(self) -> bool:
        """More telemetry waits than a full window carries."""
        return self.waiting() > self.cfg.batch_max_readings * self.cfg.inflight
