"""The MQTT session to the platform: drains the outbox to the broker and answers commands.

Contract:
- Publishes what the outbox leases, QoS 1 by default, and acknowledges rows to the outbox only
  after the broker's PUBACK for every message of a leased batch (ack and delete in one
  transaction: `receipts`). The publishing itself is the `pump`'s (leases, encoding, the
  read-ahead, the right of way); this module runs one pump per connection. On any
  disconnect all leases are released and the unacknowledged rows are sent again on the next
  session: at most the batches in flight are duplicated (those read ahead were never sent).
- Alerts are leased first and at once; telemetry waits for the batch window (or a full batch).
  The window counts from the oldest waiting row, across outages: rows that waited a window
  while the link was down, or were in flight when it went, go as soon as a session (and its
  resume hold) allows, not a window after the reconnect.
  An alert appended while the link is down cuts the reconnect backoff short.
- Capped jittered reconnect backoff (gateway.supervise), the in-flight window (`window`), a
  token-bucket byte rate limit for LPWA links (`ratelimit`), a retained status topic with birth
  `online` (the client sets the will `offline`).
- After a reconnect to a broker that lost our session, the backlog (alerts too) waits
  `resume_delay` for the agent to re-subscribe (`resume`); at a drain's end each device's
  newest message waits until the agent has likely forwarded the ones before it (`order`).
- A leased row that can never be published (a topic MQTT forbids, a value the format cannot
  encode, too large alone: `triage`) moves to the outbox's dead letters, counted and logged;
  the rows behind it go on.
- Platform commands arrive on the FIWARE command topic and are answered on cmdexe by the
  `responder` (MQTT only), from the same token bucket as telemetry.
The paho client, TLS and credentials live in `client` (the only module importing paho).
With `transport = "http"` the same loop drives `http.HttpConnection` instead (chosen in
`_connect`): a row leaves on the agent's 2xx, a request whose content the platform refuses
moves exactly its rows to the dead letters; no status topic, no commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

from gateway.config.loader import UplinkConfig
from gateway.errors import LinkDown
from gateway.model import Lane
from gateway.outbox.store import Outbox
from gateway.supervise import Backoff, Health, supervise
from gateway.uplink.cadence import Cadence
from gateway.uplink.client import Connection
from gateway.uplink.commands import CommandRouter
from gateway.uplink.http import HttpLink
from gateway.uplink.payload import ENCODERS, Target
from gateway.uplink.pump import Link, Pump
from gateway.uplink.ratelimit import TokenBucket
from gateway.uplink.receipts import Receipts
from gateway.uplink.responder import Responder
from gateway.uplink.resume import ResumeHold
from gateway.uplink.stats import LinkHealth, UplinkStats
from gateway.uplink.window import InflightWindow


class Uplink:
    """Drains the outbox to a broker; run with `await uplink.run()` inside the TaskGroup."""

    def __init__(
        self,
        cfg: UplinkConfig,
        gateway_id: str,
        outbox: Outbox,
        commands: CommandRouter,
        *,
        attributes: dict[tuple[str, str], str] | None = None,
        log: Any,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.gateway_id = gateway_id
        self.outbox = outbox
        self.commands = commands
        self.log = log
        self.backoff = Backoff(cfg.reconnect_min, cfg.reconnect_max, rng=rng or random.Random())
        self.stats = UplinkStats()
        self.health: Health = LinkHealth(log, self.stats)
        self.resume = ResumeHold(cfg.resume_delay, self.stats, log)
        self.wake = asyncio.Event()  # cuts a reconnect wait short (an alert is waiting)
        self.kick = asyncio.Event()  # something to publish or room in the window
        self.bucket = TokenBucket(cfg.rate_limit, max(cfg.rate_limit, cfg.max_payload_bytes + 64))
        self.bucket.priority = outbox.priority  # waiting for budget is not work: intake goes
        self.responder = Responder(
            cfg, gateway_id, commands, stats=self.stats, bucket=self.bucket, log=log
        )
        self.window = InflightWindow()
        self._settled = asyncio.Event()  # set on every PUBACK and when a session ends
        self._conn: Link | None = None  # the current session's, while there is one
        self.http = HttpLink(cfg, log) if cfg.transport == "http" else None
        limit = cfg.batch_max_readings * cfg.inflight  # rows per delete: one lease at most
        self.receipts = Receipts(outbox, self.window, self.stats, limit=limit, log=log)
        self.cadence = Cadence(cfg, lambda: outbox.unleased(Lane.TELEMETRY))
        self.pump = Pump(
            cfg,
            outbox,
            encode=ENCODERS[cfg.format],
            target=Target(cfg.apikey, gateway_id, cfg.topic_prefix, attributes or {}),
            stats=self.stats,
            window=self.window,
            receipts=self.receipts,
            cadence=self.cadence,
            bucket=self.bucket,
            kick=self.kick,
            log=log,
        )
        outbox.listeners.append(self._on_append)

    def detach(self) -> None:
        """Stop hearing of outbox appends (a stopped uplink replaced by a reload)."""
        with contextlib.suppress(ValueError):
            self.outbox.listeners.remove(self._on_append)

    # -- notifications ---------------------------------------------------------------------
    def _on_append(self, lanes: set[Lane]) -> None:
        if lanes != {Lane.TELEMETRY} or self.cadence.opens(asyncio.get_running_loop().time()):
            self.kick.set()
        elif self.cadence.full():
            self.kick.set()  # a full batch goes before its window closes
        # else: the pump sleeps until the open window closes; nothing to look at before.
        if Lane.ALERT in lanes:
            self.wake.set()

    def _on_puback(self, mid: int) -> None:
        self._settled.set()
        if self.window.puback(mid):
            if self.cadence.behind():  # rows to acknowledge: intake gives way from now
                self.outbox.priority.claim()
            self.kick.set()

    def _on_refused(self, mid: int, seqs: tuple[int, ...], reason: str) -> None:
        """The platform refused message `mid`'s content (HTTP): `receipts`."""
        self._settled.set()
        self.receipts.refuse(mid, seqs, reason)
        self.kick.set()

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        await supervise(self._session, self.health, self.backoff, wake=self.wake)

    async def stop(self, deadline: float = 10.0) -> None:
        """Stop leasing, wait up to `deadline` s for PUBACKs of what is in flight, ack it,
        publish `offline` and disconnect cleanly (so the broker does not fire the will)."""
        self.pump.stopping = True
        self.kick.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline):
                await self._settle(lambda: not self.window)
        await self.receipts.settle()
        conn = self._conn
        if isinstance(conn, Connection) and self.stats.connected:
            delivery = conn.publish(self.cfg.status_topic, b"offline", 1, retain=True)
            if delivery.ok:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await self._settle(delivery.settled)
            conn.disconnect()

    async def _settle(self, done: Callable[[], bool]) -> None:
        """Wait until `done()` holds or the session is gone (woken by PUBACKs)."""
        while not done() and self.stats.connected:
            self._settled.clear()
            await self._settled.wait()

    # -- one session -----------------------------------------------------------------------
    async def _session(self, health: Health) -> None:
        if self.pump.stopping:
            await asyncio.Event().wait()  # shutting down: never reconnect, wait to be cancelled
        conn = self._connect()
        self._conn = conn
        self.responder.new_session()
        try:
            await conn.open()
            self.stats.connected = True
            self.stats.connects += 1
            after_outage = health.down_reason is not None  # read before up() clears it
            # On recovery the line says how long it was down and how much waits to go out.
            health.up(host=self.cfg.host, port=self.cfg.port, queued=self.outbox.rows)
            if isinstance(conn, Connection):  # MQTT only: the retained status, commands
                conn.publish(self.cfg.status_topic, b"online", 1, retain=True)
                conn.subscribe(self.responder.topic, qos=1)
            # HTTP has no broker session to lose: the agent answers for itself.
            present = not isinstance(conn, Connection) or conn.session_present
            self.resume.begin(present, after_outage, queued=self.outbox.rows)
            await self._serve(conn)
        finally:
            self.outbox.priority.release()
            self.resume.end()
            self.stats.connected = False
            self._settled.set()
            await self.receipts.settle()
            self.window.clear()
            if (lost := await self.pump.end_session()) is not None:
                self.log.warning("uplink read-ahead failed as the session ended", error=str(lost))
            waiting = self.outbox.unleased(Lane.TELEMETRY)
            self.outbox.release_all()
            self.cadence.after_session(waiting)
            await conn.aclose()
            self._conn = None

    def _connect(self) -> Link:
        """The one place the transport is chosen (cfg.transport)."""
        if self.http is not None:
            return self.http.connection(
                on_puback=self._on_puback, on_refused=self._on_refused, on_lost=self._settled.set
            )
        return Connection(
            self.cfg,
            command_topic=self.responder.topic,
            on_puback=self._on_puback,
            on_lost=self._settled.set,
            on_command_refused=self.responder.refused,
        )

    async def _serve(self, conn: Link) -> None:
        """Publish and answer commands until the session is lost (LinkDown) or a bug."""
        pump = asyncio.create_task(self._publish(conn), name="uplink-pump")
        misc = asyncio.create_task(self._misc(conn), name="uplink-misc")
        try:
            waiting: list[asyncio.Future[Any]] = [pump, misc, conn.lost]
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not conn.lost:
                    task.result()  # a bug in the pump escapes
            if conn.lost.done():
                raise LinkDown(conn.lost.result())
        finally:
            for task in (pump, misc):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _publish(self, conn: Link) -> None:
        await self.resume.wait()  # the broker lost our session: let the platform resubscribe
        await self.pump.run(conn)

    async def _misc(self, conn: Link) -> None:
        """MQTT: the platform's commands and paho's pings (`responder`). HTTP has neither:
        wait until the session ends."""
        if isinstance(conn, Connection):
            await self.responder.serve(conn)
        await asyncio.Event().wait()


__all__ = ["Uplink", "UplinkStats"]
