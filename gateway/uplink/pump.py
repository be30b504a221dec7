"""The uplink's pump: moves leased rows from the outbox onto one session's link.

Contract:
- Each turn it leases and encodes what is due (alerts first and at once, telemetry when the
  batch window closes or a batch is full: `cadence`), publishes it within the in-flight
  window (`window`) and the byte budget (`bucket`), and hands the PUBACKed batches to
  `receipts`, which acknowledges them to the outbox. It never acknowledges a row itself.
- While the window is full and a backlog waits, the next batch is leased and encoded in the
  background (`readahead`), so it goes the moment the PUBACKs are in.
- A leased row that can never be published (`triage`) goes to the dead letters at once.
- While a backlog waits it holds the outbox's right of way (gateway.outbox.priority), and
  gives it back whenever it waits: at once with no PUBACK of a backlog awaited, after
  `PUBACK_HOLD` when one is (a distant broker's round trip must not hold intake).
- It sleeps until kicked (an append, a PUBACK, a read-ahead ready) or something is due (a
  held message, the window closing); never on a timer while the window is full.
It knows nothing of connecting, reconnecting or commands: the session (`session.Uplink`)
runs one `run(conn)` per connection, cancels it when the connection goes, and then calls
`end_session`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from gateway.config.loader import UplinkConfig
from gateway.errors import LinkDown
from gateway.logs import debugging
from gateway.model import Lane, Reading
from gateway.outbox.priority import PUBACK_HOLD
from gateway.outbox.store import Outbox
from gateway.uplink.cadence import Cadence
from gateway.uplink.client import Connection
from gateway.uplink.http import HttpConnection
from gateway.uplink.order import DrainOrder, Held, Lease
from gateway.uplink.ratelimit import TokenBucket
from gateway.uplink.readahead import Prepared, ReadAhead
from gateway.uplink.receipts import Receipts
from gateway.uplink.stats import UplinkStats
from gateway.uplink.triage import Triage, triage
from gateway.uplink.window import Batch, InflightWindow
from gateway.uplink.wire import Encoder, Message, Target

Link = Connection | HttpConnection  # what a session publishes on: MQTT or the agent's HTTP port


class Pump:
    def __init__(
        self,
        cfg: UplinkConfig,
        outbox: Outbox,
        *,
        encode: Encoder,
        target: Target,
        stats: UplinkStats,
        window: InflightWindow,
        receipts: Receipts,
        cadence: Cadence,
        bucket: TokenBucket,
        kick: asyncio.Event,
        log: Any,
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.encode = encode
        self.target = target
        self.stats = stats
        self.window = window
        self.receipts = receipts
        self.cadence = cadence
        self.bucket = bucket
        self.kick = kick  # set by whoever has news: an append, a PUBACK, a read-ahead ready
        self.log = log
        self._debug = debugging(log)  # `run --log-level debug`: each lease, logged
        self.order = DrainOrder()  # replaceable: measurements compare pauses
        # Telemetry batches leased and encoded while the window is full.
        self.ahead = ReadAhead(
            lambda n: outbox.lease(Lane.TELEMETRY, n), self._encode, on_ready=kick.set
        )
        self.stopping = False  # set by the session's stop: lease nothing more

    async def end_session(self) -> BaseException | None:
        """The session ended (its `run` cancelled): forget what was read ahead and held for
        it (their leases go with the outbox's `release_all`). Returns the read-ahead's own
        failure, if it had one, for the caller to log."""
        lost = await self.ahead.clear()
        self.order.clear()
        return lost

    async def run(self, conn: Link) -> None:
        """Publish on `conn` until cancelled; LinkDown when a publish finds the link gone."""
        loop = asyncio.get_running_loop()
        priority = self.outbox.priority
        while True:
            # Cleared before looking, not before sleeping: a PUBACK or an append that lands
            # while we lease and publish must still wake the next wait.
            self.kick.clear()
            if self.cadence.behind():  # intake gives way until we wait (gateway.outbox.priority)
                priority.claim()
            self.ahead.check()  # a read-ahead's store fault ends the session like ours would
            if self.stopping:
                await self.receipts.settle()
                priority.release()
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
                priority.release()  # no PUBACK of a backlog awaited: intake goes
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._until_due(loop.time())):
                    if awaiting and not await self._kicked_within(PUBACK_HOLD):
                        # A distant broker: intake uses the loop while the PUBACKs travel
                        # (one read claims the right of way again: the session's PUBACK).
                        priority.release()
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
        if isinstance(conn, HttpConnection):  # one request at a time, in order: the agent
            await self._send(conn, Batch(rows), messages)  # cannot reorder
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
