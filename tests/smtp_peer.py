"""A real SMTP server for the tests: aiosmtpd on 127.0.0.1 in the test's event loop.

It keeps every accepted message parsed (email.policy.default, so headers come back decoded),
can be stopped and started again on the same port (a mail server outage), and optionally
speaks STARTTLS or implicit TLS with LOGIN/PLAIN authentication.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


@dataclass
class Received:
    sender: str
    recipients: list[str]
    raw: bytes
    message: EmailMessage


@dataclass
class MailSink:
    tls: ssl.SSLContext | None = None
    implicit_tls: bool = False
    credentials: tuple[str, str] | None = None
    port: int = 0
    received: list[Received] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
        raw: bytes = envelope.original_content or envelope.content  # type: ignore[attr-defined]
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), raw, msg)  # type: ignore[attr-defined,arg-type]
        )
        self._arrived.set()
        return "250 OK"

    def _auth(
        self, server: SMTP, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        user, password = data.login.decode(), data.password.decode()
        ok = (user, password) == self.credentials
        if ok:
            self.logins.append(user)
        return AuthResult(success=ok, handled=False)

    def _factory(self) -> SMTP:
        return SMTP(
            self,
            hostname="mail.test",
            tls_context=None if self.implicit_tls else self.tls,
            require_starttls=self.tls is not None and not self.implicit_tls,
            authenticator=self._auth if self.credentials else None,
            auth_required=self.credentials is not None,
            auth_require_tls=self.tls is not None,
        )

    async def start(self) -> MailSink:
        self._server = await asyncio.get_running_loop().create_server(
            self._factory,
            "127.0.0.1",
            self.port,
            ssl=self.tls if self.implicit_tls else None,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        async def _wait() -> None:
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(_wait(), timeout)
        return self.received
