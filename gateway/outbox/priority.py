"""The uplink's right of way over intake on the one event loop the daemon shares.

Why: an uplink bound by latency (each batch waits for its PUBACKs) needs a fixed number of
event-loop turns per batch: read the PUBACKs, acknowledge the rows (the outbox's one writer),
lease, encode, publish. Every turn waits behind whatever the buses and the pipeline's appends
queued meanwhile, so the more was offered, the longer each turn and the less delivered
(measured before this module, bench/pressure.py's `latency` setting: 12.3k/s delivered at
1x offered, 6.0k/s at 2x, 1.3k/s at 4x; PUBACKs were read 55 ms after their publish).

That was not all: with the right of way, delivery still fell 19 % from 1x to 4x offered
(11.3k/s to 9.2k/s), because each round still ran outbox work between a PUBACK and the next
publish: the acknowledgement's DELETE, and (the backlog past the lease tail) the next lease's
SELECT, both on the outbox's one SQLite thread behind the pipeline's appends (2,000+ rows a
transaction at 4x, 20 ms each), then the encoding. Measured at 4x: 6.2 ms from the last
PUBACK to the next publish (3.8 ms at 1x) beside a 9-10 ms round trip. The session now
prepares the next batch (lease and encode) while the PUBACKs travel and deletes after it
published (gateway.uplink.session): 0.1-0.2 ms from PUBACK to publish at any load.

While the uplink is behind (more telemetry waits than a full window carries,
gateway.uplink.session) it `claim`s the right of way as it works (acknowledging, leasing,
publishing) and while it awaits that backlog's PUBACKs, up to `PUBACK_HOLD`, and `release`s
it when it only waits (for the token bucket, for rows, for a link, for a distant broker's
PUBACKs). A link that keeps up claims nothing. (Releasing at once while the PUBACKs travel,
intake running in slices meanwhile, measured worse at 4x on loopback: PUBACKs read 27 ms
after the publish, 6.1k/s delivered, intake 55k/s. Holding for a 20 ms round trip, the
bench's `distant` setting, held intake to 7.9k/s at 1x offered for 440/s delivered; with
the hold bounded, intake took 17.7k/s, and 440/s were delivered at 1x and 4x alike.)
Intake `give_way`s: the pipeline's `emit` (every bus, every poll) and its appends, which the
uplink's acknowledgements would otherwise queue behind. A bus that never waits of itself
lets the loop read its sockets every `SLICE`.

Intake is never starved: one wait lasts at most `max_hold` seconds, and after a wait that
ran out (the uplink had work for that long) intake passes freely for `max_hold * FREE`, so
it keeps at least a fifth of the loop (a third, FREE 0.5, measured 16-18k/s delivered at 4x
offered on the latency-bound bench against 23-24k/s at 2x; a fifth: 25-28k/s). Local
alerts see readings as they are staged: slowed at most that much, never stopped. With no
uplink running nothing claims and nothing waits.
Knows nothing of MQTT, the outbox's file or the pipeline: a flag and a bounded wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

MAX_HOLD = 0.05  # seconds intake waits at most for one uplink round
# After a wait that ran out, intake passes freely for this share of `max_hold`: so it keeps
# at least FREE / (1 + FREE) of the loop (a fifth) while the uplink is behind for good.
FREE = 0.25
SLICE = 0.002  # seconds intake runs before it lets the loop read sockets (a PUBACK)
# Seconds the uplink keeps the right of way while it only awaits PUBACKs: a near broker's
# round trip (loopback, LAN) is over by then; a distant one's is not, and intake should not
# wait out the network (a 20 ms round trip held intake to ~40 % of a 1x offered load).
PUBACK_HOLD = 0.005


class Priority:
    """Who goes first: `claim()`/`release()` by the uplink, `await give_way()` by intake."""

    def __init__(
        self, max_hold: float = MAX_HOLD, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_hold = max_hold
        self.monotonic = monotonic
        self._clear = asyncio.Event()
        self._clear.set()
        self._free_until = 0.0
        self._slice_start = 0.0
        self._last = -1.0  # when intake last asked (a slice: calls closer than SLICE apart)
        self.yields = 0  # times intake waited for the uplink
        self.overruns = 0  # waits that ran out: the uplink had work for max_hold or longer

    @property
    def claimed(self) -> bool:
        return not self._clear.is_set()

    def claim(self) -> None:
        """The uplink has work ready (leasing, acknowledging, publishing)."""
        self._clear.clear()

    def release(self) -> None:
        """The uplink waits (for PUBACKs, the token bucket, rows, the link): intake goes."""
        self._clear.set()

    async def give_way(self) -> None:
        """Return at once unless the uplink claimed the right of way; then wait until it
        releases it, at most `max_hold` seconds (and not again for `max_hold * FREE` after)."""
        now = self.monotonic()
        last, self._last = self._last, now
        if self._clear.is_set() or now < self._free_until:
            if now - last > SLICE:
                # No intake for longer than a slice (its buses waited: an idle site's one
                # reading in a while), so intake did not hold the loop meanwhile: a new slice
                # starts here, without the two turns (a pass of the loop each, per reading).
                self._slice_start = now
                return
            if now - self._slice_start < SLICE:
                return
            # A bus that never waits (a fast source) would hold the loop for a whole pass
            # and a PUBACK waiting in the socket with it. Two turns: the first lets the loop
            # read sockets, the second lets what it read run (a PUBACK claims the right of
            # way), so a claimed round starts within one slice.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            self._slice_start = self.monotonic()
            if self._clear.is_set() or self._slice_start < self._free_until:
                return
        self.yields += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.max_hold):
                await self._clear.wait()
            return
        self.overruns += 1
        self._free_until = self.monotonic() + self.max_hold * FREE
