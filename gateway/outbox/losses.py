"""Logging rows the outbox loses, on transitions and as a periodic count, never per batch.

A full outbox drops rows on every append while the link is down: one line per append was
hundreds a minute. `Losses` logs once when losing starts (with what was lost), then at most
one line every `every` seconds while it goes on (the count since the last line), and once
when an append loses nothing again (the total of the episode). It counts nothing the store
relies on (the drop counters live in `counts` and `meta`); it only decides what to log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

EVERY = 60.0  # seconds between "still losing" lines


class Losses:
    def __init__(
        self,
        log: Any,
        what: str,
        *,
        every: float = EVERY,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.what = what  # "outbox full" or "memory buffer full": the start of each line
        self.every = every
        self.monotonic = monotonic
        self.losing = False
        self._since_line: dict[str, int] = {}
        self._episode = 0
        self._last_line = 0.0

    def lost(self, by_lane: dict[str, int], **context: Any) -> None:
        """Rows were lost now (`by_lane`: lane name -> rows)."""
        n = sum(by_lane.values())
        if not n:
            return
        self._episode += n
        if not self.losing:
            self.losing = True
            self._last_line = self.monotonic()
            self.log.warning(f"{self.what}; dropping rows", dropped=by_lane, **context)
            return
        for lane, count in by_lane.items():
            self._since_line[lane] = self._since_line.get(lane, 0) + count
        now = self.monotonic()
        if now - self._last_line >= self.every:
            self.log.warning(
                f"{self.what}; still dropping rows",
                dropped=self._since_line,
                seconds=round(now - self._last_line),
                dropped_total=self._episode,
                **context,
            )
            self._since_line = {}
            self._last_line = now

    def clear(self) -> None:
        """A write lost nothing: the episode ended (logged once)."""
        if self.losing:
            self.log.warning(f"{self.what}: dropping stopped", dropped_total=self._episode)
            self.losing = False
            self._since_line = {}
            self._episode = 0
