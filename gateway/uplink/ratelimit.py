"""A token bucket that paces the uplink's bytes on metered or narrow links (LPWA).

`take(n)` waits until n bytes of budget are there; a message larger than the burst waits for
a full bucket and then goes (it would otherwise wait for ever). Rate 0 means unlimited.
Knows nothing of MQTT: the session asks it before each publish.
"""

from __future__ import annotations

import asyncio
import time

from gateway.outbox.priority import Priority


class TokenBucket:
    """Byte-rate limiter: `take(n)` waits until n bytes of budget are available."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()
        # Released while waiting for budget, claimed again after (gateway.outbox.priority).
        self.priority: Priority | None = None

    async def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        while True:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= n or self.tokens >= self.burst:
                self.tokens -= n
                return
            held = self.priority is not None and self.priority.claimed
            if self.priority is not None:
                self.priority.release()
            await asyncio.sleep((min(n, self.burst) - self.tokens) / self.rate)
            if held and self.priority is not None:
                self.priority.claim()
