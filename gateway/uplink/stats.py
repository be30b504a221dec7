"""What the uplink counts and how its health shows: `UplinkStats` (in status.json and
`gateway status`) and `LinkHealth`, the supervise Health that mirrors an outage into them.
No I/O here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway.supervise import Health


@dataclass
class UplinkStats:
    connected: bool = False
    published_messages: int = 0
    published_readings: int = 0
    acked_readings: int = 0
    wire_bytes: int = 0
    connects: int = 0
    commands: int = 0
    oversized: int = 0
    commands_retained: int = 0  # retained command messages ignored
    commands_busy: int = 0  # command messages refused: the command queue was full
    dead_letters: int = 0  # rows moved to the outbox's dead letters (never publishable)
    # Resume holds (gateway.uplink.resume): how many began, and while one lasts, until when
    # (wall time) the backlog waits for the platform's agent to re-subscribe.
    resume_holds: int = 0
    holding_until: float | None = None
    final_pauses: int = 0  # drains that paused before each device's newest message (order)
    # While down (wall times, for `gateway status`): since when, why, and when the next try is.
    down_since: float | None = None
    down_reason: str | None = None
    next_try: float | None = None


class LinkHealth(Health):
    """The uplink's Health, mirrored into its stats: down since, why, next try (wall time)."""

    def __init__(self, log: Any, stats: UplinkStats) -> None:
        super().__init__(log, "uplink")
        self.stats = stats

    def up(self, **context: object) -> None:
        super().up(**context)
        self.stats.down_since = self.stats.down_reason = self.stats.next_try = None

    def down(self, reason: str, **context: object) -> None:
        super().down(reason, **context)
        now = time.time()
        if self.stats.down_since is None:
            self.stats.down_since = now
        self.stats.down_reason = reason
        retry = context.get("retry_in_s")
        self.stats.next_try = now + retry if isinstance(retry, int | float) else None
