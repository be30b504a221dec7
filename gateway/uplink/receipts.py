"""What leaves the outbox after a publish: acknowledged rows and dead letters.

The session's delivery bookkeeping, apart from its publishing: finished batches of the
in-flight window are acknowledged to the outbox (deleted), rows the platform refused or that
can never be published move to the dead letters, loudly (one bad row must never block the rows
behind it), and the uplink's counters follow. One delete covers at most `limit` rows (one
lease), however many batches finished meanwhile: a full disk's space reserve holds the WAL of
one. Knows nothing of MQTT or HTTP: the window, the outbox and the counters.
"""

from __future__ import annotations

from typing import Any

from gateway.logs import debugging
from gateway.model import Reading
from gateway.outbox.store import Outbox
from gateway.uplink.stats import UplinkStats
from gateway.uplink.window import InflightWindow


class Receipts:
    def __init__(
        self, outbox: Outbox, window: InflightWindow, stats: UplinkStats, *, limit: int, log: Any
    ) -> None:
        self.outbox = outbox
        self.window = window
        self.stats = stats
        self.limit = limit
        self.log = log
        self._debug = debugging(log)  # `run --log-level debug`: each acknowledgement
        self._refused: list[tuple[list[Reading], str]] = []  # platform-refused, to dead-letter

    def refuse(self, mid: int, seqs: tuple[int, ...], reason: str) -> None:
        """The platform refused message `mid`'s content (HTTP): its rows go to the dead
        letters at the next `settle`; the rest of its batch goes on."""
        self._refused.append((self.window.refuse(mid, seqs), reason))

    async def settle(self) -> None:
        """Dead-letter what was refused, then acknowledge every finished batch."""
        while self._refused:
            refused, reason = self._refused.pop(0)
            if refused:
                await self.dead_letter(refused, reason)
        while rows := self.window.take_done(self.limit):
            await self.outbox.ack(rows)
            self.stats.acked_readings += len(rows)
            if self._debug:
                self.log.debug("acknowledged", rows=len(rows), queued=self.outbox.rows)

    async def dead_letter(self, rows: list[Reading], reason: str) -> None:
        """Move rows that can never be published to the outbox's dead letters, with an error
        line naming the reason, the first seqs and the device."""
        self.log.error(
            "unsendable rows moved to dead letters",
            reason=reason,
            seqs=[r.seq for r in rows[:10]],
            device=rows[0].device.encode("utf-8", "backslashreplace").decode()[:64],
        )
        if reason.startswith("larger than max_payload_bytes"):
            self.stats.oversized += len(rows)
        self.stats.dead_letters += len(rows)
        await self.outbox.dead_letter(rows, reason)
