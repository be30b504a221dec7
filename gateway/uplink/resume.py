"""The resume hold: after reconnecting to a broker that lost our session, wait before draining.

Why: the FIWARE IoT Agent subscribes with QoS 0 under a new random client id at every connect
(iotagent-json lib/bindings/MQTTBinding.js: mqtt.js reconnects every 1 s, and the agent makes
a new client 5 s after a close), so the broker keeps no session for it. After a broker restart,
whatever we publish before the agent has re-subscribed is PUBACKed by the broker and delivered
to nobody: the rows leave our outbox and are lost. We cannot see the agent's subscription; the
sign of a broker restart we do get is a CONNACK with session-present 0 although we always ask
for a persistent session (MQTT 3.1.1 section 3.2.2.2).

Rule: a connect with session-present 0 after the link had been down (a session lost or a
connect attempt failed since this uplink started) holds the pump for `resume_delay` seconds,
then it drains as usual. The first connect of an uplink that never failed does not hold: the
broker was up when we started, so the agent has long been subscribed (a new client id, an
expired session); only a broker restarted within the agent's re-subscribe window (~1 s) before
our very first connect would slip through, and holding every fresh start would not be worth it.
Default `resume_delay` 10 s (UplinkConfig): the agent needed up to ~1.1 s to process measures
again after a mosquitto restart (measured: its 1 s reconnect period plus the subscribe), and
5 s plus a connect when its mqtt.js client gave up and its own retry (`retryTime` 5 s) makes a
new one; 10 s covers both with margin, and costs only latency once per broker restart.
Every lane is held, alerts too: their platform copy is the one a broker restart would lose,
while the siren and the alert e-mail never wait for the uplink. Commands are still received
and answered during the hold.
Must not: lease, publish or touch the outbox; it only decides, reports and waits.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.uplink.stats import UplinkStats


class ResumeHold:
    """`begin(...)` when a session starts, `await wait()` before publishing, `end()` when the
    session ends (also in the middle of a hold)."""

    def __init__(self, delay: float, stats: UplinkStats, log: Any) -> None:
        self.delay = delay
        self.stats = stats
        self.log = log
        self._until: float | None = None  # loop time the current hold ends

    def begin(self, session_present: bool, after_outage: bool, *, queued: int) -> None:
        """Decide whether this new session holds its backlog (see the module's rule)."""
        self._until = None
        if session_present or not after_outage or self.delay <= 0:
            return
        self._until = asyncio.get_running_loop().time() + self.delay
        self.stats.resume_holds += 1
        self.stats.holding_until = time.time() + self.delay
        self.log.warning(
            "uplink holding its backlog: the broker lost our session (restarted?); "
            "waiting for the platform to subscribe again",
            resume_delay_s=self.delay,
            queued=queued,
        )

    @property
    def holding(self) -> bool:
        return self._until is not None

    async def wait(self) -> None:
        """Return when the hold (if any) is over."""
        if self._until is None:
            return
        await asyncio.sleep(max(0.0, self._until - asyncio.get_running_loop().time()))
        self._until = None
        self.stats.holding_until = None
        self.log.info("uplink hold over; draining", held_s=self.delay)

    def end(self) -> None:
        """The session is gone: a hold in progress ends with it (the next one decides anew)."""
        self._until = None
        self.stats.holding_until = None
