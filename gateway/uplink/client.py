"""The paho-mqtt client on the event loop: the only module that imports paho.

One `Connection` is the client of one MQTT session, built from the UplinkConfig: persistent
session (clean_session false, fixed client id), the retained status topic's last will
`offline`, username + password from a file (read at each connect, never logged), TLS and
mutual TLS. Only the blocking TCP/TLS connect runs in a worker thread; paho then runs on the
event loop through its external-loop hooks (add_reader/add_writer). paho's callbacks become
the `lost` future (the reason the session ended), `session_present` (the CONNACK's flag: did
the broker still hold our persistent session), `on_puback(mid)` and the bounded `commands`
queue (retained command messages and those over the bound go to `on_command_refused`);
paho's exceptions and return codes become gateway.errors.
Must not: lease, encode, acknowledge or retry anything: that is the session's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.config import tls
from gateway.config.loader import UplinkConfig
from gateway.errors import ConfigError, LinkDown, LinkRefused
from gateway.uplink.standin import defer_paho_imports
from gateway.uplink.wire import Message, wire_bytes

defer_paho_imports()  # before paho: what it imports and seldom uses then loads on first use

import paho.mqtt.client as mqtt  # noqa: E402  (after the stand-ins)
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.reasoncodes import ReasonCode  # noqa: E402

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike  # a typing-only Protocol in paho

CONNACK_TIMEOUT = 15.0  # seconds from TCP connect to the broker's CONNACK
COMMAND_QUEUE = 100  # platform commands waiting to run; more are refused as busy


class Delivery:
    """One publish handed to the client."""

    def __init__(self, info: mqtt.MQTTMessageInfo) -> None:
        self._info = info

    @property
    def mid(self) -> int:
        return self._info.mid

    @property
    def ok(self) -> bool:
        return self._info.rc == mqtt.MQTT_ERR_SUCCESS

    @property
    def error(self) -> str:
        return mqtt.error_string(self._info.rc)

    def settled(self) -> bool:
        """Acknowledged by the broker, or failed (nothing more will happen to it)."""
        return self._info.rc != mqtt.MQTT_ERR_SUCCESS or self._info.is_published()


class Connection:
    """`conn = Connection(...)`; `await conn.open()`; publish ...; always `conn.close()`."""

    def __init__(
        self,
        cfg: UplinkConfig,
        *,
        command_topic: str,
        on_puback: Callable[[int], None],
        on_lost: Callable[[], None],
        on_command_refused: Callable[[str, bytes], None] = lambda why, payload: None,
    ) -> None:
        """Builds the client (raises LinkRefused when the password file or a TLS file is
        unreadable or not a usable PEM file, naming the file).
        `on_command_refused("retained" | "busy", payload)` hears of every command message not
        queued (the payload only for a look at which command it was: it must stay cheap)."""
        self.cfg = cfg
        self.command_topic = command_topic
        self.on_puback = on_puback
        self.on_lost = on_lost
        self.on_command_refused = on_command_refused
        self.loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[str] = self.loop.create_future()
        self.commands: asyncio.Queue[bytes] = asyncio.Queue(maxsize=COMMAND_QUEUE)
        self._connected: asyncio.Future[None] = self.loop.create_future()
        # The CONNACK's session-present flag (MQTT 3.1.1 section 3.2.2.2): False when the broker
        # had no session for our client id (a first connect, or a broker that lost its state).
        self.session_present = False
        self._loop_thread = threading.get_ident()
        self.client = self._new_client()
        self._bind_callbacks()

    # -- setup -----------------------------------------------------------------------------
    def _new_client(self) -> mqtt.Client:
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
            try:
                context = tls.context(cfg.tls)
            except ConfigError as exc:
                # A missing or bad CA/cert/key keeps the uplink down, never the daemon: the
                # session retries on its backoff, so fixing the file heals it.
                raise LinkRefused(str(exc)) from None
            client.tls_set_context(context)
        # paho logs through the stdlib logger "paho.mqtt.client", which gateway.logs renders
        # as JSON like every other line (debug chatter only at --log-level debug).
        client.enable_logger(None)
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

    async def open(self) -> None:
        """Connect and wait for the CONNACK; raises LinkDown or LinkRefused."""
        await self._connect()
        waiting: list[asyncio.Future[Any]] = [self._connected, self.lost]
        await asyncio.wait(waiting, timeout=CONNACK_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if not self._connected.done():
            reason = self.lost.result() if self.lost.done() else None
            raise LinkDown(reason or f"no CONNACK from the broker within {CONNACK_TIMEOUT:g} s")
        self._connected.result()  # raises LinkRefused when the broker said no

    async def _connect(self) -> None:
        """TCP (and TLS) connect in a worker thread; paho's socket then joins the loop."""
        cfg = self.cfg
        try:
            await self.loop.run_in_executor(
                None, self.client.connect, cfg.host, cfg.port, cfg.keepalive
            )
        except ssl.SSLCertVerificationError as exc:
            raise LinkRefused(f"TLS verification failed: {exc.verify_message or exc}") from None
        except ssl.SSLError as exc:
            raise LinkRefused(f"TLS handshake failed: {exc.reason or exc}") from None
        except (TimeoutError, OSError) as exc:
            raise LinkDown(f"cannot reach {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None

    # -- use -------------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, qos: int, *, retain: bool = False) -> Delivery:
        return Delivery(self.client.publish(topic, payload, qos=qos, retain=retain))

    def send(self, message: Message, qos: int) -> Delivery:
        return self.publish(message.topic, message.payload, qos)

    def wire_size(self, message: Message, qos: int) -> int:
        return wire_bytes(message, qos)

    def subscribe(self, topic: str, qos: int) -> None:
        self.client.subscribe(topic, qos=qos)

    def loop_misc(self) -> None:
        """Keep-alive pings and paho's timeouts; call at least every keepalive / 2."""
        self.client.loop_misc()

    def disconnect(self) -> None:
        """A clean DISCONNECT: the broker does not publish the will."""
        self.client.disconnect()

    async def aclose(self) -> None:
        self.close()  # the session closes every transport alike (HTTP's close awaits)

    def close(self) -> None:
        """Leave the event loop and close the socket (idempotent)."""
        sock = self.client.socket()
        if sock is not None:
            self._remove_fd(sock)
            with contextlib.suppress(OSError):
                sock.close()

    # -- paho callbacks --------------------------------------------------------------------
    def _on_loop(self, fn: Callable[..., object], *args: object) -> None:
        # Socket hooks fire in the connect worker thread once, then on the loop.
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def _lose(self, reason: str) -> None:
        self.on_lost()
        if not self.lost.done():
            self.lost.set_result(reason)

    def _bind_callbacks(self) -> None:
        client, loop = self.client, self.loop

        def on_open(c: mqtt.Client, _u: object, sock: SocketLike) -> None:
            self._on_loop(loop.add_reader, sock, self._read)

        def on_close(c: mqtt.Client, _u: object, sock: SocketLike) -> None:
            self._on_loop(self._remove_fd, sock)
            self._on_loop(self._lose, "connection closed")

        def on_want_write(c: mqtt.Client, _u: object, sock: SocketLike) -> None:
            if threading.get_ident() == self._loop_thread:
                # Written right after the current callback, not a select() later: with a
                # full paho window each PUBACK releases the next message, and a writer
                # registration per message cost two epoll_ctl calls and a loop turn.
                loop.call_soon(self._flush, sock)
            else:
                loop.call_soon_threadsafe(loop.add_writer, sock, c.loop_write)

        def on_unwant_write(c: mqtt.Client, _u: object, sock: SocketLike) -> None:
            self._on_loop(self._remove_writer, sock)

        client.on_socket_open = on_open
        client.on_socket_close = on_close
        client.on_socket_register_write = on_want_write
        client.on_socket_unregister_write = on_unwant_write
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message

    def _on_connect(
        self, c: mqtt.Client, _u: object, flags: object, rc: ReasonCode, props: object
    ) -> None:
        if self._connected.done():
            return
        if rc.is_failure:
            self._connected.set_exception(LinkRefused(f"broker refused the connection: {rc}"))
        else:
            self.session_present = isinstance(flags, mqtt.ConnectFlags) and flags.session_present
            self._connected.set_result(None)

    def _on_disconnect(
        self, c: mqtt.Client, _u: object, flags: object, rc: ReasonCode, props: object
    ) -> None:
        self._lose(f"disconnected: {rc}")

    def _on_publish(
        self, c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, props: object
    ) -> None:
        self.on_puback(mid)

    def _on_message(self, c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self.command_topic:
            return
        if msg.retain:
            # Sent again at every subscribe: acting on it would repeat a reload or a siren
            # at every reconnect, for ever.
            self.on_command_refused("retained", b"")
            return
        try:
            self.commands.put_nowait(bytes(msg.payload))
        except asyncio.QueueFull:
            self.on_command_refused("busy", bytes(msg.payload[:256]))

    def _read(self) -> None:
        rc = self.client.loop_read()
        if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
            self._lose(f"read failed: {mqtt.error_string(rc)}")
        elif self.client.want_write():
            # What the packets read released (the next message of a full paho window, a
            # PUBACK to a command) goes now: a round trip per message on a slow link.
            self._flush(self.client.socket())

    def _flush(self, sock: SocketLike | None) -> None:
        """Write what paho queued; only a socket that would block waits for a writer."""
        client = self.client
        if sock is None or sock is not client.socket() or not client.want_write():
            return  # written already, or the session it was queued on is gone
        rc = client.loop_write()
        if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
            self._lose(f"write failed: {mqtt.error_string(rc)}")
        elif client.want_write():
            self.loop.add_writer(sock, client.loop_write)

    def _remove_fd(self, sock: SocketLike) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)

    def _remove_writer(self, sock: SocketLike) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_writer(sock)
