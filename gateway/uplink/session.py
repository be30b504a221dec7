"""The MQTT session to the platform: drains the outbox to the broker and answers commands.

Contract:
- Publishes what the outbox leases, QoS 1 by default, and acknowledges rows to the outbox only
  after the broker's PUBACK for every message of a leased batch (ack and delete in one
  transaction). While the window is full and a backlog waits, what goes next is leased and
  encoded in the background (`readahead`), so it goes the moment the PUBACKs are in (a
  latency-bound link's round is the round trip, not the round trip plus a query and the
  encoding). On any disconnect all leases are released and the unacknowledged rows are sent
  again on the next session: at most the batches in flight are duplicated (those read ahead
  were never sent).
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
from collections.abc import Callable, Sequence
from typing import Any

from gateway.config.loader import UplinkConfig
from gateway.errors import LinkDown
from gateway.logs import debugging
from gateway.model import Lane, Reading
from gateway.outbox.priority import PUBACK_HOLD
from gateway.outbox.store import Outbox
from gateway.supervise import Backoff, Health, supervise
from gateway.uplink.cadence import Cadence
from gateway.uplink.client import Connection
from gateway.uplink.commands import CommandRouter
from gateway.uplink.http import HttpConnection, HttpLink
from gateway.uplink.order import DrainOrder, Held, Lease
from gateway.uplink.payload import ENCODERS, Message, Target
from gateway.uplink.ratelimit import TokenBucket
from gateway.uplink.readahead import Prepared, ReadAhead
from gateway.uplink.receipts import Receipts
from gateway.uplink.responder import Responder
from gateway.uplink.resume import ResumeHold
from gateway.uplink.stats import LinkHealth, UplinkStats
from gateway.uplink.triage import Triage, triage
from gateway.uplink.window import Batch, InflightWindow

Link = Connection | HttpConnection  # what `_connect` builds: MQTT or the IoT Agent's HTTP port


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
        self.encode = ENCODERS[cfg.format]
        self.target = Target(cfg.apikey, gateway_id, cfg.topic_prefix, attributes or {})
        self.backoff = Backoff(cfg.reconnect_min, cfg.reconnect_max, rng=rng or random.Random())
        self.stats = UplinkStats()
        self._debug = debugging(log)  # `run --log-level debug`: leases and acks, each one
        self.health: Health = LinkHealth(log, self.stats)
        self.resume = ResumeHold(cfg.resume_delay, self.stats, log)
        self.order = DrainOrder()  # replaceable: measurements compare pauses
        self.wake = asyncio.Event()  # cuts a reconnect wait short (an alert is waiting)
        self.kick = asyncio.Event()  # something to publish or room in the window
        self.bucket = TokenBucket(cfg.rate_limit, max(cfg.rate_limit, cfg.max_payload_bytes + 64))
        self.bucket.priority = outbox.priority  # waiting for budget is not work: intake goes
        self.responder = Responder(
            cfg, gateway_id, commands, stats=self.stats, bucket=self.bucket, log=log
        )
        self.window = InflightWindow()
        # Telemetry batches leased and encoded while the window is full (`_pump`).
        self.ahead = ReadAhead(
            lambda n: outbox.lease(Lane.TELEMETRY, n), self._encode, on_ready=self.kick.set
        )
        self._stopping = False
        self._settled = asyncio.Event()  # set on every PUBACK and when a session ends
        self._conn: Link | None = None  # the current session's, while there is one
        self.http = HttpLink(cfg, log) if cfg.transport == "http" else None
        limit = cfg.batch_max_readings * cfg.inflight  # rows per delete: one lease at most
        self.receipts = Receipts(outbox, self.window, self.stats, limit=limit, log=log)
        self.cadence = Cadence(cfg, lambda: outbox.unleased(Lane.TELEMETRY))
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
        self._stopping = True
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
        if self._stopping:
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
            if (lost := await self.ahead.clear()) is not None:  # leases go with release_all
                self.log.warning("uplink read-ahead failed as the session ended", error=str(lost))
            self.order.clear()
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
        pump = asyncio.create_task(self._pump(conn), name="uplink-pump")
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

    async def _misc(self, conn: Link) -> None:
        """MQTT: the platform's commands and paho's pings (`responder`). HTTP has neither:
        wait until the session ends."""
        if isinstance(conn, Connection):
            await self.responder.serve(conn)
        await asyncio.Event().wait()

    # -- publishing ------------------------------------------------------------------------
    async def _pump(self, conn: Link) -> None:
        loop = asyncio.get_running_loop()
        await self.resume.wait()  # the broker lost our session: let the platform resubscribe
        while True:
            # Cleared before looking, not before sleeping: a PUBACK or an append that lands
            # while we lease and publish must still wake the next wait.
            self.kick.clear()
            if self.cadence.behind():  # intake gives way until we wait (gateway.outbox.priority)
                self.outbox.priority.claim()
            self.ahead.check()  # a read-ahead's store fault ends the session like ours would
            if self._stopping:
                await self.receipts.settle()
                self.outbox.priority.release()
                await asyncio.sleep(3600)
            await self._send_held(conn, self.order.release(loop.time()))
            published = False
            if len(self.window) < self.cfg.inflight:
                published = await self._publish_lane(conn, Lane.ALERT, self.cfg.inflight)
                if not published and (self.ahead or self.cadence.due(loop.time())):
                    size = self.cadence.lease_size()
                    published = await self._publish_lane(conn, Lane.TELEMETRY, size)
                    self.cadence.drained()
            # The window is full and a backlog waits: while the PUBACKs travel, lease and
            # encode what goes next (gateway.uplink.readahead), so it goes the moment they
            # are in. Batches of one batch's size are leased before the delete of what was
            # delivered (the next PUBACKs may be in soon); a larger lease after it (and
            # `receipts` deletes one lease at a time: a full disk's reserve holds the WAL of one).
            size = self.cadence.lease_size()
            ahead = len(self.window) >= self.cfg.inflight and self.cadence.behind()
            small = size <= self.cfg.batch_max_readings
            if ahead and small:
                self.ahead.refill(size)
            await self.receipts.settle()  # after publishing: never between a PUBACK and the publish
            if ahead and not small:
                self.ahead.refill(self.cadence.lease_size())
            if published:
                continue
            awaiting = bool(self.window) and self.cadence.behind()
            if not awaiting:
                self.outbox.priority.release()  # no PUBACK of a backlog awaited: intake goes
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._until_due(loop.time())):
                    if awaiting and not await self._kicked_within(PUBACK_HOLD):
                        # A distant broker: intake uses the loop while the PUBACKs travel
                        # (one read claims the right of way again, `_on_puback`).
                        self.outbox.priority.release()
                    await self.kick.wait()

    async def _kicked_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self.kick.wait()
        except TimeoutError:
            return False
        return True

    def _until_due(self, now: float) -> float | None:
        """How long the pump may sleep: until a held message is due or, while the window
        has room, the telemetry window closes; else until kicked (a PUBACK, an append)."""
        # A full window waits for its PUBACKs, whatever is due: while a backlog drained
        # (its window closed long ago) the pump woke every millisecond for nothing.
        closes = self.cadence.closes() if len(self.window) < self.cfg.inflight else None
        due = [d for d in (self.order.next_due(), closes) if d is not None]
        return max(0.001, min(due) - now) if due else None

    async def _prepare(self, lane: Lane, limit: int) -> Prepared | None:
        """Lease up to `limit` rows of `lane` and encode them. None when nothing waits."""
        rows = await self.outbox.lease(lane, limit)
        return (rows, await self._encode(rows), limit) if rows else None

    async def _encode(self, rows: list[Reading]) -> Triage:
        """The messages for leased `rows`; unsendable rows go to the dead letters at once."""
        sorted_ = triage(rows, self.encode, self.target, self.cfg.max_payload_bytes)
        for bad, reason in sorted_.dead:
            await self.receipts.dead_letter(bad, reason)
        return sorted_

    async def _publish_lane(self, conn: Link, lane: Lane, limit: int) -> bool:
        # Telemetry leased ahead goes first (or what a running read-ahead is leasing).
        ready = await self.ahead.take() if lane is Lane.TELEMETRY else None
        ready = ready or await self._prepare(lane, limit)
        if ready is None:
            return False
        rows, sorted_, size = ready
        # What is left counts the rows still leased ahead: they are not the drain's end.
        left = self.outbox.unleased(lane) + (self.ahead.rows if lane is Lane.TELEMETRY else 0)
        lease = Lease(len(rows), size, left)
        if sorted_.rows:
            if self._debug:
                self.log.debug(
                    "leased",
                    lane=lane.name.lower(),
                    rows=len(sorted_.rows),
                    seqs=f"{rows[0].seq}-{rows[-1].seq}",
                    messages=len(sorted_.messages),
                    left=lease.left,
                )
            await self._publish(conn, sorted_.messages, sorted_.rows, lease)
        return True

    async def _publish(
        self, conn: Link, messages: Sequence[Message], rows: list[Reading], lease: Lease
    ) -> None:
        """Publish a leased batch in the order `order` plans (its newest messages may wait)."""
        if self.http is not None:  # one request at a time, in order: the agent cannot reorder
            await self._send(conn, Batch(rows), messages)
            return
        now = asyncio.get_running_loop().time()
        # A held message of a device this batch sends to is not its newest any more: first.
        await self._send_held(conn, self.order.release(now, {m.topic for m in messages}))
        plan = self.order.plan(messages, rows, lease, now)
        await self._send(conn, plan.batch, plan.first)
        if plan.held:  # the drain ends: each device's newest message waits (uplink.order)
            self.stats.final_pauses += 1
            self.order.hold(plan.held, asyncio.get_running_loop().time())

    async def _send_held(self, conn: Link, held: list[Held]) -> None:
        for h in held:
            await self._send(conn, h.batch, [h.message])

    async def _send(self, conn: Link, batch: Batch, messages: Sequence[Message]) -> None:
        qos = self.cfg.qos
        for message in messages:
            size = conn.wire_size(message, qos)
            await self.bucket.take(size)
            if not self.stats.connected:
                raise LinkDown("connection lost while publishing")
            delivery = conn.send(message, qos)
            if not delivery.ok:
                raise LinkDown(f"publish failed: {delivery.error}")
            self.order.sent(message, asyncio.get_running_loop().time())
            self.stats.published_messages += 1
            self.stats.wire_bytes += size
            if qos:
                self.window.add(batch, delivery.mid)
        self.stats.published_readings += len(batch.rows)
        # QoS 0 has no PUBACK: handing the bytes to the socket is all there is.
        self.window.seal(batch)


__all__ = ["Uplink", "UplinkStats"]
