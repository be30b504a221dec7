"""The HTTP transport: measures to the FIWARE IoT Agent's south port, acknowledged end to end.

`POST <url>?k=<apikey>&i=<device>` with the fiware-json body of one message; the agent answers
only after the Context Broker accepted or refused the update, so a 2xx means the platform has
the readings. `HttpConnection` is shaped like `client.Connection` for the session: `open()`,
`send(message)` -> a delivery with its `mid`, `on_puback(mid)` on the 2xx, the `lost` future
when the link is gone, `aclose()`; plus `on_refused(mid, seqs, reason)` when the platform
refuses that request's content. Requests go one at a time, in order, over one keep-alive
connection: a drain pays one TCP/TLS handshake, and the agent cannot reorder one device's
updates. The session's in-flight window bounds how many wait. `HttpLink` (one per uplink)
keeps what outlives a session: after a setup refusal the next `open()` asks the agent again
(an empty measure) before the link counts as up, so the outage is logged once.

Status policy (`verdict`): 2xx delivered; 400, 413, 414, 415, 422 refuse this content (its
rows go to the dead letters with the platform's reason); 408, 429, 5xx, timeouts and
connection errors are transient (the link goes down, the rows go again after the backoff);
anything else (401/403 not allowed, 404 unknown apikey, service group or path, 3xx) is the
setup: the link stays down, nothing is dead-lettered.
httpx is imported on first use: an MQTT-only gateway never loads it.
Must not: lease, encode, acknowledge or retry rows: that is the session's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.config import tls
from gateway.config.loader import UplinkConfig
from gateway.errors import ConfigError, GatewayError, LinkDown, LinkRefused
from gateway.uplink.wire import Message

if TYPE_CHECKING:
    import httpx

CONTENT_REFUSED = frozenset({400, 413, 414, 415, 422})
TRANSIENT = frozenset({408, 429})
REASON_CHARS = 200  # the platform's reason as kept with a dead letter or logged
MAX_ANSWER = 64 * 1024  # the agent answers `{}` or a short error; more is not read
USER_AGENT = "field-gateway"


def verdict(status: int) -> str:
    """What an answer means: "delivered", "refused" (this content, never), "retry" (later)
    or "setup" (nothing will pass until someone fixes the config or the platform)."""
    if 200 <= status < 300:
        return "delivered"
    if status in CONTENT_REFUSED:
        return "refused"
    if status in TRANSIENT or status >= 500:
        return "retry"
    return "setup"


def describe(status: int, body: bytes) -> str:
    """The platform's reason as one bounded line: `HTTP 400 NAME: message` from the agent's
    `{"name","message"}` (or Orion's `{"error","description"}`), else the body's start."""
    text = ""
    with contextlib.suppress(ValueError):
        obj = json.loads(body)
        if isinstance(obj, dict):
            name = str(obj.get("name") or obj.get("error") or "")
            message = str(obj.get("message") or obj.get("description") or "")
            text = f"{name}: {message}" if name and message else name or message
    if not text:
        text = body[:REASON_CHARS].decode("utf-8", "replace")
    # The agent appends a JSON dump of its device record to several messages: keep the words.
    head, brace, _ = text.partition("{")
    text = " ".join("".join(c if c.isprintable() else " " for c in head).split())
    line = f"HTTP {status} {text}{' …' if brace else ''}".rstrip()
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 1] + "…"


def request_bytes(request: httpx.Request) -> int:
    """Bytes of `request` on the wire as HTTP/1.1 writes it: request line, headers, body."""
    head = len(request.method) + len(request.url.raw_path) + len(" HTTP/1.1\r\n") + 1
    return (
        head + sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + 2 + len(request.content)
    )


class HttpDelivery:
    """One request handed to the connection (`mid` 0 and an `error` when it was not)."""

    def __init__(self, mid: int, error: str = "") -> None:
        self.mid = mid
        self.error = error
        self.answered = False

    @property
    def ok(self) -> bool:
        return not self.error

    def settled(self) -> bool:
        """Answered by the platform, or failed (nothing more will happen to it)."""
        return self.answered or not self.ok


class HttpLink:
    """The HTTP uplink's state across sessions: the config and the last setup refusal."""

    def __init__(self, cfg: UplinkConfig, log: Any) -> None:
        self.cfg = cfg
        self.refused_device: str | None = None  # whose request the setup refused last
        if cfg.commands:
            log.warning(
                'platform commands are not served over http: they need transport = "mqtt"',
                commands=list(cfg.commands),
            )

    def connection(
        self,
        *,
        on_puback: Callable[[int], None],
        on_refused: Callable[[int, tuple[int, ...], str], None],
        on_lost: Callable[[], None],
    ) -> HttpConnection:
        return HttpConnection(self, on_puback=on_puback, on_refused=on_refused, on_lost=on_lost)


class HttpConnection:
    """`conn = link.connection(...)`; `await conn.open()`; send ...; `await conn.aclose()`."""

    def __init__(
        self,
        link: HttpLink,
        *,
        on_puback: Callable[[int], None],
        on_refused: Callable[[int, tuple[int, ...], str], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.link = link
        self.cfg = link.cfg
        self.on_puback = on_puback
        self.on_refused = on_refused
        self.on_lost = on_lost
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue: asyncio.Queue[tuple[HttpDelivery, Message]] = asyncio.Queue()
        self._mids = itertools.count(1)
        self._client: httpx.AsyncClient | None = None
        self._worker: asyncio.Task[None] | None = None

    # -- setup -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Reach the agent (TCP, TLS, one request); raises LinkDown or LinkRefused."""
        self._client = client = self._new_client()
        if self.link.refused_device is None:
            # Any answer will do (the agent answers a bare HEAD with 400): it is there.
            status, body = await self._exchange(client.build_request("HEAD", self.cfg.url))
            if verdict(status) == "retry":
                raise LinkDown(f"platform error: {describe(status, body)}")
        else:
            # The setup was refused: ask again with an empty measure (checks the apikey and
            # the device, updates nothing) before the link counts as up.
            status, body = await self._exchange(self._request(self.link.refused_device, b"[]"))
            outcome = verdict(status)
            if outcome == "setup":
                raise LinkRefused(self._setup_reason(status, body))
            if outcome == "retry":
                raise LinkDown(f"platform error: {describe(status, body)}")
            self.link.refused_device = None
        self._worker = asyncio.create_task(self._run(), name="uplink-http")

    def _new_client(self) -> httpx.AsyncClient:
        import httpx  # here, not at the top: an MQTT-only gateway never loads it

        verify: ssl.SSLContext | bool = True
        if self.cfg.url.startswith("https:"):
            try:
                verify = tls.context(self.cfg.tls)
            except ConfigError as exc:
                raise LinkRefused(str(exc)) from None  # fixing the file heals it
        client = httpx.AsyncClient(
            verify=verify,
            timeout=self.cfg.request_timeout,
            # One connection, kept: no handshake per batch on a metered link.
            limits=httpx.Limits(
                max_connections=1, max_keepalive_connections=1, keepalive_expiry=self.cfg.keepalive
            ),
            trust_env=False,
            follow_redirects=False,
        )
        for name in list(client.headers):
            del client.headers[name]  # Accept, Accept-Encoding, Connection: bytes paid per request
        client.headers["User-Agent"] = USER_AGENT
        return client

    def _request(self, device: str, body: bytes) -> httpx.Request:
        assert self._client is not None, "open() first"
        return self._client.build_request(
            "POST",
            self.cfg.url,
            params={"k": self.cfg.apikey, "i": device},
            content=body,
            headers={"Content-Type": "application/json"},
        )

    # -- use -------------------------------------------------------------------------------
    def wire_size(self, message: Message, qos: int = 1) -> int:
        """Bytes the request of `message` writes (what the rate limit pays); the agent's
        answer (~250 bytes) and TLS records come on top."""
        return request_bytes(self._request(message.device, message.payload))

    def send(self, message: Message, qos: int = 1) -> HttpDelivery:
        """Queue `message`'s request; its answer comes as on_puback, on_refused or `lost`."""
        if self._worker is None or self.lost.done():
            return HttpDelivery(0, "not connected")
        delivery = HttpDelivery(next(self._mids))
        self._queue.put_nowait((delivery, message))
        return delivery

    async def aclose(self) -> None:
        """Stop sending and close the connection (idempotent)."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._client is not None:
            await self._client.aclose()

    # -- the requests ----------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            delivery, message = await self._queue.get()
            try:
                status, body = await self._exchange(self._request(message.device, message.payload))
            except GatewayError as exc:
                self._lose(str(exc))
                return
            outcome = verdict(status)
            delivery.answered = outcome in ("delivered", "refused")
            if outcome == "delivered":
                self.on_puback(delivery.mid)
            elif outcome == "refused":
                reason = f"refused by the platform: {describe(status, body)}"
                self.on_refused(delivery.mid, message.seqs, reason)
            elif outcome == "setup":
                self.link.refused_device = message.device
                self._lose(self._setup_reason(status, body))
                return
            else:
                self._lose(f"platform error: {describe(status, body)}")
                return

    async def _exchange(self, request: httpx.Request) -> tuple[int, bytes]:
        """Send `request`, read a bounded answer; transport failures become our errors."""
        import httpx

        assert self._client is not None
        for attempt in (1, 2):
            try:
                response = await self._client.send(request, stream=True)
                try:
                    body = b""
                    async for chunk in response.aiter_raw():
                        body += chunk
                        if len(body) >= MAX_ANSWER:
                            break
                finally:
                    await response.aclose()
                return response.status_code, body[:MAX_ANSWER]
            except httpx.RemoteProtocolError as exc:
                # The agent closes an idle keep-alive connection (Node: after 5 s); when that
                # crosses our request, go once more on a new connection.
                if attempt == 2:
                    raise LinkDown(f"the platform closed the connection: {exc}") from None
            except httpx.TimeoutException:
                raise LinkDown(
                    f"no answer from {self._where()} within {self.cfg.request_timeout:g} s"
                ) from None
            except httpx.TransportError as exc:
                raise self._mapped(exc) from None
        raise AssertionError("unreachable")

    def _mapped(self, exc: BaseException) -> GatewayError:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return LinkRefused(f"TLS verification failed: {cause.verify_message or cause}")
            if isinstance(cause, ssl.SSLError):
                return LinkRefused(f"TLS handshake failed: {cause.reason or cause}")
            if isinstance(cause, OSError) and cause.strerror:
                return LinkDown(f"cannot reach {self._where()}: {cause.strerror}")
            cause = cause.__cause__ or cause.__context__
        return LinkDown(f"cannot reach {self._where()}: {exc or type(exc).__name__}")

    def _setup_reason(self, status: int, body: bytes) -> str:
        return (
            f"the platform refused the setup: {describe(status, body)} "
            "(check uplink.url, uplink.apikey and the agent's service group and devices)"
        )

    def _where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def _lose(self, reason: str) -> None:
        self.on_lost()
        if not self.lost.done():
            self.lost.set_result(reason)
