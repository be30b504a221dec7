"""The MQTT session to the platform: the only module that imports paho-mqtt.

Contract:
- Publishes what the outbox leases, QoS 1 by default, and acknowledges rows to the outbox only
  after the broker's PUBACK for every message of a leased batch (ack and delete in one
  transaction). On any disconnect all leases are released and the unacknowledged rows are
  sent again on the next session: at most the batches in flight are duplicated.
- Alerts are leased first and at once; telemetry waits for the batch window (or a full batch).
  An alert appended while the link is down cuts the reconnect backoff short.
- Persistent session (clean_session false, fixed client id), TLS and mutual TLS,
  username + password from a file (read at each connect, never logged), a retained status
  topic with last will `offline` and birth `online`, capped jittered reconnect backoff, an
  in-flight window, a token-bucket byte rate limit for LPWA links.
- Platform commands arrive on the FIWARE command topic and are answered on cmdexe.
paho runs on the event loop through its external-loop hooks (add_reader/add_writer); only
the blocking TCP/TLS connect runs in a worker thread. paho exceptions become gateway.errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config.loader import UplinkConfig
from gateway.errors import LinkDown, LinkRefused, Transient
from gateway.model import Lane, Reading
from gateway.outbox.store import Outbox
from gateway.supervise import Backoff, Health, supervise
from gateway.uplink.commands import CommandRouter
from gateway.uplink.payload import ENCODERS, Message, Target, command_topics, wire_bytes


class TokenBucket:
    """Byte-rate limiter: `take(n)` waits until n bytes of budget are available."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

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
            await asyncio.sleep((min(n, self.burst) - self.tokens) / self.rate)


@dataclass
class _Batch:
    """One lease: its rows go back to the outbox as acknowledged when `pending` empties."""

    rows: list[Reading]
    pending: set[int] = field(default_factory=set)


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
        self.cmd_topic, self.cmdexe_topic = command_topics(cfg.format, cfg.apikey, gateway_id)
        self.backoff = Backoff(cfg.reconnect_min, cfg.reconnect_max, rng=rng or random.Random())
        self.health = Health(log, "uplink")
        self.wake = asyncio.Event()  # cuts a reconnect wait short (an alert is waiting)
        self.kick = asyncio.Event()  # something to publish or room in the window
        self.stats = UplinkStats()
        self.bucket = TokenBucket(cfg.rate_limit, max(cfg.rate_limit, cfg.max_payload_bytes + 64))
        self._stopping = False
        self._settled = asyncio.Event()  # set on every PUBACK and when a session ends
        self._client: mqtt.Client | None = None
        self._inflight: dict[int, _Batch] = {}
        self._done: list[_Batch] = []
        self._window_started: float | None = None
        self._session_lost: asyncio.Future[str] | None = None
        outbox.listeners.append(self._on_append)

    # -- outbox notifications --------------------------------------------------------------
    def _on_append(self, lanes: set[Lane]) -> None:
        self.kick.set()
        if Lane.ALERT in lanes:
            self.wake.set()

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
                await self._settle(lambda: not self._inflight)
        await self._ack_done()
        client = self._client
        if client is not None and self.stats.connected:
            info = client.publish(self.cfg.status_topic, b"offline", qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await self._settle(lambda: info.rc or info.is_published())
            client.disconnect()

    async def _settle(self, done: Any) -> None:
        """Wait until `done()` holds or the session is gone (woken by PUBACKs)."""
        while not done() and self.stats.connected:
            self._settled.clear()
            await self._settled.wait()

    # -- one session -----------------------------------------------------------------------
    async def _session(self, health: Health) -> None:
        if self._stopping:
            await asyncio.Event().wait()  # shutting down: never reconnect, wait to be cancelled
        loop = asyncio.get_running_loop()
        client = self._new_client(loop)
        self._client = client
        self._session_lost = loop.create_future()
        connected: asyncio.Future[None] = loop.create_future()
        self._bind_callbacks(client, loop, connected)
        try:
            await self._connect(client, loop)
            await asyncio.wait(
                [connected, self._session_lost], timeout=15, return_when=asyncio.FIRST_COMPLETED
            )
            if not connected.done():
                reason = self._session_lost.result() if self._session_lost.done() else None
                raise LinkDown(reason or "no CONNACK from the broker within 15 s")
            connected.result()  # raises LinkRefused when the broker said no
            self.stats.connected = True
            self.stats.connects += 1
            health.up(host=self.cfg.host, port=self.cfg.port)
            client.publish(self.cfg.status_topic, b"online", qos=1, retain=True)
            client.subscribe(self.cmd_topic, qos=1)
            pump = asyncio.create_task(self._pump(client), name="uplink-pump")
            misc = asyncio.create_task(self._misc(client), name="uplink-misc")
            try:
                done, _ = await asyncio.wait(
                    [pump, misc, self._session_lost], return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    if task is not self._session_lost:
                        task.result()  # a bug in the pump escapes
                if self._session_lost.done():
                    raise LinkDown(self._session_lost.result())
            finally:
                for task in (pump, misc):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            self.stats.connected = False
            self._settled.set()
            await self._ack_done()
            self._inflight.clear()
            self.outbox.release_all()
            self._window_started = None
            self._teardown(client, loop)

    def _new_client(self, loop: asyncio.AbstractEventLoop) -> mqtt.Client:
        cfg = self.cfg
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        client.max_inflight_messages_set(cfg.inflight)
        client.max_queued_messages_set(0)
        client.will_set(cfg.status_topic, b"offline", qos=1, retain=True)
        if cfg.username:
            client.username_pw_set(cfg.username, self._password())
        if cfg.tls.enabled:
            context = ssl.create_default_context(cafile=cfg.tls.ca or None)
            if cfg.tls.cert:
                context.load_cert_chain(cfg.tls.cert, cfg.tls.key or None)
            client.tls_set_context(context)
        client.enable_logger(None)  # paho's own chatter stays out of our logs
        return client

    def _password(self) -> str | None:
        if not self.cfg.password_file:
            return None
        try:
            with open(self.cfg.password_file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as exc:
            raise LinkRefused(
                f"cannot read password_file {self.cfg.password_file}: {exc.strerror}"
            ) from None

    async def _connect(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        """TCP (and TLS) connect in a worker thread; paho's socket then joins the loop."""
        try:
            await loop.run_in_executor(
                None, client.connect, self.cfg.host, self.cfg.port, self.cfg.keepalive
            )
        except ssl.SSLCertVerificationError as exc:
            raise LinkRefused(f"TLS verification failed: {exc.verify_message or exc}") from None
        except ssl.SSLError as exc:
            raise LinkRefused(f"TLS handshake failed: {exc.reason or exc}") from None
        except (TimeoutError, OSError) as exc:
            raise LinkDown(
                f"cannot reach {self.cfg.host}:{self.cfg.port}: {exc.strerror or exc}"
            ) from None

    def _bind_callbacks(
        self,
        client: mqtt.Client,
        loop: asyncio.AbstractEventLoop,
        connected: asyncio.Future[None],
    ) -> None:
        loop_thread = threading.get_ident()

        def on_loop(fn: Any, *args: Any) -> None:
            # Socket hooks fire in the connect worker thread once, then on the loop.
            if threading.get_ident() == loop_thread:
                fn(*args)
            else:
                loop.call_soon_threadsafe(fn, *args)

        def lost(reason: str) -> None:
            self._settled.set()
            if self._session_lost is not None and not self._session_lost.done():
                self._session_lost.set_result(reason)

        def on_open(c: mqtt.Client, _u: Any, sock: Any) -> None:
            on_loop(loop.add_reader, sock, self._read, c)

        def on_close(c: mqtt.Client, _u: Any, sock: Any) -> None:
            on_loop(self._remove_fd, loop, sock)
            on_loop(lost, "connection closed")

        def on_want_write(c: mqtt.Client, _u: Any, sock: Any) -> None:
            on_loop(loop.add_writer, sock, c.loop_write)

        def on_unwant_write(c: mqtt.Client, _u: Any, sock: Any) -> None:
            on_loop(self._remove_writer, loop, sock)

        def on_connect(c: mqtt.Client, _u: Any, flags: Any, rc: Any, props: Any) -> None:
            if connected.done():
                return
            if rc.is_failure:
                connected.set_exception(LinkRefused(f"broker refused the connection: {rc}"))
            else:
                connected.set_result(None)

        def on_disconnect(c: mqtt.Client, _u: Any, flags: Any, rc: Any, props: Any) -> None:
            lost(f"disconnected: {rc}")

        def on_publish(c: mqtt.Client, _u: Any, mid: int, rc: Any, props: Any) -> None:
            self._settled.set()
            batch = self._inflight.pop(mid, None)
            if batch is None:
                return
            batch.pending.discard(mid)
            if not batch.pending:
                self._done.append(batch)
            self.kick.set()

        def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            if msg.topic == self.cmd_topic:
                self._commands.put_nowait(bytes(msg.payload))

        client.on_socket_open = on_open
        client.on_socket_close = on_close
        client.on_socket_register_write = on_want_write
        client.on_socket_unregister_write = on_unwant_write
        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_message = on_message
        self._commands: asyncio.Queue[bytes] = asyncio.Queue(maxsize=100)

    def _read(self, client: mqtt.Client) -> None:
        rc = client.loop_read()
        lost = self._session_lost
        if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN) and lost and not lost.done():
            lost.set_result(f"read failed: {mqtt.error_string(rc)}")

    @staticmethod
    def _remove_fd(loop: asyncio.AbstractEventLoop, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(sock)
            loop.remove_writer(sock)

    @staticmethod
    def _remove_writer(loop: asyncio.AbstractEventLoop, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_writer(sock)

    def _teardown(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        sock = client.socket()
        if sock is not None:
            self._remove_fd(loop, sock)
            with contextlib.suppress(OSError):
                sock.close()
        self._client = None

    async def _misc(self, client: mqtt.Client) -> None:
        """Keep-alive pings and paho's timeouts, plus command handling."""
        # paho only needs loop_misc often enough to ping within the keep-alive period.
        tick = min(5.0, self.cfg.keepalive / 4)
        while True:
            try:
                async with asyncio.timeout(tick):
                    payload = await self._commands.get()
            except TimeoutError:
                client.loop_misc()
                continue
            self.stats.commands += 1
            result = await self.commands.handle(payload)
            client.publish(
                self.cmdexe_topic,
                json.dumps(result, ensure_ascii=False).encode(),
                qos=1,
            )

    # -- publishing ------------------------------------------------------------------------
    async def _pump(self, client: mqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Cleared before looking, not before sleeping: a PUBACK or an append that lands
            # while we lease and publish must still wake the next wait.
            self.kick.clear()
            await self._ack_done()
            if self._stopping:
                await asyncio.sleep(3600)
            published = False
            if len(self._inflight) < self.cfg.inflight:
                published = await self._publish_lane(client, Lane.ALERT, self.cfg.inflight)
                if not published and self._telemetry_due(loop.time()):
                    published = await self._publish_lane(
                        client, Lane.TELEMETRY, self.cfg.batch_max_readings
                    )
                    if not self.outbox.unleased(Lane.TELEMETRY):
                        self._window_started = None
            if published:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._until_due(loop.time())):
                    await self.kick.wait()

    def _telemetry_due(self, now: float) -> bool:
        waiting = self.outbox.unleased(Lane.TELEMETRY)
        if not waiting:
            self._window_started = None
            return False
        if self._window_started is None:
            self._window_started = now
        return (
            waiting >= self.cfg.batch_max_readings
            or now - self._window_started >= self.cfg.batch_window
        )

    def _until_due(self, now: float) -> float | None:
        """How long the pump may sleep: until the telemetry window closes, or until kicked."""
        if self._window_started is None:
            return None
        return max(0.001, self._window_started + self.cfg.batch_window - now)

    async def _publish_lane(self, client: mqtt.Client, lane: Lane, limit: int) -> bool:
        rows = await self.outbox.lease(lane, limit)
        if not rows:
            return False
        messages = self.encode(rows, self.target, self.cfg.max_payload_bytes)
        oversized = [m for m in messages if len(m.payload) > self.cfg.max_payload_bytes]
        if oversized:
            # One reading alone larger than the limit would be refused for ever and block
            # the queue behind it: drop it loudly instead.
            drop = {s for m in oversized for s in m.seqs}
            self.log.error(
                "reading too large for max_payload_bytes; dropped",
                seqs=sorted(drop)[:10],
                max_payload_bytes=self.cfg.max_payload_bytes,
            )
            self.stats.oversized += len(drop)
            self._done.append(_Batch([r for r in rows if r.seq in drop]))
            messages = [m for m in messages if m not in oversized]
            rows = [r for r in rows if r.seq not in drop]
        if rows:
            await self._publish(client, messages, rows)
        return True

    async def _publish(
        self, client: mqtt.Client, messages: Sequence[Message], rows: list[Reading]
    ) -> None:
        batch = _Batch(rows)
        qos = self.cfg.qos
        for message in messages:
            size = wire_bytes(message, qos)
            await self.bucket.take(size)
            if not self.stats.connected:
                raise LinkDown("connection lost while publishing")
            info = client.publish(message.topic, message.payload, qos=qos)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise LinkDown(f"publish failed: {mqtt.error_string(info.rc)}")
            self.stats.published_messages += 1
            self.stats.wire_bytes += size
            if qos:
                batch.pending.add(info.mid)
                self._inflight[info.mid] = batch
        self.stats.published_readings += len(rows)
        if not batch.pending:
            # QoS 0 has no PUBACK: handing the bytes to the socket is all there is.
            self._done.append(batch)

    async def _ack_done(self) -> None:
        if not self._done:
            return
        done, self._done = self._done, []
        rows = [r for b in done for r in b.rows]
        await self.outbox.ack(rows)
        self.stats.acked_readings += len(rows)


__all__ = ["TokenBucket", "Transient", "Uplink", "UplinkStats"]
